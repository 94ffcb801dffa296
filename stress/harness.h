// stress/harness.h: shared state of magslab-stress: options, the allocator
// under test, failure reporting, per-thread counters, and block helpers.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "checks.h"

#include "testing/rng.h"
#include "testing/sanitizers.h"

namespace stress {

// The allocator under test, as a table of functions.
struct Api {
  const char* name;
  void* (*malloc)(size_t);
  void (*free)(void*);
  void* (*calloc)(size_t, size_t);
  void* (*realloc)(void*, size_t);
  int (*posix_memalign)(void**, size_t, size_t);
  void* (*aligned_alloc)(size_t, size_t);
  size_t (*usable_size)(void*);
  // Give memory back while blocks are live: everywhere (true) or the calling
  // thread's caches (false); magslab_trim_all / magslab_trim, malloc_trim(0).
  void (*trim)(bool everywhere);
  // The calling thread will be idle for a while: magslab_thread_idle, or nothing.
  void (*idle)();
  bool is_magslab;
  // C23's sized frees: magslab_free_sized (for aligned blocks too); for
  // system, the process's free_sized / free_aligned_sized where it has them
  // (a preloaded magslab does; glibc 2.36 does not), else nullptr.
  void (*free_sized)(void*, size_t);
  void (*free_aligned_sized)(void*, size_t, size_t);
};
const Api& magslab_api();
const Api& system_api();

struct Options {
  unsigned threads = 0;
  double seconds = 0;  // total for the run (split between workloads of "all")
  uint64_t ops = 0;    // per workload, summed over its threads
  uint64_t seed = 0;
  size_t max_size = 4u << 20;
  const char* workload = "mixed";
  bool smoke = false;
  bool json = false;
  bool quiet = false;
  bool progress = false;  // stderr is a terminal and not --quiet
  double fault_rate = 0;  // --fault-rate: fraction of map/remap/decommit refused (magslab only)
  double watchdog = 60;   // --watchdog: seconds past its time before a workload counts as hung
};

// Per-thread counters, written by their owner, summed by the main thread.
struct alignas(64) Counter {
  std::atomic<uint64_t> ops{0};
  std::atomic<int64_t> live_bytes{0};
};

constexpr unsigned kMaxThreads = 1024;

struct Run {
  Options opt;
  const Api* api = nullptr;
  const char* workload = "";    // workload now running
  uint64_t wseed = 0;           // seed of the workload now running
  uint64_t ops_per_thread = 0;  // 0 = no op limit
  std::atomic<bool> stop{false};
  OverlapIndex* index = nullptr;
  Counter* counters = nullptr;  // kMaxThreads of them
  // Fault mode (--fault-rate): while true, an allocation may return NULL with
  // ENOMEM (the op is skipped and counted in enomem); NULL without ENOMEM is
  // still a failure, and so is any NULL while false.
  std::atomic<bool> null_ok{false};
  std::atomic<uint64_t> enomem{0};  // NULL + ENOMEM results seen (fault mode)
};
extern Run g;

// The RNG: testing/rng.h (a splitmix64 stream).
using mstest::Rng;

// Realistic request size: mostly small, some medium, a few up to max.
size_t random_size(Rng& r, size_t max_size);

// One failure report line on stderr, then _exit(1). Safe in a forked child:
// it formats into a stack buffer and write()s (no malloc, no locks).
struct Failure {
  const char* op = "?";
  int thread = -1;  // -1: main thread, -2: fork child
  const void* addr = nullptr;
  size_t size = 0;
  size_t offset = SIZE_MAX;
  int expected = -1;  // byte value, -1 = not applicable
  int found = -1;
  const char* detail = "";
  uintptr_t other_addr = 0;  // overlap: the live block hit
  size_t other_size = 0;
};
[[noreturn]] void fail(const Failure& f);
// A fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) prints one line,
// "magslab-stress: CRASH workload=… thread=… signal=… addr=… seed=…", then
// the process dies of the signal as before (exit status 128 + signal): a
// crash names the workload and seed to replay. Not under sanitizers, which
// report these themselves.
void install_crash_report();
// The final checks (heap check, trims) on the main thread: a FAILURE line
// (op=watchdog) if they are still running `seconds` from now, not a run that
// never ends.
void arm_final_watchdog(double seconds);
// The calling thread's worker index in reports of a crash (run_threads and
// the churn workers set it; main sets -1; -2: not numbered).
extern thread_local int t_worker;

// A block owned by the harness (requested size, requested alignment, and the
// usable size the allocator reported when the block was made: 0 where it is
// not kept — blocks unpacked from larson's and churn's slots — and asked again).
struct Block {
  void* p;
  size_t size;
  size_t align;
  size_t usable = 0;
};

// Allocation kinds for alloc_block().
enum class Kind { Malloc, Calloc, PosixMemalign, AlignedAlloc, ReallocNull };

// Allocates through the API, verifies (not NULL, alignment, usable size, zero
// for calloc, no overlap with any live block), fills the pattern, records it.
// In fault mode (g.null_ok) a
// NULL with ENOMEM (posix_memalign: the ENOMEM return) is counted and returned
// as a Block with p == nullptr, which the caller skips; NULL without ENOMEM is
// a failure in every mode.
Block alloc_block(int thread, Rng& r, size_t size, Kind kind, size_t align);
// Verifies the whole pattern, removes from the index, frees; `sized`: with
// free_sized (free_aligned_sized for an aligned block) where the API has it.
void free_block(int thread, const Block& b, bool sized = false);
// realloc(b.p, size), verified like alloc_block (alignment 16 or 8, usable
// size, no overlap) and the kept prefix's pattern checked; b then describes
// the new block. In fault mode a NULL with ENOMEM leaves b as it was (checked).
// false: size 0 and NULL returned — the block was freed and b is gone.
bool realloc_block(int thread, Block& b, size_t size);
// A fresh or realloc'd block p of n bytes (default alignment): aligned to 16
// (8 below 16 bytes), and usable_size(p) >= n; else a failure report for op.
void check_result(int thread, const char* op, void* p, size_t n);
// The bytes of b that the harness fills and checks. For magslab's API, up to
// its usable size, all of which the program may use: a write of the
// allocator's into the slack past the request is as wrong as one into the
// requested bytes (since stop 53; the request before). Those usable sizes are
// checked to be magslab's (a class size or a page multiple: op=usable-size)
// before the harness writes there. For the system allocator only the request:
// a usable size that lies would have the harness write past the block into
// the allocator's own memory and crash it (stress_selftest_usable), where the
// overlap index reports the lie instead.
size_t extent_of(const Block& b);
// magslab's size classes, for the check above (main, before the workloads).
void load_magslab_classes(const size_t* sizes, size_t n);
// Verifies the whole pattern of a live block (its extent_of bytes).
void check_block(int thread, const Block& b, const char* op);
// Removes b from the overlap index; a usable size that changed while the
// block was live is reported (op=usable-changed), an absent block as a harness bug.
void unindex_block(int thread, const Block& b);
// Enters [p, p+size) in the overlap index, or reports an overlap (op names the check).
// A live block's extent in the overlap index: up to its usable size, which the
// program may use as well, so a usable size that reaches into another live
// block is an overlap too (not only a usable size below the request).
size_t indexed_length(const void* p, size_t size);
void index_block(int thread, const void* p, size_t size, const char* op);
// The result of a NULL allocation (errno/return code err): counted and
// tolerated in fault mode when err is ENOMEM, otherwise a failure report.
void null_result(int thread, const char* op, size_t size, int err);
// The first wrong byte of [p, p+len) against the pattern of `key`, reported.
void check_key(int thread, const void* p, size_t len, uint64_t key, const char* op,
               const char* detail);
// The same for the bytes [from, to) of the block [p, p+size).
void check_key_range(int thread, const void* p, size_t size, size_t from, size_t to, uint64_t key,
                     const char* op, const char* detail);

inline uint64_t key_of(const Block& b) { return block_key(g.wseed, b.p, b.size); }

// Seed of thread t's operation sequence in the running workload.
inline uint64_t thread_seed(unsigned t, uint64_t salt = 0) {
  return mix64(g.wseed ^ mix64((uint64_t{t} + 1) * 0x9e3779b97f4a7c15ULL + salt));
}

// Runs fn(i) on n threads made with pthread_create (no allocation through the
// API under test), and waits for them.
void run_threads(unsigned n, void (*fn)(unsigned, void*), void* arg);

// Runs fn(arg) on one new thread (attributes attr) and joins it, retrying
// while the system is out of threads (EAGAIN); any other pthread_create
// error is a failure of thread t ("cannot create a <what> thread").
void run_one_thread(pthread_attr_t* attr, void* (*fn)(void*), void* arg, unsigned t,
                    const char* what);

inline bool should_stop(uint64_t ops_done) {
  return g.stop.load(std::memory_order_relaxed) ||
         (g.ops_per_thread != 0 && ops_done >= g.ops_per_thread);
}
inline void count(unsigned t, uint64_t ops, int64_t bytes) {
  Counter& c = g.counters[t % kMaxThreads];
  c.ops.store(c.ops.load(std::memory_order_relaxed) + ops, std::memory_order_relaxed);
  if (bytes != 0)
    c.live_bytes.store(c.live_bytes.load(std::memory_order_relaxed) + bytes,
                       std::memory_order_relaxed);
}

// Workloads (workloads.cc). Each runs to g.stop / g.ops_per_thread with
// g.opt.threads threads and frees everything before it returns.
void wl_mixed();
void wl_larson();
void wl_prodcons();
void wl_realloc();
void wl_aligned();
void wl_calloc();
void wl_churn();
void wl_fork();
void wl_hugerealloc();
void wl_dtorchurn();

}  // namespace stress
