// fork() while other threads allocate: each child must allocate and free at
// once (no lock inherited in a held state), and exit 0. A deadlock in the child
// is turned into a failure by alarm(): the child dies of SIGALRM.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <iterator>
#include <thread>
#include <vector>

#include "ds/tagged_stack.h"
#include "magslab/magslab.h"
#include "testing/fork.h"
#include "testing/rng.h"
#include "testing/sanitizers.h"

// ThreadSanitizer's deadlock detector tracks at most 64 locks held by one
// thread; magslab's fork prepare handler holds all of its locks (one per size
// class, plus registry, page heap, huge blocks and metadata) by design. Race detection
// stays on; only lock-order tracking is off, and only in this binary.
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

#ifdef MS_SANITIZED
constexpr int kForks = 20;
constexpr int kChildObjects = 20000;
#else
constexpr int kForks = 100;
constexpr int kChildObjects = 100000;
#endif
constexpr int kThreads = 8;
constexpr unsigned kChildSeconds = 20;

// Allocates and frees mixed sizes (small, large, huge) until told to stop,
// handing every other block to the next thread's slot to free it there.
void churn(std::atomic<bool>& stop, std::vector<std::atomic<void*>>& slots, int id) {
  mstest::Rng rng(id);
  while (!stop.load(std::memory_order_relaxed)) {
    unsigned r = rng() % 1000;
    size_t n = r < 900 ? 1 + rng() % 512 : r < 995 ? 1024 + rng() % 60000 : (2u << 20);
    auto* p = static_cast<unsigned char*>(magslab_malloc(n));
    if (p == nullptr) continue;
    p[0] = static_cast<unsigned char>(n);
    p[n - 1] = static_cast<unsigned char>(n);
    void* old = slots[(id + 1) % slots.size()].exchange(p, std::memory_order_acq_rel);
    if (old != nullptr) magslab_free(old);
  }
}

// The child: a fresh burst of allocations that must all succeed and verify.
[[noreturn]] void child_body() {
  alarm(kChildSeconds);
  // No std::vector: the child may use no allocator but magslab (the system
  // one — ASan's in that preset — is not fork-safe; numa_fork_mt_test.cc).
  static void* v[1000];
  size_t nv = 0;
  for (int i = 0; i < kChildObjects; ++i) {
    size_t n = 1 + (i * 37) % 3000;
    void* p = magslab_malloc(n);
    if (p == nullptr) _exit(2);
    memset(p, i & 0xff, n);
    v[nv++] = p;
    if (nv == std::size(v)) {
      for (size_t k = 0; k < nv; ++k) {
        size_t m = 1 + ((i - 999 + static_cast<int>(k)) * 37) % 3000;
        auto* b = static_cast<unsigned char*>(v[k]);
        if (b[0] != static_cast<unsigned char>((i - 999 + k) & 0xff) || b[m - 1] != b[0]) _exit(3);
        magslab_free(v[k]);
      }
      nv = 0;
    }
  }
  void* big = magslab_malloc(size_t{8} << 20);  // a huge block: the page heap and mmap work too
  if (big == nullptr) _exit(4);
  magslab_free(big);
  struct magslab_stats st;
  magslab_stats(&st);  // takes the registry, class and heap locks
  _exit(0);
}

TEST(ForkMt, ChildOfBusyThreadsAllocatesAtOnce) {
  std::atomic<bool> stop{false};
  std::vector<std::atomic<void*>> slots(kThreads);
  for (auto& s : slots) s.store(nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back(churn, std::ref(stop), std::ref(slots), t);

  int failures = 0;
  mstest::fork_children(kForks, child_body, &failures);
  stop.store(true);
  for (auto& t : threads) t.join();
  for (auto& s : slots)
    if (void* p = s.exchange(nullptr)) magslab_free(p);
  EXPECT_EQ(failures, 0);
}

// The depot's tagged stacks swap 16 bytes with one CAS. GCC's ThreadSanitizer
// runtime performs every 16-byte atomic under one global mutex that it does not
// take across fork(): a child forked while another thread was inside such a CAS
// inherited that mutex held and hung at its first depot operation (seen once in
// ~20 runs of the test above). Threads that do nothing but CAS a stack make the
// window wide; each child must then use a stack of its own at once.
[[noreturn]] void stack_child() {
  alarm(kChildSeconds);
  static magslab::StackLink mine[4];
  magslab::TaggedStack own;
  for (int i = 0; i < 1000; ++i) {
    own.push(&mine[i % 4]);
    if (own.pop() != &mine[i % 4]) _exit(2);
  }
  _exit(0);
}

TEST(ForkMt, ChildUsesATaggedStackWhileParentThreadsSwapOne) {
  static magslab::StackLink nodes[64];
  magslab::TaggedStack shared;
  for (auto& n : nodes) shared.push(&n);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed))
        if (magslab::StackLink* n = shared.pop()) shared.push(n);
    });
  // A child costs milliseconds here (no heap work), and before the fix only
  // some forks caught a swap in flight: 20 forks hung a child in 3 of 6 runs.
  int failures = 0;
  mstest::fork_children(100, stack_child, &failures);
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
}

}  // namespace
