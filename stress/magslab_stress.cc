// magslab-stress: a multithreaded allocator torture harness that verifies every
// byte it allocates. See docs/stress.md for workloads, checks and options.
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <thread>

#include "harness.h"
#include "magslab/magslab.h"
#include "testing/fake_os.h"

// ThreadSanitizer's deadlock detector tracks at most 64 held locks; magslab's
// fork prepare handler holds all its locks by design (see tests/fork_mt_test.cc).
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

using namespace stress;

namespace {

struct Workload {
  const char* name;
  void (*fn)();
};
const Workload kWorkloads[] = {
    {"mixed", wl_mixed},         {"larson", wl_larson},   {"prodcons", wl_prodcons},
    {"realloc", wl_realloc},     {"aligned", wl_aligned}, {"calloc", wl_calloc},
    {"churn", wl_churn},         {"fork", wl_fork},       {"hugerealloc", wl_hugerealloc},
    {"dtorchurn", wl_dtorchurn},
};
constexpr size_t kNumWorkloads = sizeof kWorkloads / sizeof kWorkloads[0];

struct Result {
  const char* name;
  unsigned threads;
  uint64_t ops;
  double seconds;
  int64_t peak_live;
  size_t peak_rss;
};

// --help: the option list on stderr, exit 0. A usage error: what is wrong and the usage line on
// stderr, exit 2.
[[noreturn]] void usage(const char* msg, const char* arg = nullptr) {
  if (msg != nullptr) {
    fprintf(stderr, "magslab-stress: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    fprintf(stderr, "usage: magslab-stress [options] (magslab-stress --help lists them)\n");
    exit(2);
  }
  fprintf(stderr,
          "usage: magslab-stress [options]\n"
          "  --threads N        worker threads (default: nproc; 1..%u)\n"
          "  --seconds S        run time in seconds, shared by the workloads of 'all'\n"
          "  --ops N            operations per workload (all threads together)\n"
          "  --seed X           seed (decimal or 0x hex; default: random, printed)\n"
          "  --max-size B       largest request (suffix k/m/g allowed; default 4m)\n"
          "  --workload W       mixed|larson|prodcons|realloc|aligned|calloc|churn|fork|\n"
          "                     hugerealloc|dtorchurn|all\n"
          "  --fault-rate P     refuse a fraction P (0 < P <= 1) of magslab's map/remap/\n"
          "                     decommit calls (fake OS); NULL+ENOMEM then tolerated\n"
          "                     (--allocator magslab only)\n"
          "  --watchdog S       fail when a workload runs S seconds past its time (default\n"
          "                     60): a hang in the allocator is reported, not waited out\n"
          "  --allocator A      magslab (the C API) | system (malloc of this process,\n"
          "                     e.g. an LD_PRELOADed allocator)\n"
          "  --smoke            every workload briefly (~15 s in total)\n"
          "  --json             summary as JSON on stdout\n"
          "  --quiet            no progress line and no summary table\n"
          "  --help             this text\n"
          "exit status: 0 clean, 1 a check failed (one FAILURE line on stderr; also a\n"
          "  hang, after --watchdog), 2 usage; an abort or crash of the allocator itself\n"
          "  ends the run by its signal (no FAILURE line)\n",
          kMaxThreads);
  exit(0);
}

bool parse_u64(const char* s, uint64_t* out, bool suffixes) {
  // Digits first: strtoull would skip leading spaces and then take "-1" as 2^64 - 1.
  if (s == nullptr || *s < '0' || *s > '9') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno != 0 || end == s) return false;
  uint64_t mul = 1;
  if (suffixes && *end != '\0') {
    switch (*end) {
      case 'k':
      case 'K':
        mul = 1ull << 10;
        break;
      case 'm':
      case 'M':
        mul = 1ull << 20;
        break;
      case 'g':
      case 'G':
        mul = 1ull << 30;
        break;
      default:
        return false;
    }
    ++end;
    if (*end == 'i' || *end == 'I') ++end;
    if (*end == 'b' || *end == 'B') ++end;
  }
  if (*end != '\0') return false;
  if (v > UINT64_MAX / mul) return false;
  *out = v * mul;
  return true;
}

// A whole-string number with lo < value <= hi: "1x", "", "nan" and overflow are errors.
bool parse_double(const char* s, double lo, double hi, double* out) {
  errno = 0;
  char* end = nullptr;
  double d = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(d > lo) || d > hi) return false;
  *out = d;
  return true;
}

size_t rss_bytes() {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  unsigned long size = 0, resident = 0;
  if (sscanf(buf, "%lu %lu", &size, &resident) != 2) return 0;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

void sum_counters(unsigned n, uint64_t* ops, int64_t* live) {
  *ops = 0;
  *live = 0;
  for (unsigned i = 0; i < n && i < kMaxThreads; ++i) {
    *ops += g.counters[i].ops.load(std::memory_order_relaxed);
    *live += g.counters[i].live_bytes.load(std::memory_order_relaxed);
  }
}

struct Live {
  size_t objects, bytes;
};
// magslab's statistics now, in one static struct (large; not on the stack):
// valid until the next call. Main thread only.
const struct magslab_stats& magslab_stats_now() {
  static struct magslab_stats st;
  magslab_stats(&st);
  return st;
}
Live magslab_live() {
  const struct magslab_stats& st = magslab_stats_now();
  return Live{st.live_objects, st.live_bytes};
}

void check_magslab_live(Live start, const char* when) {
  if (!g.api->is_magslab) return;
  Live now = magslab_live();
  if (now.objects != start.objects || now.bytes != start.bytes) {
    Failure f;
    f.op = now.objects != start.objects ? "live-objects" : "live-bytes";
    char msg[200];
    snprintf(msg, sizeof msg,
             "%s: magslab_stats() live_objects %zu, live_bytes %zu; at start %zu, %zu (every "
             "block was freed)",
             when, now.objects, now.bytes, start.objects, start.bytes);
    f.detail = msg;
    fail(f);
  }
}

// What magslab still maps and has committed once every block is freed and
// everything given back (magslab_trim_all, then magslab_trim: caches, depot,
// free chunks, the huge cache): the pages of slabs nobody uses, leaked, stay
// in these figures though the live counts balance (a mutation review, stop 34:
// an empty slab never given back went unnoticed). A quiet heap given back
// keeps nothing (both read 0 in every run measured, 4-32 threads, with and
// without faults); the slack allows two chunks.
constexpr size_t kMappedSlack = size_t{8} << 20;
void check_magslab_mapped(const char* when) {
  if (!g.api->is_magslab) return;
  magslab_trim_all();
  magslab_trim();
  const struct magslab_stats& st = magslab_stats_now();
  if (st.mapped_bytes > kMappedSlack || st.committed_bytes > kMappedSlack) {
    Failure f;
    f.op = "mapped-bytes";
    char msg[200];
    snprintf(msg, sizeof msg,
             "%s, every block freed and magslab_trim_all + magslab_trim called: mapped_bytes "
             "%zu, committed_bytes %zu (more than %zu: memory leaked past the live counts)",
             when, st.mapped_bytes, st.committed_bytes, kMappedSlack);
    f.detail = msg;
    fail(f);
  }
}

// With the heap quiet and exactly the n blocks b[] live besides what was live
// before (`before`), magslab_stats() must count them exactly: live_objects n
// more, live_bytes their usable sizes more, and the per-class and large
// counts must add up to the totals. The balance after each workload cannot
// see a counter that is wrong only while blocks are live (a live count off by
// one for large blocks, live_bytes not their usable size): it reads the same
// error at the start and the end (stop 53: such mutations passed every run).
void check_stats_count(Live before, const Block* b, size_t n) {
  size_t usable = 0;
  for (size_t i = 0; i < n; ++i) usable += g.api->usable_size(b[i].p);
  const struct magslab_stats& st = magslab_stats_now();
  size_t class_objects = 0, class_bytes = 0;
  for (size_t c = 0; c < st.class_count; ++c) {
    class_objects += st.classes[c].live_objects;
    class_bytes += st.classes[c].live_objects * st.classes[c].object_size;
  }
  const char* what = nullptr;
  if (st.live_objects != before.objects + n)
    what = "live_objects is not the blocks live";
  else if (st.live_bytes != before.bytes + usable)
    what = "live_bytes is not the sum of the live blocks' usable sizes";
  else if (class_objects + st.large_live_blocks != st.live_objects)
    what = "the classes' live_objects and large_live_blocks do not add up to live_objects";
  else if (class_bytes > st.live_bytes || st.huge_live_blocks > st.large_live_blocks)
    what = "the classes' live bytes, or huge_live_blocks, exceed their totals";
  if (what == nullptr) return;
  Failure f;
  f.op = "stats-count";
  static char msg[400];
  snprintf(msg, sizeof msg,
           "%s: magslab_stats() live_objects %zu, live_bytes %zu (classes %zu objects, %zu "
           "bytes; large_live_blocks %zu, huge_live_blocks %zu) with %zu blocks of %zu usable "
           "bytes live besides %zu objects, %zu bytes before",
           what, st.live_objects, st.live_bytes, class_objects, class_bytes, st.large_live_blocks,
           st.huge_live_blocks, n, usable, before.objects, before.bytes);
  f.detail = msg;
  fail(f);
}

// After the workloads (faults off): a batch of every size class, large and
// huge sizes, aligned and zeroed, allocated, checked and freed. NULL fails;
// while all are live, magslab_stats() must count them exactly.
void check_heap_usable() {
  if (!g.api->is_magslab) return;
  g.workload = "heap-check";
  g.wseed = mix64(g.opt.seed ^ 0x4eab5c4ecULL);
  const Live before = magslab_live();
  const struct magslab_stats& st = magslab_stats_now();
  constexpr size_t kPerClass = 8;
#ifdef MS_SANITIZED  // keep it short: every byte is instrumented
  const size_t big[] = {(64 << 10) + 1, 100 << 10, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20};
#else
  const size_t big[] = {(64 << 10) + 1, 100 << 10, 256 << 10, (1 << 20) - 1, 1 << 20,
                        (1 << 20) + 1,  3 << 20,   16 << 20,  48 << 20};
#endif
  constexpr size_t kBig = sizeof big / sizeof big[0];
  RawArray<Block> blocks(st.class_count * kPerClass + 4 * kBig);
  size_t n = 0;
  Rng r(g.wseed);
  for (size_t c = 0; c < st.class_count; ++c) {
    size_t sz = st.classes[c].object_size;
    for (size_t k = 0; k < kPerClass; ++k) {
      size_t want = k % 2 ? sz : sz / 2 + 1;
      Kind kind = k % 4 == 3 ? Kind::Calloc : Kind::Malloc;
      blocks[n++] = alloc_block(-1, r, want, kind, 0);
    }
  }
  for (size_t sz : big) {
    blocks[n++] = alloc_block(-1, r, sz, Kind::Malloc, 0);
    blocks[n++] = alloc_block(-1, r, sz, Kind::Calloc, 0);
    blocks[n++] = alloc_block(-1, r, sz, Kind::PosixMemalign, 4096);
    blocks[n++] = alloc_block(-1, r, sz, Kind::AlignedAlloc, size_t{2} << 20);
  }
  for (size_t i = 0; i < n; ++i) check_block(-1, blocks[i], "heap-check");
  check_stats_count(before, blocks.data(), n);
  while (n > 0) free_block(-1, blocks[--n]);
}

void* driver(void* arg) {
  reinterpret_cast<const Workload*>(arg)->fn();
  return nullptr;
}

Result run_workload(const Workload& w, size_t wi, double seconds, uint64_t ops) {
  g.workload = w.name;
  g.wseed = mix64(g.opt.seed ^ mix64(0xabcdef12345ULL + wi));
  g.stop.store(false);
  g.ops_per_thread = ops ? (ops + g.opt.threads - 1) / g.opt.threads : 0;
  for (unsigned i = 0; i < kMaxThreads; ++i) {
    g.counters[i].ops.store(0);
    g.counters[i].live_bytes.store(0);
  }
  Live live_start = g.api->is_magslab ? magslab_live() : Live{};

  Result r{w.name, g.opt.threads, 0, 0, 0, rss_bytes()};
  auto t0 = std::chrono::steady_clock::now();
  pthread_t tid;
  std::atomic<bool> done{false};
  struct D {
    const Workload* w;
    std::atomic<bool>* done;
  } d{&w, &done};
  if (pthread_create(
          &tid, nullptr,
          [](void* p) -> void* {
            auto* dd = static_cast<D*>(p);
            driver(const_cast<Workload*>(dd->w));
            dd->done->store(true);
            return nullptr;
          },
          &d) != 0) {
    Failure f;
    f.op = "pthread_create";
    f.detail = "cannot create the driver thread";
    fail(f);
  }
  double last_print = 0;
  uint64_t last_ops = 0;
  uint64_t progress_ops = 0;  // the op count last seen to move, and when
  double progress_at = 0;
  for (;;) {
    usleep(20000);
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t o;
    int64_t live;
    sum_counters(g.opt.threads, &o, &live);
    if (live > r.peak_live) r.peak_live = live;
    size_t rss = rss_bytes();
    if (rss > r.peak_rss) r.peak_rss = rss;
    if (seconds > 0 && el >= seconds) g.stop.store(true);
    if (done.load()) break;
    if (o != progress_ops) {
      progress_ops = o;
      progress_at = el;
    }
    // A workload that has not stopped long after its time is hung (a deadlock
    // or livelock in the allocator, which the threads' own checks cannot see):
    // a FAILURE line, not a run that never ends.
    // (Default 60 s: the fork workload's children have 20 s of their own, alarm().)
    // Without --seconds (an --ops run) there is no time to be past: there, and
    // everywhere, no operation completed by any thread for --watchdog seconds
    // is a hang too (before stop 53 an --ops run with a hung allocator never
    // ended). Every workload completes ops at least every few seconds (a
    // fork child, counted when it exits, has 20 s: alarm()).
    bool late = seconds > 0 && el >= seconds + g.opt.watchdog;
    if (late || el - progress_at >= g.opt.watchdog) {
      Failure f;
      f.op = "watchdog";
      f.thread = -1;
      static char msg[160];
      if (late)
        snprintf(msg, sizeof msg, "workload still running %.0f s after its %.1f s: hung",
                 el - seconds, seconds);
      else
        snprintf(msg, sizeof msg,
                 "no operation completed for %.0f s (%" PRIu64 " ops done, %.0f s in): hung",
                 el - progress_at, o, el);
      f.detail = msg;
      fail(f);
    }
    if (g.opt.progress && el - last_print >= 1.0) {
      fprintf(stderr, "\r\033[K[%s] %5.1fs  %7.3f Mops/s  live %8.1f MiB  rss %8.1f MiB", w.name,
              el, static_cast<double>(o - last_ops) / (el - last_print) / 1e6,
              static_cast<double>(live) / 1048576.0, static_cast<double>(rss) / 1048576.0);
      last_print = el;
      last_ops = o;
    }
  }
  pthread_join(tid, nullptr);
  if (g.opt.progress && last_print > 0) fprintf(stderr, "\r\033[K");
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t live;
  sum_counters(g.opt.threads, &r.ops, &live);
  if (live != 0 || g.index->size() != 0) {
    Failure f;
    f.op = "end-of-workload";
    f.size = static_cast<size_t>(live);
    f.detail = "harness bug: blocks still recorded as live after every thread finished";
    fail(f);
  }
  check_magslab_live(live_start, "after the workload");
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options& o = g.opt;
  unsigned hw = std::thread::hardware_concurrency();
  bool have_workload = false;
  bool have_seconds = false, have_seed = false, have_threads = false, have_max = false;
  const char* allocator = "magslab";
  // getopt_long's values for the options: above every character, so that optopt tells an option
  // given a value it does not take from an unknown short option.
  enum : int {
    kThreads = 256,
    kSeconds,
    kOps,
    kSeed,
    kMaxSize,
    kWorkload,
    kFaultRate,
    kWatchdog,
    kAllocator,
    kSmoke,
    kJson,
    kQuiet,
    kHelp
  };
  static const option kOptions[] = {{"threads", required_argument, nullptr, kThreads},
                                    {"seconds", required_argument, nullptr, kSeconds},
                                    {"ops", required_argument, nullptr, kOps},
                                    {"seed", required_argument, nullptr, kSeed},
                                    {"max-size", required_argument, nullptr, kMaxSize},
                                    {"workload", required_argument, nullptr, kWorkload},
                                    {"fault-rate", required_argument, nullptr, kFaultRate},
                                    {"watchdog", required_argument, nullptr, kWatchdog},
                                    {"allocator", required_argument, nullptr, kAllocator},
                                    {"smoke", no_argument, nullptr, kSmoke},
                                    {"json", no_argument, nullptr, kJson},
                                    {"quiet", no_argument, nullptr, kQuiet},
                                    {"help", no_argument, nullptr, kHelp},
                                    {nullptr, 0, nullptr, 0}};
  opterr = 0;  // our own messages; the leading ':' tells a missing value (':') from the rest ('?')
  for (int c; (c = getopt_long(argc, argv, ":", kOptions, nullptr)) != -1;) {
    uint64_t v = 0;
    switch (c) {
      case kThreads:
        if (!parse_u64(optarg, &v, false) || v == 0 || v > kMaxThreads)
          usage("bad --threads", optarg);
        o.threads = static_cast<unsigned>(v);
        have_threads = true;
        break;
      case kSeconds:
        if (!parse_double(optarg, 0, 1e7, &o.seconds)) usage("bad --seconds", optarg);
        have_seconds = true;
        break;
      case kOps:
        if (!parse_u64(optarg, &v, true) || v == 0) usage("bad --ops", optarg);
        o.ops = v;
        break;
      case kSeed:
        if (!parse_u64(optarg, &o.seed, false)) usage("bad --seed", optarg);
        have_seed = true;
        break;
      case kMaxSize:
        if (!parse_u64(optarg, &v, true) || v < 16 || v > (1ull << 30))
          usage("bad --max-size (16 .. 1g)", optarg);
        o.max_size = v;
        have_max = true;
        break;
      case kWorkload:
        o.workload = optarg;
        have_workload = true;
        break;
      case kFaultRate:
        if (!parse_double(optarg, 0, 1, &o.fault_rate))
          usage("bad --fault-rate (0 < P <= 1)", optarg);
        break;
      case kWatchdog:
        if (!parse_double(optarg, 0, 1e7, &o.watchdog) || o.watchdog <= 0)
          usage("bad --watchdog", optarg);
        break;
      case kAllocator:
        allocator = optarg;
        break;
      case kSmoke:
        o.smoke = true;
        break;
      case kJson:
        o.json = true;
        break;
      case kQuiet:
        o.quiet = true;
        break;
      case kHelp:
        usage(nullptr);
      case ':':
        usage("missing value for", argv[optind - 1]);
      default:  // '?'
        if (optopt >= kThreads) usage("option takes no value", argv[optind - 1]);
        if (optopt != 0) {
          const char unknown[] = {'-', static_cast<char>(optopt), '\0'};
          usage("unknown option", unknown);
        }
        usage("unknown or ambiguous option", argv[optind - 1]);
    }
  }
  if (optind < argc) usage("unexpected argument", argv[optind]);
  if (!strcmp(allocator, "magslab"))
    g.api = &magslab_api();
  else if (!strcmp(allocator, "system"))
    g.api = &system_api();
  else
    usage("unknown --allocator (magslab or system)", allocator);
  if (o.fault_rate > 0 && !g.api->is_magslab) usage("--fault-rate needs --allocator magslab");

  if (o.smoke && !have_workload) o.workload = "all";
  bool all = !strcmp(o.workload, "all");
  // One workload, "all", or a comma-separated list (run in table order).
  bool selected[kNumWorkloads] = {};
  size_t nwl = 0;
  for (const char* w = o.workload; !all;) {
    const char* comma = strchr(w, ',');
    size_t len = comma ? static_cast<size_t>(comma - w) : strlen(w);
    bool found = false;
    for (size_t i = 0; i < kNumWorkloads; ++i)
      if (strlen(kWorkloads[i].name) == len && !strncmp(w, kWorkloads[i].name, len)) {
        nwl += !selected[i];
        selected[i] = found = true;
      }
    if (!found) usage("unknown --workload", o.workload);
    if (comma == nullptr) break;
    w = comma + 1;
  }
  if (all) {
    for (bool& b : selected) b = true;
    nwl = kNumWorkloads;
  }

  if (o.smoke) {
    if (!have_seconds && o.ops == 0) {
#ifdef MS_SANITIZED
      o.seconds = 0.75 * static_cast<double>(nwl);
#else
      o.seconds = 1.5 * static_cast<double>(nwl);
#endif
    }
    if (!have_threads) {
#ifdef MS_SANITIZED
      o.threads = 4;
#else
      o.threads = std::max(4u, hw);
#endif
    }
#ifdef MS_SANITIZED
    if (!have_max) o.max_size = 256 << 10;
#else
    (void)have_max;
#endif
  }
  if (o.threads == 0) o.threads = hw ? std::min(hw, kMaxThreads) : 2;
  if (!have_seconds && o.ops == 0 && !o.smoke) o.seconds = 10;
  if (!have_seed) {
    std::random_device rd;
    o.seed = (uint64_t{rd()} << 32) ^ rd() ^
             static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  o.progress = !o.quiet && isatty(2);

  char fault_note[48] = "";
  if (o.fault_rate > 0) snprintf(fault_note, sizeof fault_note, " fault-rate=%g", o.fault_rate);
  double per_seconds = o.seconds > 0 ? o.seconds / static_cast<double>(nwl) : 0;
  fprintf(stderr,
          "magslab-stress: seed=0x%016" PRIx64
          " allocator=%s threads=%u workload=%s max-size=%zu%s\n",
          o.seed, g.api->name, o.threads, o.workload, o.max_size, fault_note);
  if (!o.quiet) {
    if (o.ops) fprintf(stderr, "magslab-stress: %" PRIu64 " ops per workload\n", o.ops);
    if (per_seconds > 0) fprintf(stderr, "magslab-stress: %.2f s per workload\n", per_seconds);
  }

  t_worker = -1;  // main
  install_crash_report();
  if (g.api->is_magslab) {
    const struct magslab_stats& st = magslab_stats_now();
    size_t sizes[MAGSLAB_MAX_CLASSES];
    for (size_t c = 0; c < st.class_count; ++c) sizes[c] = st.classes[c].object_size;
    load_magslab_classes(sizes, st.class_count);
  }
  g.index = new (raw_alloc(sizeof(OverlapIndex))) OverlapIndex();
  g.counters = new (raw_alloc(sizeof(Counter) * kMaxThreads)) Counter[kMaxThreads];
  Live live_start = g.api->is_magslab ? magslab_live() : Live{};
  if (o.fault_rate > 0) {
    mstest::fake_os::install();
    mstest::fake_os::set_fault_rate(o.fault_rate, o.seed);
    g.null_ok.store(true);
  }

  Result results[kNumWorkloads];
  size_t nres = 0;
  for (size_t i = 0; i < kNumWorkloads; ++i) {
    if (!selected[i]) continue;
    results[nres++] = run_workload(kWorkloads[i], i, per_seconds, o.ops);
  }
  g.workload = o.workload;
  arm_final_watchdog(o.watchdog);
  if (o.fault_rate > 0) {
    // The OS comes back: no refusal from here on, and no NULL tolerated.
    mstest::fake_os::refuse_nothing();
    g.null_ok.store(false);
  }
  check_magslab_live(live_start, "at the end of the run");
  check_heap_usable();
  g.workload = o.workload;
  check_magslab_live(live_start, "after the final heap check");
  check_magslab_mapped("after the final heap check");
  if (o.fault_rate > 0) {
    mstest::fake_os::Counts fc = mstest::fake_os::counts();
    mstest::fake_os::uninstall();
    uint64_t injected = fc.refused_maps + fc.refused_remaps + fc.refused_decommits;
    fprintf(stderr,
            "magslab-stress: faults injected: %" PRIu64 " (map %" PRIu64 ", remap %" PRIu64
            ", decommit %" PRIu64 ") of %" PRIu64 " calls; NULL/ENOMEM results seen: %" PRIu64 "\n",
            injected, fc.refused_maps, fc.refused_remaps, fc.refused_decommits,
            fc.maps + fc.remaps + fc.decommits, g.enomem.load());
    if (injected == 0) {
      Failure f;
      f.op = "fault-count";
      f.detail =
          "fault mode injected no fault (the seam was never consulted or the rate is too low)";
      fail(f);
    }
    // Every NULL must come from a refusal: an allocation that failed needed
    // memory the OS refused (a refused decommit never fails one: the pages
    // are zeroed instead). More NULLs than refused maps and remaps are
    // failures of the allocator's own.
    if (g.enomem.load() > fc.refused_maps + fc.refused_remaps) {
      Failure f;
      f.op = "fault-count";
      static char msg[160];
      snprintf(msg, sizeof msg,
               "%" PRIu64 " NULL/ENOMEM results but only %" PRIu64
               " refused map and remap calls: spurious allocation failures",
               g.enomem.load(), fc.refused_maps + fc.refused_remaps);
      f.detail = msg;
      fail(f);
    }
  }

  alarm(0);  // the final checks are done
  if (o.json) {
    printf("{\"seed\":\"0x%016" PRIx64
           "\",\"allocator\":\"%s\",\"threads\":%u,\"max_size\":%zu,"
           "\"result\":\"pass\",\"workloads\":[",
           o.seed, g.api->name, o.threads, o.max_size);
    for (size_t i = 0; i < nres; ++i) {
      const Result& r = results[i];
      printf("%s{\"name\":\"%s\",\"threads\":%u,\"ops\":%" PRIu64
             ",\"seconds\":%.3f,"
             "\"ops_per_sec\":%.0f,\"peak_live_bytes\":%" PRId64 ",\"peak_rss_bytes\":%zu}",
             i ? "," : "", r.name, r.threads, r.ops, r.seconds,
             static_cast<double>(r.ops) / r.seconds, r.peak_live, r.peak_rss);
    }
    printf("]}\n");
  } else if (!o.quiet) {
    printf("%-11s %7s %13s %9s %14s %13s %8s\n", "workload", "threads", "ops", "Mops/s",
           "peak live MiB", "peak RSS MiB", "seconds");
    uint64_t tops = 0;
    double tsec = 0;
    for (size_t i = 0; i < nres; ++i) {
      const Result& r = results[i];
      printf("%-11s %7u %13" PRIu64 " %9.3f %14.1f %13.1f %8.2f\n", r.name, r.threads, r.ops,
             static_cast<double>(r.ops) / r.seconds / 1e6,
             static_cast<double>(r.peak_live) / 1048576.0,
             static_cast<double>(r.peak_rss) / 1048576.0, r.seconds);
      tops += r.ops;
      tsec += r.seconds;
    }
    printf("magslab-stress: PASS allocator=%s seed=0x%016" PRIx64 " ops=%" PRIu64 " in %.1f s\n",
           g.api->name, o.seed, tops, tsec);
  }
  fflush(stdout);
  return 0;
}
