// bench/latency: the latency of every malloc and every free (issue #14).
//
//   latency --workload larson|xmalloc|large|all [--threads N] [--seconds S]
//           [--allocator NAME|any] [--seed N] [--timer rdtsc|clock]
//
// Like bench/macro, the binary links nothing but libc: the allocator is chosen
// by LD_PRELOAD (bench/run) and checked at start (exit 2 on a mismatch, see
// active_allocator.h). Each workload runs N threads for S seconds and times
// every malloc and every free it makes, one by one:
//
//   larson   server churn: each thread replaces random slots of a 1000-slot
//            array (16..515 B); the run is cut into 4 generations whose
//            threads exit and hand their (rotated) arrays to the next, so most
//            frees are of blocks another thread allocated (bench/macro larson)
//   xmalloc  producer/consumer: ceil(N/2) producers allocate batches of 128
//            blocks (mostly 16..512 B, 1/8 up to 4 KiB, 1/64 up to 8 KiB) into
//            a bounded ring, floor(N/2) consumers free them: every free is
//            cross-thread; 1 thread alternates (bench/macro xmalloc)
//   large    large blocks: each thread replaces random slots of an 8-slot
//            array with blocks of 64 KiB..4 MiB (Rng::log_uniform: one of the
//            7 power-of-two ranges 2^16..2^22, then a size in it, clamped to
//            4 MiB: 1 in 7 is exactly 4 MiB, 3 in 7 are above 1 MiB); with
//            N > 1, 1 old block in 4 is handed to the next thread, which
//            frees it
//
// Timing: rdtsc (lfence; rdtsc; lfence ... rdtscp; lfence) calibrated once
// against CLOCK_MONOTONIC, or clock_gettime(CLOCK_MONOTONIC) with
// --timer clock (the default when the CPU lacks an invariant TSC). The timed
// region is the malloc or free call alone; figures include the timer's own
// cost, measured at start and reported (timer_overhead_*_ns), not subtracted.
// Each thread records into its own log-linear histograms (values below 64
// ticks exact, then 32 buckets per power of two: a bucket is at most 1/32 of
// its value wide), in arrays mmap'd before the threads start, so measuring
// calls no allocator function; they are merged at the end. A percentile is
// the upper edge of its bucket (at most ~3% above the true value); max is
// exact.
//
// Every block is stamped (tag in its first 8 bytes, tag ^ size-mix in its
// last 8) and checked before it is freed, outside the timed region; a failed
// check makes the run exit 3 with "verified": false.
//
// Output (stdout): one JSON line per (workload, op), op = malloc or free:
//   {"workload":..., "op":..., "allocator":..., "threads":..., "seconds":...,
//    "count":..., "mean_ns":..., "p50_ns":..., "p90_ns":..., "p99_ns":...,
//    "p999_ns":..., "p9999_ns":..., "max_ns":..., "timer":..., "tsc_ghz":...,
//    "timer_overhead_p50_ns":..., "timer_overhead_min_ns":...,
//    "peak_rss_kib":..., "verified":true, "hist":[[upper_ns,count],...]}
// where hist lists the non-empty buckets (for plots).
#include <cpuid.h>
#include <getopt.h>
#include <sys/mman.h>
#include <time.h>
#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "active_allocator.h"
#include "testing/args.h"
#include "testing/rng.h"
#include "testing/threads.h"

namespace {

using mstest::Rng;

struct Options {
  std::string workload;
  std::string allocator = "any";
  int threads = 1;
  double seconds = 1.0;
  uint64_t seed = 42;
  std::string timer;  // "rdtsc" or "clock"; empty: rdtsc if the TSC is invariant
};
Options g_opt;

// ---------------------------------------------------------------------------
// Timer
// ---------------------------------------------------------------------------
bool g_rdtsc = true;
double g_ticks_per_ns = 1.0;

inline uint64_t clock_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// lfence before rdtsc: earlier instructions have completed; lfence after: later
// ones (the call) have not started. rdtscp waits for the call to complete.
inline uint64_t timer_begin() {
  asm volatile("" ::: "memory");
  uint64_t t;
  if (g_rdtsc) {
    _mm_lfence();
    t = __rdtsc();
    _mm_lfence();
  } else {
    t = clock_ns();
  }
  asm volatile("" ::: "memory");
  return t;
}

inline uint64_t timer_end() {
  asm volatile("" ::: "memory");
  uint64_t t;
  if (g_rdtsc) {
    unsigned aux;
    t = __rdtscp(&aux);
    _mm_lfence();
  } else {
    t = clock_ns();
  }
  asm volatile("" ::: "memory");
  return t;
}

// CPUID leaf 0x80000007, EDX bit 8: the TSC runs at a constant rate in every
// P-, C- and T-state (Linux's constant_tsc + nonstop_tsc).
bool invariant_tsc() {
  unsigned a, b, c, d;
  if (__get_cpuid(0x80000000u, &a, &b, &c, &d) == 0 || a < 0x80000007u) return false;
  __get_cpuid(0x80000007u, &a, &b, &c, &d);
  return (d & (1u << 8)) != 0;
}

// Ticks per ns of the TSC, against CLOCK_MONOTONIC over ~50 ms.
double calibrate_tsc() {
  const uint64_t c0 = clock_ns();
  const uint64_t t0 = __rdtsc();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const uint64_t c1 = clock_ns();
  const uint64_t t1 = __rdtsc();
  return static_cast<double>(t1 - t0) / static_cast<double>(c1 - c0);
}

// ---------------------------------------------------------------------------
// Log-linear histogram of ticks: exact below 64, then 32 buckets per power of
// two up to 2^64.
// ---------------------------------------------------------------------------
constexpr int kExact = 64;
constexpr int kSub = 32;
constexpr int kBuckets = kExact + (64 - 6) * kSub;

inline int bucket_of(uint64_t v) {
  if (v < kExact) return static_cast<int>(v);
  const int e = 63 - __builtin_clzll(v);  // >= 6
  return kExact + (e - 6) * kSub + static_cast<int>((v >> (e - 5)) & (kSub - 1));
}
inline uint64_t bucket_low(int b) {
  if (b < kExact) return static_cast<uint64_t>(b);
  const int e = (b - kExact) / kSub + 6;
  const uint64_t m = static_cast<uint64_t>((b - kExact) % kSub);
  return (kSub + m) << (e - 5);
}
inline uint64_t bucket_high(int b) { return b + 1 < kBuckets ? bucket_low(b + 1) - 1 : UINT64_MAX; }

struct alignas(64) Hist {
  uint64_t count[kBuckets];
  uint64_t n, sum, max;

  void add(uint64_t t0, uint64_t t1) {
    const uint64_t v = t1 > t0 ? t1 - t0 : 0;  // a TSC step back between cores: 0
    ++count[bucket_of(v)];
    ++n;
    sum += v;
    if (v > max) max = v;
  }
  void merge(const Hist& o) {
    for (int b = 0; b < kBuckets; ++b) count[b] += o.count[b];
    n += o.n;
    sum += o.sum;
    max = std::max(max, o.max);
  }
  // Upper edge of the bucket holding the q-quantile (ticks), at most max.
  uint64_t quantile(double q) const {
    if (n == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(n));
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    uint64_t seen = 0;
    for (int b = 0; b < kBuckets; ++b) {
      seen += count[b];
      if (seen >= rank) return std::min(bucket_high(b), max);
    }
    return max;
  }
};

// Zeroed, page-aligned storage outside the allocator under test.
template <class T>
T* map_array(size_t n) {
  const size_t bytes = (n * sizeof(T) + 4095) & ~size_t{4095};
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("latency: mmap");
    std::exit(4);
  }
  T* a = static_cast<T*>(p);
  for (size_t i = 0; i < n; ++i) new (&a[i]) T();
  return a;
}

struct alignas(64) ThreadHists {
  Hist malloc_h;
  Hist free_h;
};

ThreadHists* g_hists = nullptr;  // one per thread index
std::atomic<uint64_t> g_bad{0};
std::atomic<bool> g_stop{false};

inline bool stopping() { return g_stop.load(std::memory_order_relaxed); }

inline void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

inline void* timed_malloc(size_t n, Hist& h) {
  const uint64_t t0 = timer_begin();
  void* p = std::malloc(n);
  const uint64_t t1 = timer_end();
  h.add(t0, t1);
  if (p == nullptr) {
    std::fprintf(stderr, "malloc(%zu) failed\n", n);
    std::exit(4);
  }
  return p;
}

inline void timed_free(void* p, Hist& h) {
  escape(p);
  const uint64_t t0 = timer_begin();
  std::free(p);
  const uint64_t t1 = timer_end();
  h.add(t0, t1);
}

// Blocks of at least 16 bytes: tag in the first 8 bytes, tail in the last 8.
inline uint64_t tail_of(uint64_t tag, size_t n) { return tag ^ (n * 0x9E3779B97F4A7C15ull); }

struct Slot {
  void* p = nullptr;
  uint64_t n = 0;
  uint64_t tag = 0;
};

inline void stamp(const Slot& s) {
  const uint64_t tail = tail_of(s.tag, s.n);
  std::memcpy(s.p, &s.tag, 8);
  std::memcpy(static_cast<char*>(s.p) + s.n - 8, &tail, 8);
}

inline void check(const Slot& s) {
  uint64_t head, tail;
  std::memcpy(&head, s.p, 8);
  std::memcpy(&tail, static_cast<const char*>(s.p) + s.n - 8, 8);
  if (head != s.tag || tail != tail_of(s.tag, s.n)) g_bad.fetch_add(1, std::memory_order_relaxed);
}

inline Slot fill(Rng& r, size_t n, Hist& h) {
  Slot s;
  s.n = n;
  s.tag = r.next() | 1;
  s.p = timed_malloc(n, h);
  stamp(s);
  return s;
}

inline void release(const Slot& s, Hist& h) {
  check(s);
  timed_free(s.p, h);
}

void run_for(int threads, double seconds, void (*body)(int, void*), void* arg) {
  mstest::run_threads_for(threads, std::chrono::duration<double>(seconds), g_stop,
                          [&](int i) { body(i, arg); });
}

// ---------------------------------------------------------------------------
// larson: server churn, blocks outlive the thread that allocated them.
// ---------------------------------------------------------------------------
constexpr int kLarsonSlots = 1000;
constexpr int kLarsonGens = 4;

struct LarsonCtx {
  Slot* arrays;  // T x kLarsonSlots
  int gen;
};

void larson_body(int i, void* arg) {
  auto* c = static_cast<LarsonCtx*>(arg);
  const int T = g_opt.threads;
  Slot* slots = c->arrays + static_cast<size_t>((i + c->gen) % T) * kLarsonSlots;
  Rng r(g_opt.seed + 1000003ull * (c->gen * 64 + i + 1));
  ThreadHists& h = g_hists[i];
  while (!stopping()) {
    for (int k = 0; k < 64; ++k) {
      Slot& s = slots[r.below(kLarsonSlots)];
      release(s, h.free_h);
      s = fill(r, 16 + r.below(500), h.malloc_h);
    }
  }
}

void larson() {
  const int T = g_opt.threads;
  LarsonCtx c{map_array<Slot>(static_cast<size_t>(T) * kLarsonSlots), 0};
  Rng r0(g_opt.seed);
  Hist* setup = map_array<Hist>(1);  // the main thread's blocks: not reported
  for (size_t k = 0; k < static_cast<size_t>(T) * kLarsonSlots; ++k)
    c.arrays[k] = fill(r0, 16 + r0.below(500), *setup);
  for (c.gen = 0; c.gen < kLarsonGens; ++c.gen)
    run_for(T, g_opt.seconds / kLarsonGens, larson_body, &c);
  for (size_t k = 0; k < static_cast<size_t>(T) * kLarsonSlots; ++k) release(c.arrays[k], *setup);
}

// ---------------------------------------------------------------------------
// xmalloc: producers allocate batches into a bounded ring, consumers free them.
// ---------------------------------------------------------------------------
constexpr int kBatch = 128;
constexpr size_t kRing = 64;

struct Batch {
  Slot items[kBatch];
};

size_t mixed_size(Rng& r) {
  const uint64_t x = r.below(64);
  if (x == 0) return 16 + r.below(8192 - 15);
  if (x < 8) return 16 + r.below(4096 - 15);
  return 16 + r.below(512 - 15);
}

struct XmallocCtx {
  Batch* ring;  // kRing batches
  size_t head = 0, size = 0;
  int producers = 0, producers_left = 0;
  std::mutex mu;
  std::condition_variable not_empty, not_full;
};

void xmalloc_body(int i, void* arg) {
  auto* c = static_cast<XmallocCtx*>(arg);
  ThreadHists& h = g_hists[i];
  Batch local;
  if (i < c->producers) {
    Rng r(g_opt.seed + 7919ull * (i + 1));
    while (!stopping()) {
      for (auto& s : local.items) s = fill(r, mixed_size(r), h.malloc_h);
      std::unique_lock<std::mutex> lk(c->mu);
      c->not_full.wait(lk, [&] { return c->size < kRing; });
      c->ring[(c->head + c->size) % kRing] = local;
      ++c->size;
      c->not_empty.notify_one();
    }
    std::lock_guard<std::mutex> lk(c->mu);
    if (--c->producers_left == 0) c->not_empty.notify_all();
    return;
  }
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(c->mu);
      c->not_empty.wait(lk, [&] { return c->size > 0 || c->producers_left == 0; });
      if (c->size == 0) break;
      local = c->ring[c->head];
      c->head = (c->head + 1) % kRing;
      --c->size;
      c->not_full.notify_one();
    }
    for (const auto& s : local.items) release(s, h.free_h);
  }
}

void xmalloc_single(int, void*) {
  ThreadHists& h = g_hists[0];
  Rng r(g_opt.seed);
  Batch* q = map_array<Batch>(8);
  while (!stopping()) {
    for (int b = 0; b < 8; ++b)
      for (auto& s : q[b].items) s = fill(r, mixed_size(r), h.malloc_h);
    for (int b = 0; b < 8; ++b)
      for (const auto& s : q[b].items) release(s, h.free_h);
  }
  munmap(q, (8 * sizeof(Batch) + 4095) & ~size_t{4095});
}

void xmalloc_pipeline() {
  const int T = g_opt.threads;
  if (T == 1) {
    run_for(1, g_opt.seconds, xmalloc_single, nullptr);
    return;
  }
  auto* c = new XmallocCtx;  // before the threads start
  c->ring = map_array<Batch>(kRing);
  c->producers = c->producers_left = (T + 1) / 2;
  run_for(T, g_opt.seconds, xmalloc_body, c);
  Hist* rest = map_array<Hist>(1);  // nothing should be left
  for (; c->size > 0; --c->size, c->head = (c->head + 1) % kRing)
    for (const auto& s : c->ring[c->head].items) release(s, *rest);
  delete c;
}

// ---------------------------------------------------------------------------
// large: 64 KiB..4 MiB blocks, some freed by the next thread.
// ---------------------------------------------------------------------------
constexpr int kLargeSlots = 8;
constexpr size_t kMailbox = 64;

struct alignas(64) Mailbox {
  std::mutex mu;
  size_t size = 0;
  Slot items[kMailbox];
};

struct LargeCtx {
  Mailbox* boxes;  // one per thread
};

void large_body(int i, void* arg) {
  auto* c = static_cast<LargeCtx*>(arg);
  const int T = g_opt.threads;
  ThreadHists& h = g_hists[i];
  Rng r(g_opt.seed + 104729ull * (i + 1));
  Slot slots[kLargeSlots];
  Slot inbox[kMailbox];
  auto size = [&] { return r.log_uniform(64 * 1024, 4 * 1024 * 1024); };
  for (auto& s : slots) s = fill(r, size(), h.malloc_h);
  while (!stopping()) {
    for (int k = 0; k < 16; ++k) {
      Slot& s = slots[r.below(kLargeSlots)];
      bool handed = false;
      if (T > 1 && r.chance(4)) {
        Mailbox& out = c->boxes[(i + 1) % T];
        std::lock_guard<std::mutex> lk(out.mu);
        if (out.size < kMailbox) {
          out.items[out.size++] = s;
          handed = true;
        }
      }
      if (!handed) release(s, h.free_h);
      s = fill(r, size(), h.malloc_h);
    }
    if (T > 1) {
      size_t n;
      {
        Mailbox& in = c->boxes[i];
        std::lock_guard<std::mutex> lk(in.mu);
        n = in.size;
        std::copy(in.items, in.items + n, inbox);
        in.size = 0;
      }
      for (size_t k = 0; k < n; ++k) release(inbox[k], h.free_h);
    }
  }
  for (auto& s : slots) release(s, h.free_h);
}

void large() {
  const int T = g_opt.threads;
  LargeCtx c{map_array<Mailbox>(static_cast<size_t>(T))};
  run_for(T, g_opt.seconds, large_body, &c);
  Hist* rest = map_array<Hist>(1);  // blocks still in a mailbox: not reported
  for (int t = 0; t < T; ++t)
    for (size_t k = 0; k < c.boxes[t].size; ++k) release(c.boxes[t].items[k], *rest);
}

// ---------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------
struct Workload {
  const char* name;
  void (*fn)();
  const char* what;
};

const Workload kWorkloads[] = {
    {"larson", larson, "server churn, 16..515 B, blocks outlive their thread"},
    {"xmalloc", xmalloc_pipeline, "producer/consumer, 16 B..8 KiB, every free cross-thread"},
    {"large", large, "64 KiB..4 MiB blocks, 1 in 4 freed by the next thread"},
};

inline double to_ns(uint64_t ticks) { return static_cast<double>(ticks) / g_ticks_per_ns; }

double g_overhead_p50_ns = 0, g_overhead_min_ns = 0;

// The timer's own cost: an empty timed region, 200,000 times.
void measure_overhead() {
  Hist* h = map_array<Hist>(1);
  uint64_t lo = UINT64_MAX;
  for (int k = 0; k < 200000; ++k) {
    const uint64_t t0 = timer_begin();
    const uint64_t t1 = timer_end();
    h->add(t0, t1);
    lo = std::min(lo, t1 - t0);
  }
  g_overhead_p50_ns = to_ns(h->quantile(0.5));
  g_overhead_min_ns = to_ns(lo);
  munmap(h, (sizeof(Hist) + 4095) & ~size_t{4095});
}

void print_line(const char* workload, const char* op, const Hist& h, double seconds,
                bool verified) {
  std::printf(
      "{\"workload\":\"%s\",\"op\":\"%s\",\"allocator\":\"%s\",\"threads\":%d,"
      "\"seconds\":%.4f,\"count\":%llu,\"mean_ns\":%.1f,\"p50_ns\":%.1f,\"p90_ns\":%.1f,"
      "\"p99_ns\":%.1f,\"p999_ns\":%.1f,\"p9999_ns\":%.1f,\"max_ns\":%.1f,\"timer\":\"%s\","
      "\"tsc_ghz\":%.4f,\"timer_overhead_p50_ns\":%.1f,\"timer_overhead_min_ns\":%.1f,"
      "\"peak_rss_kib\":%ld,\"verified\":%s,\"hist\":[",
      workload, op, bench::detect_allocator().c_str(), g_opt.threads, seconds,
      static_cast<unsigned long long>(h.n), h.n ? to_ns(h.sum) / static_cast<double>(h.n) : 0.0,
      to_ns(h.quantile(0.5)), to_ns(h.quantile(0.9)), to_ns(h.quantile(0.99)),
      to_ns(h.quantile(0.999)), to_ns(h.quantile(0.9999)), to_ns(h.max),
      g_rdtsc ? "rdtsc" : "clock", g_rdtsc ? g_ticks_per_ns : 0.0, g_overhead_p50_ns,
      g_overhead_min_ns, bench::peak_rss_kib(), verified ? "true" : "false");
  bool first = true;
  for (int b = 0; b < kBuckets; ++b) {
    if (h.count[b] == 0) continue;
    std::printf("%s[%.1f,%llu]", first ? "" : ",", to_ns(std::min(bucket_high(b), h.max)),
                static_cast<unsigned long long>(h.count[b]));
    first = false;
  }
  std::printf("]}\n");
}

// Returns false if a check failed.
bool run_workload(const Workload& w) {
  const int T = g_opt.threads;
  g_hists = map_array<ThreadHists>(static_cast<size_t>(T));
  g_bad.store(0);
  const auto t0 = std::chrono::steady_clock::now();
  w.fn();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Hist* m = map_array<Hist>(2);
  for (int t = 0; t < T; ++t) {
    m[0].merge(g_hists[t].malloc_h);
    m[1].merge(g_hists[t].free_h);
  }
  const bool verified = g_bad.load() == 0;
  print_line(w.name, "malloc", m[0], elapsed, verified);
  print_line(w.name, "free", m[1], elapsed, verified);
  std::fflush(stdout);
  munmap(m, (2 * sizeof(Hist) + 4095) & ~size_t{4095});
  munmap(g_hists, (static_cast<size_t>(T) * sizeof(ThreadHists) + 4095) & ~size_t{4095});
  if (!verified)
    std::fprintf(stderr, "%s: VERIFICATION FAILED (%llu bad checks)\n", w.name,
                 static_cast<unsigned long long>(g_bad.load()));
  return verified;
}

[[noreturn]] void usage(const char* msg = nullptr, const char* arg = nullptr) {
  if (msg != nullptr)
    std::fprintf(stderr, "latency: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
  std::fprintf(stderr,
               "usage: latency --workload larson|xmalloc|large|all [--threads N] [--seconds S]\n"
               "               [--allocator NAME|any] [--seed N] [--timer rdtsc|clock]\n"
               "       latency --list\n");
  std::exit(2);
}

using mstest::parse_double;
using mstest::parse_long;

}  // namespace

int main(int argc, char** argv) {
  static const option kOptions[] = {{"workload", required_argument, nullptr, 'w'},
                                    {"threads", required_argument, nullptr, 't'},
                                    {"seconds", required_argument, nullptr, 's'},
                                    {"allocator", required_argument, nullptr, 'a'},
                                    {"seed", required_argument, nullptr, 'r'},
                                    {"timer", required_argument, nullptr, 'm'},
                                    {"list", no_argument, nullptr, 'l'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  opterr = 0;
  for (int c; (c = getopt_long(argc, argv, "", kOptions, nullptr)) != -1;) {
    long n = 0;
    switch (c) {
      case 'w':
        g_opt.workload = optarg;
        break;
      case 't':
        if (!parse_long(optarg, 1, 1024, &n)) usage("bad --threads (1..1024)", optarg);
        g_opt.threads = static_cast<int>(n);
        break;
      case 's':
        if (!parse_double(optarg, 1e-6, 1e6, &g_opt.seconds)) usage("bad --seconds", optarg);
        break;
      case 'a':
        g_opt.allocator = optarg;
        break;
      case 'r':
        if (!mstest::parse_u64(optarg, &g_opt.seed)) usage("bad --seed", optarg);
        break;
      case 'm':
        g_opt.timer = optarg;
        if (g_opt.timer != "rdtsc" && g_opt.timer != "clock") usage("bad --timer", optarg);
        break;
      case 'l':
        for (const auto& w : kWorkloads) std::printf("%s\t%s\n", w.name, w.what);
        return 0;
      case 'h':
        usage();
      default:
        usage("unknown option or missing value", argv[optind - 1]);
    }
  }
  if (optind < argc) usage("unexpected argument", argv[optind]);
  bench::require_allocator(g_opt.allocator);
  std::vector<const Workload*> todo;
  for (const auto& w : kWorkloads)
    if (g_opt.workload == w.name || g_opt.workload == "all") todo.push_back(&w);
  if (todo.empty()) {
    std::fprintf(stderr, "unknown workload '%s' (see --list)\n", g_opt.workload.c_str());
    return 2;
  }

  const bool tsc_ok = invariant_tsc();
  if (g_opt.timer.empty()) g_opt.timer = tsc_ok ? "rdtsc" : "clock";
  if (g_opt.timer == "rdtsc" && !tsc_ok) {
    std::fprintf(stderr, "latency: the TSC is not invariant on this CPU: use --timer clock\n");
    return 2;
  }
  g_rdtsc = g_opt.timer == "rdtsc";
  g_ticks_per_ns = g_rdtsc ? calibrate_tsc() : 1.0;
  measure_overhead();

  bool ok = true;
  for (const Workload* w : todo) ok = run_workload(*w) && ok;
  return ok ? 0 : 3;
}
