// stress/harness.cc: the allocator tables, failure reports and block checks.
#include "harness.h"

#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "magslab/magslab.h"

namespace stress {

Run g;

namespace {
size_t ms_usable(void* p) { return magslab_usable_size(p); }
void* sys_malloc(size_t n) { return ::malloc(n); }
void sys_free(void* p) { ::free(p); }
void* sys_calloc(size_t n, size_t m) { return ::calloc(n, m); }
void* sys_realloc(void* p, size_t n) { return ::realloc(p, n); }
int sys_posix_memalign(void** out, size_t a, size_t n) { return ::posix_memalign(out, a, n); }
void* sys_aligned_alloc(size_t a, size_t n) { return ::aligned_alloc(a, n); }
size_t sys_usable(void* p) { return ::malloc_usable_size(p); }
void ms_trim(bool everywhere) {
  if (everywhere)
    magslab_trim_all();
  else
    magslab_trim();
}
void sys_trim(bool) { ::malloc_trim(0); }
void no_idle() {}
void ms_free_aligned_sized(void* p, size_t, size_t n) { magslab_free_sized(p, n); }
template <class F>
F* process_symbol(const char* name) {
  return reinterpret_cast<F*>(dlsym(RTLD_DEFAULT, name));
}
}  // namespace

const Api& magslab_api() {
  static const Api api{"magslab",
                       magslab_malloc,
                       magslab_free,
                       magslab_calloc,
                       magslab_realloc,
                       magslab_posix_memalign,
                       magslab_aligned_alloc,
                       ms_usable,
                       ms_trim,
                       magslab_thread_idle,
                       true,
                       magslab_free_sized,
                       ms_free_aligned_sized};
  return api;
}
const Api& system_api() {
  static const Api api{"system",
                       sys_malloc,
                       sys_free,
                       sys_calloc,
                       sys_realloc,
                       sys_posix_memalign,
                       sys_aligned_alloc,
                       sys_usable,
                       sys_trim,
                       no_idle,
                       false,
                       process_symbol<void(void*, size_t)>("free_sized"),
                       process_symbol<void(void*, size_t, size_t)>("free_aligned_sized")};
  return api;
}

size_t random_size(Rng& r, size_t max_size) {
  uint64_t x = r.below(1000);
  size_t n;
  if (x < 2)
    n = 0;  // 0.2%: malloc(0)
  else if (x < 800)
    n = 1 + r.below(128);  // 80%: tiny and small
  else if (x < 950)
    n = r.log_uniform(129, 4096);  // 15%: up to a page
  else if (x < 995)
    n = r.log_uniform(4097, 65536);  // 4.5%: up to 64 KiB
  else
    n = r.log_uniform(65537, max_size);  // 0.5%: large, up to max
  return n > max_size ? max_size : n;
}

namespace {
// Set by the first report (a FAILURE or a CRASH line): any later one waits
// for the process to end.
std::atomic<bool> g_reporting{false};
}  // namespace

thread_local int t_worker = -2;

void fail(const Failure& f) {
  if (g_reporting.exchange(true)) {
    for (;;) pause();  // another thread is reporting and exiting
  }
  char thr[32];
  if (f.thread == -2)
    snprintf(thr, sizeof thr, "fork-child");
  else if (f.thread == -1)
    snprintf(thr, sizeof thr, "main");
  else
    snprintf(thr, sizeof thr, "%d", f.thread);
  char off[32] = "-", exp[16] = "-", fnd[16] = "-", other[64] = "";
  if (f.offset != SIZE_MAX) snprintf(off, sizeof off, "%zu", f.offset);
  if (f.expected >= 0) snprintf(exp, sizeof exp, "0x%02x", f.expected);
  if (f.found >= 0) snprintf(fnd, sizeof fnd, "0x%02x", f.found);
  if (f.other_addr != 0)
    snprintf(other, sizeof other, " other=0x%lx+%zu", static_cast<unsigned long>(f.other_addr),
             f.other_size);
  char line[640];
  int n =
      snprintf(line, sizeof line,
               "magslab-stress: FAILURE workload=%s thread=%s op=%s addr=%p size=%zu "
               "offset=%s expected=%s found=%s%s seed=0x%016llx allocator=%s: %s\n",
               g.workload, thr, f.op, f.addr, f.size, off, exp, fnd, other,
               static_cast<unsigned long long>(g.opt.seed), g.api ? g.api->name : "?", f.detail);
  if (n > static_cast<int>(sizeof line)) n = sizeof line;
  (void)!write(2, line, static_cast<size_t>(n));
  _exit(1);
}

size_t indexed_length(const void* p, size_t size) {
  size_t usable = g.api->usable_size(const_cast<void*>(p));
  return usable > size ? usable : size;
}

namespace {
// b's interval in the overlap index: up to the usable size it was made with
// (asked again where that is not kept).
size_t indexed_extent(const Block& b) {
  if (b.usable != 0) return b.usable > b.size ? b.usable : b.size;
  return indexed_length(b.p, b.size);
}
}  // namespace

namespace {
size_t g_class_sizes[256];
size_t g_class_count = 0;

bool is_class_size(size_t n) {
  for (size_t i = 0; i < g_class_count; ++i)
    if (g_class_sizes[i] == n) return true;
  return false;
}
}  // namespace

// A usable size that is not a class size is a page multiple (checked below):
// a page run or a huge block, whose pages are the allocator's to the end of
// the page holding the last requested byte, but whose usable size past that
// page only it knows. Filled that far only, so that a usable size too large by
// pages (which the overlap index reports when a live block lies there) does
// not have the harness write past the end of a mapping and crash (a mutation
// reporting a large block's usable size a page too large crashed the run,
// stop 53). A class size is filled whole: the object is the allocator's.
size_t extent_of(const Block& b) {
  if (!g.api->is_magslab) return b.size;
  size_t u = indexed_extent(b);
  if (u <= b.size || is_class_size(u)) return u;
  size_t page_end = (b.size + 4095) & ~size_t{4095};
  return std::max(b.size, std::min(u, page_end));
}

namespace {

// A usable size past the request that magslab cannot have made: neither one
// of its class sizes nor a page multiple (page runs and huge blocks) — the
// harness would write up to it. Reported as a failure of op.
void check_usable_is_magslab(int thread, const char* op, void* p, size_t size, size_t usable) {
  if (!g.api->is_magslab || usable <= size || usable % 4096 == 0 || is_class_size(usable)) return;
  Failure f;
  f.op = "usable-size";
  f.thread = thread;
  f.addr = p;
  f.size = size;
  static char msg[160];  // fail() does not return
  snprintf(msg, sizeof msg,
           "%s: usable_size %zu is neither a size class nor a page multiple (not written)", op,
           usable);
  f.detail = msg;
  fail(f);
}
}  // namespace

void load_magslab_classes(const size_t* sizes, size_t n) {
  g_class_count = std::min(n, sizeof g_class_sizes / sizeof g_class_sizes[0]);
  std::copy(sizes, sizes + g_class_count, g_class_sizes);
}

namespace {
// check_key over a block's whole extent [0, ext), reported with its requested
// size; a wrong byte past the request says so.
void check_extent(int thread, const Block& b, size_t ext, uint64_t key, const char* op,
                  const char* detail) {
  size_t off = check_pattern_range(b.p, 0, ext, key);
  if (off == kNoMismatch) return;
  Failure f;
  f.op = op;
  f.thread = thread;
  f.addr = b.p;
  f.size = b.size;
  f.offset = off;
  f.expected = pattern_byte(key, off);
  f.found = static_cast<const unsigned char*>(b.p)[off];
  static char msg[192];  // fail() does not return
  if (off >= b.size) {
    snprintf(msg, sizeof msg, "%s (in the slack past the request, below usable_size %zu)", detail,
             ext);
    detail = msg;
  }
  f.detail = detail;
  fail(f);
}
}  // namespace

namespace {
// Not strsignal(): it may translate, and so allocate, in the middle of a crash.
const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGILL:
      return "SIGILL";
    case SIGFPE:
      return "SIGFPE";
    case SIGABRT:
      return "SIGABRT";
  }
  return "?";
}

// Installed only where no sanitizer reports these itself (install_crash_report).
[[maybe_unused]] void crash_handler(int sig, siginfo_t* si, void*) {
  if (!g_reporting.exchange(true)) {
    char thr[16] = "?";  // a thread the harness did not number
    if (t_worker >= 0)
      snprintf(thr, sizeof thr, "%d", t_worker);
    else if (t_worker == -1)
      snprintf(thr, sizeof thr, "main");
    char addr[32] = "-";  // the faulting address; none for an abort
    if (sig != SIGABRT) snprintf(addr, sizeof addr, "%p", si->si_addr);
    // A fault inside a block the harness holds live: the allocator unmapped
    // (or protected) it while it was still the program's.
    OverlapIndex::Conflict c;
    char live[160] = "";
    if ((sig == SIGSEGV || sig == SIGBUS) && g.index != nullptr &&
        g.index->find_containing(reinterpret_cast<uintptr_t>(si->si_addr), &c))
      snprintf(live, sizeof live,
               "the address is in a live block, 0x%lx+%zu: the allocator unmapped or protected a "
               "block still in use",
               static_cast<unsigned long>(c.addr), c.len);
    char line[400];
    int n = snprintf(line, sizeof line,
                     "magslab-stress: CRASH workload=%s thread=%s signal=%d (%s) addr=%s "
                     "seed=0x%016llx allocator=%s: %s\n",
                     g.workload, thr, sig, signal_name(sig), addr,
                     static_cast<unsigned long long>(g.opt.seed), g.api ? g.api->name : "?",
                     sig == SIGABRT ? "aborted (the allocator's own report, if any, is above)"
                     : live[0]      ? live
                                    : "the process crashed before a check saw anything wrong "
                                      "(a block handed out unmapped, or the allocator's own "
                                      "structures corrupted)");
    if (n > static_cast<int>(sizeof line)) n = sizeof line;
    (void)!write(2, line, static_cast<size_t>(n));
  } else {
    // Another thread is reporting (a FAILURE line, then _exit(1)): give it
    // time to end the process, as fail() does for a second failure.
    struct timespec ts = {2, 0};
    nanosleep(&ts, nullptr);
  }
  // Dies of the signal as it would have without this handler (SA_RESETHAND
  // restored the default; it is delivered once the handler returns).
  signal(sig, SIG_DFL);
  raise(sig);
}

void watchdog_alarm(int) {
  Failure f;
  f.op = "watchdog";
  f.detail = "the final checks (heap check, live counts, trims) still running: hung";
  fail(f);
}
}  // namespace

void install_crash_report() {
#ifndef MS_SANITIZED
  struct sigaction sa {};
  sa.sa_sigaction = crash_handler;
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) sigaction(sig, &sa, nullptr);
#endif
}

void arm_final_watchdog(double seconds) {
  signal(SIGALRM, watchdog_alarm);
  alarm(static_cast<unsigned>(std::min(seconds, 1e6)) + 1);
}

void check_block(int thread, const Block& b, const char* op) {
  check_extent(thread, b, extent_of(b), key_of(b), op, "block contents changed while it was live");
}

void unindex_block(int thread, const Block& b) {
  if (!g.index->erase(b.p, indexed_extent(b))) {
    Failure f;
    f.thread = thread;
    f.addr = b.p;
    f.size = b.size;
    size_t now = g.api->usable_size(b.p);
    if (b.usable != 0 && now != b.usable) {
      f.op = "usable-changed";
      static char msg[160];
      snprintf(msg, sizeof msg,
               "usable_size of a live block changed from %zu to %zu (nothing reallocated it)",
               b.usable, now);
      f.detail = msg;
    } else {
      f.op = "index-erase";
      f.detail = "harness bug: block not in the overlap index";
    }
    fail(f);
  }
}

void index_block(int thread, const void* p, size_t size, const char* op) {
  OverlapIndex::Conflict c;
  if (!g.index->insert(p, indexed_length(p, size), &c)) {
    Failure f;
    f.op = "overlap";
    f.thread = thread;
    f.addr = p;
    f.size = size;
    f.offset =
        c.addr > reinterpret_cast<uintptr_t>(p) ? c.addr - reinterpret_cast<uintptr_t>(p) : 0;
    f.other_addr = c.addr;
    f.other_size = c.len;
    static char msg[96];
    snprintf(msg, sizeof msg, "%s block overlaps a live block", op);
    f.detail = msg;
    fail(f);
  }
}

void null_result(int thread, const char* op, size_t size, int err) {
  if (err == ENOMEM && g.null_ok.load(std::memory_order_relaxed)) {
    g.enomem.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  Failure f;
  f.op = op;
  f.thread = thread;
  f.size = size;
  static char msg[96];
  if (err == ENOMEM)
    snprintf(msg, sizeof msg, "allocation returned NULL (ENOMEM)");
  else
    snprintf(msg, sizeof msg, "allocation returned NULL with errno %d, not ENOMEM", err);
  f.detail = msg;
  fail(f);
}

void check_key_range(int thread, const void* p, size_t size, size_t from, size_t to, uint64_t key,
                     const char* op, const char* detail) {
  size_t off = check_pattern_range(p, from, to, key);
  if (off != kNoMismatch) {
    Failure f;
    f.op = op;
    f.thread = thread;
    f.addr = p;
    f.size = size;
    f.offset = off;
    f.expected = pattern_byte(key, off);
    f.found = static_cast<const unsigned char*>(p)[off];
    f.detail = detail;
    fail(f);
  }
}

void check_key(int thread, const void* p, size_t len, uint64_t key, const char* op,
               const char* detail) {
  check_key_range(thread, p, len, 0, len, key, op, detail);
}

Block alloc_block(int thread, Rng& r, size_t size, Kind kind, size_t align) {
  (void)r;
  const Api& a = *g.api;
  void* p = nullptr;
  const char* op = "malloc";
  errno = 0;
  int err = 0;
  switch (kind) {
    case Kind::Malloc:
      p = a.malloc(size);
      break;
    case Kind::Calloc: {
      op = "calloc";
      // count * elem == size; use 16-byte elements when size allows
      size_t elem = (size != 0 && size % 16 == 0) ? 16 : 1;
      p = a.calloc(size / elem, elem);
      break;
    }
    case Kind::PosixMemalign: {
      op = "posix_memalign";
      int rc = a.posix_memalign(&p, align, size);
      if (rc != 0) {
        p = nullptr;
        err = rc;
      }
      break;
    }
    case Kind::AlignedAlloc:
      op = "aligned_alloc";
      p = a.aligned_alloc(align, size);
      break;
    case Kind::ReallocNull:
      op = "realloc-null";
      p = a.realloc(nullptr, size);
      break;
  }
  if (p == nullptr) {
    if (kind != Kind::PosixMemalign) err = errno;
    null_result(thread, op, size, err);
    return Block{nullptr, size, align};
  }
  Failure f;
  f.op = op;
  f.thread = thread;
  f.addr = p;
  f.size = size;
  size_t need = align;
  if (align == 0) need = size >= 16 ? 16 : 8;  // malloc, calloc, realloc(NULL, n)
  if (reinterpret_cast<uintptr_t>(p) % need != 0) {
    char msg[64];  // fail() does not return
    snprintf(msg, sizeof msg, "pointer not aligned to %zu", need);
    f.detail = msg;
    f.offset = reinterpret_cast<uintptr_t>(p) % need;
    fail(f);
  }
  size_t usable = a.usable_size(p);
  if (usable < size) {
    char msg[64];
    snprintf(msg, sizeof msg, "usable_size %zu < requested", usable);
    f.detail = msg;
    fail(f);
  }
  if (kind == Kind::Calloc) {
    size_t off = check_zero(p, size);
    if (off != kNoMismatch) {
      f.op = "calloc-zero";
      f.offset = off;
      f.expected = 0;
      f.found = static_cast<unsigned char*>(p)[off];
      f.detail = "calloc block not zero";
      fail(f);
    }
  }
  check_usable_is_magslab(thread, op, p, size, usable);
  index_block(thread, p, size, "new");
  Block b{p, size, align, usable};
  fill_pattern(p, extent_of(b), key_of(b));
  return b;
}

void free_block(int thread, const Block& b, bool sized) {
  check_extent(thread, b, extent_of(b), key_of(b), "free-check",
               "block contents changed before free");
  unindex_block(thread, b);
  const Api& a = *g.api;
  if (sized && b.align == 0 && a.free_sized != nullptr)
    a.free_sized(b.p, b.size);
  else if (sized && b.align != 0 && a.free_aligned_sized != nullptr)
    a.free_aligned_sized(b.p, b.align, b.size);
  else
    a.free(b.p);
}

// Alignment and usable size of a fresh or realloc'd block.
void check_result(int ti, const char* op, void* p, size_t n) {
  Failure f;
  f.op = op;
  f.thread = ti;
  f.addr = p;
  f.size = n;
  size_t need = n >= 16 ? 16 : 8;
  if (reinterpret_cast<uintptr_t>(p) % need != 0) {
    f.offset = reinterpret_cast<uintptr_t>(p) % need;
    f.detail = "pointer misaligned";
    fail(f);
  }
  if (g.api->usable_size(p) < n) {
    f.detail = "usable_size < requested";
    fail(f);
  }
}

bool realloc_block(int thread, Block& b, size_t size) {
  check_block(thread, b, "realloc-precheck");
  unindex_block(thread, b);
  uint64_t old_key = key_of(b);
  errno = 0;
  void* q = g.api->realloc(b.p, size);
  if (q == nullptr) {
    if (size == 0) {  // freed (glibc's and magslab's realloc(p, 0))
      b = Block{};
      return false;
    }
    // Fault mode: the old block must be untouched and still ours.
    null_result(thread, "realloc", size, errno);
    check_extent(thread, b, extent_of(b), old_key, "realloc-failed",
                 "a failed realloc changed the old block");
    index_block(thread, b.p, b.size, "failed realloc's old");
    return true;
  }
  check_result(thread, "realloc", q, size);
  size_t keep = std::min(b.size, size);
  size_t off = check_pattern(q, keep, old_key);
  if (off != kNoMismatch) {
    Failure f;
    f.op = "realloc-prefix";
    f.thread = thread;
    f.addr = q;
    f.size = size;
    f.offset = off;
    f.expected = pattern_byte(old_key, off);
    f.found = static_cast<unsigned char*>(q)[off];
    static char msg[96];
    snprintf(msg, sizeof msg, "realloc from %p size %zu did not preserve the old contents", b.p,
             b.size);
    f.detail = msg;
    fail(f);
  }
  size_t usable = g.api->usable_size(q);
  check_usable_is_magslab(thread, "realloc", q, size, usable);
  index_block(thread, q, size, "realloc");
  b = Block{q, size, 0, usable};
  fill_pattern(q, extent_of(b), key_of(b));
  return true;
}

namespace {
struct ThreadArg {
  void (*fn)(unsigned, void*);
  void* arg;
  unsigned i;
};
void* thread_main(void* p) {
  auto* t = static_cast<ThreadArg*>(p);
  t_worker = static_cast<int>(t->i);
  t->fn(t->i, t->arg);
  return nullptr;
}
}  // namespace

void run_one_thread(pthread_attr_t* attr, void* (*fn)(void*), void* arg, unsigned t,
                    const char* what) {
  pthread_t tid;
  int rc;
  while ((rc = pthread_create(&tid, attr, fn, arg)) == EAGAIN) usleep(1000);
  if (rc != 0) {
    static char detail[96];  // fail() does not return
    snprintf(detail, sizeof detail, "cannot create a %s thread", what);
    Failure f;
    f.op = "pthread_create";
    f.thread = static_cast<int>(t);
    f.detail = detail;
    fail(f);
  }
  pthread_join(tid, nullptr);
}

void run_threads(unsigned n, void (*fn)(unsigned, void*), void* arg) {
  RawArray<ThreadArg> args(n);
  RawArray<pthread_t> tids(n);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1u << 20);
  for (unsigned i = 0; i < n; ++i) {
    args[i] = ThreadArg{fn, arg, i};
    int rc;
    while ((rc = pthread_create(&tids[i], &attr, thread_main, &args[i])) == EAGAIN) usleep(1000);
    if (rc != 0) {
      Failure f;
      f.op = "pthread_create";
      f.detail = "cannot create a thread";
      fail(f);
    }
  }
  pthread_attr_destroy(&attr);
  for (unsigned i = 0; i < n; ++i) pthread_join(tids[i], nullptr);
}

}  // namespace stress
