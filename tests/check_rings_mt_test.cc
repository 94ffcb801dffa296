// Check mode's quarantine rings (lib/api/check.cc: one per thread cache, each
// under a spin lock that its thread takes at every free) against the two
// things that reach into every ring from outside: magslab_trim(), which drains
// them all while their threads free, and fork(), whose child must find no
// ring locked by a thread it does not have. Linked against magslab::check;
// run under TSan (label mt).
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "testing/fork.h"
#include "testing/rng.h"
#include "testing/sanitizers.h"

// ThreadSanitizer's deadlock detector tracks at most 64 locks held by one
// thread; the fork prepare handler holds every lock of the heap (one per size
// class and more) and every ring's, by design (as in fork_mt_test.cc). Race
// detection stays on; only lock-order tracking is off, and only in this binary.
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

#if defined(MS_SANITIZED)
constexpr int kForks = 20;
constexpr long kFrees = 20000;  // by all threads, while the main thread trims
#else
constexpr int kForks = 60;
constexpr long kFrees = 300000;
#endif
constexpr int kThreads = 3;
constexpr int kSlots = 64;

size_t live_objects() {
  struct magslab_stats st;
  magslab_stats(&st);
  return st.live_objects;
}

// Threads that allocate, stamp, check and free small blocks until stopped;
// every free goes through the freeing thread's ring. bad counts blocks whose
// stamp changed, frees the frees (relaxed throughout: counts read after join,
// a flag that publishes nothing).
struct Churners {
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<long> frees{0};
  std::vector<std::thread> threads;

  Churners() {
    for (unsigned t = 0; t < kThreads; ++t) threads.emplace_back([this, t] { churn(t); });
  }
  void join() {
    stop.store(true, std::memory_order_relaxed);
    for (auto& th : threads) th.join();
    threads.clear();
  }
  ~Churners() {
    if (!threads.empty()) join();
  }

  void churn(unsigned id) {
    mstest::Rng rng(id + 1);
    unsigned char* held[kSlots] = {};
    size_t sizes[kSlots] = {};
    while (!stop.load(std::memory_order_relaxed)) {
      unsigned k = static_cast<unsigned>(rng() % kSlots);
      if (held[k] != nullptr) {
        for (size_t i = 0; i < sizes[k]; ++i)
          if (held[k][i] != static_cast<unsigned char>(k + sizes[k])) {
            bad.fetch_add(1, std::memory_order_relaxed);
            break;
          }
        magslab_free(held[k]);
        frees.fetch_add(1, std::memory_order_relaxed);
      }
      sizes[k] = 1 + rng() % 600;
      held[k] = static_cast<unsigned char*>(magslab_malloc(sizes[k]));
      if (held[k] != nullptr) std::memset(held[k], static_cast<int>(k + sizes[k]), sizes[k]);
    }
    for (unsigned char* p : held) magslab_free(p);
  }
};

// magslab_trim() from the main thread drains every ring, again and again,
// while the threads free into theirs; afterwards (the threads gone, their
// rings kept by their caches) one more trim leaves no block in quarantine:
// the heap's live objects are back where they started.
TEST(CheckRingsMt, TrimDrainsEveryRingWhileThreadsFree) {
  magslab_trim();
  const size_t before = live_objects();
  Churners c;
  int trims = 0;
  while (c.frees.load(std::memory_order_relaxed) < kFrees) {  // relaxed: a progress count
    magslab_trim();
    ++trims;
  }
  c.join();
  EXPECT_EQ(c.bad.load(), 0);
  EXPECT_GT(trims, 1);
  EXPECT_GT(live_objects(), before) << "the exited threads' last frees wait in their rings";
  magslab_trim();
  EXPECT_EQ(live_objects(), before);
}

// The child: its trim drains the rings of the parent's other threads (each
// held by its thread at times, at every free); it must not wait for one.
[[noreturn]] void child_trims() {
  alarm(10);
  magslab_trim();
  for (int i = 0; i < 1000; ++i) {
    void* p = magslab_malloc(1 + static_cast<size_t>(i) % 700);
    if (p == nullptr) _exit(2);
    magslab_free(p);
  }
  magslab_trim();
  _exit(0);
}

TEST(CheckRingsMt, ChildOfFreeingThreadsTrims) {
  Churners c;
  int failures = 0;
  mstest::fork_children(kForks, child_trims, &failures);
  c.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(c.bad.load(), 0);
}

}  // namespace
