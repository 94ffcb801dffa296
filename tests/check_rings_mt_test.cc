// Check mode's quarantine rings (lib/api/check.cc: one per thread cache, each
// under a spin lock that its thread takes at every free) against the two
// things that reach into every ring from outside: magslab_trim(), which drains
// them all while their threads free, and fork(), whose child must find no
// ring locked by a thread it does not have. Linked against magslab::check;
// run under TSan (label mt).
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
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

// Allocates, stamps, checks and frees small blocks until told to stop; every
// free goes through this thread's ring. Counts blocks whose stamp changed.
void churn(std::atomic<bool>& stop, std::atomic<int>& bad, std::atomic<long>& frees, unsigned id) {
  mstest::Rng rng(id + 1);
  unsigned char* held[kSlots] = {};
  size_t sizes[kSlots] = {};
  while (!stop.load(std::memory_order_relaxed)) {  // relaxed: a flag, no data
    unsigned k = static_cast<unsigned>(rng() % kSlots);
    if (held[k] != nullptr) {
      for (size_t i = 0; i < sizes[k]; ++i)
        if (held[k][i] != static_cast<unsigned char>(k + sizes[k])) {
          bad.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after join
          break;
        }
      magslab_free(held[k]);
      frees.fetch_add(1, std::memory_order_relaxed);  // relaxed: a progress count
    }
    sizes[k] = 1 + rng() % 600;
    held[k] = static_cast<unsigned char*>(magslab_malloc(sizes[k]));
    if (held[k] != nullptr) std::memset(held[k], static_cast<int>(k + sizes[k]), sizes[k]);
  }
  for (unsigned char* p : held) magslab_free(p);
}

// magslab_trim() from the main thread drains every ring, again and again,
// while the threads free into theirs; afterwards (the threads gone, their
// rings kept by their caches) one more trim leaves no block in quarantine:
// the heap's live objects are back where they started.
TEST(CheckRingsMt, TrimDrainsEveryRingWhileThreadsFree) {
  magslab_trim();
  const size_t before = live_objects();
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<long> frees{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kThreads; ++t)
    threads.emplace_back(churn, std::ref(stop), std::ref(bad), std::ref(frees), t);
  int trims = 0;
  while (frees.load(std::memory_order_relaxed) < kFrees) {  // relaxed: a progress count
    magslab_trim();
    ++trims;
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
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
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<long> frees{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kThreads; ++t)
    threads.emplace_back(churn, std::ref(stop), std::ref(bad), std::ref(frees), t);
  int failures = 0;
  for (int f = 0; f < kForks; ++f) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) child_trims();
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failures;
      ADD_FAILURE() << "fork " << f << ": "
                    << (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM
                            ? "child hung (alarm fired)"
                            : "child failed");
    }
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
