// Exact requested-byte statistics (MAGSLAB_EXACT_REQUESTED; lib/small/requested.h).
// This binary links magslab_exact_static, the core built with the option on,
// in every preset. Each test compares magslab_stats().live_requested_bytes
// with the sum of the sizes it asked for, at moments when no other thread is
// allocating or freeing (the stats are exact then).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/requested.h"
#include "testing/rng.h"
#include "testing/sanitizers.h"
#include "testing/threads.h"

// fork(): magslab's prepare handler holds every lock it has (one per size
// class and a few more), beyond ThreadSanitizer's deadlock detector's limit
// of 64 per thread; race detection stays on (as in fork_mt_test.cc).
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

struct magslab_stats g_st;  // large: not on the stack

size_t requested() {
  magslab_stats(&g_st);
  return g_st.live_requested_bytes;
}

struct Block {
  void* p;
  size_t n;
};

// A size drawn from what programs ask for: mostly small, some up to 64 KiB
// (the largest slab class), a few large (page runs) blocks.
size_t random_size(mstest::Rng& rng) {
  unsigned r = rng() % 100;
  if (r < 70) return rng() % 257;
  if (r < 95) return rng() % 8193;
  if (r < 99) return rng() % 65537;
  return 65537 + rng() % 200000;
}

Block make(mstest::Rng& rng) {
  size_t n = random_size(rng);
  void* p = magslab_malloc(n);
  EXPECT_NE(p, nullptr);
  if (n != 0) std::memset(p, 0x5A, n);
  return {p, n};
}

TEST(RequestedStats, ReportsExactMode) {
  magslab_stats(&g_st);
  EXPECT_EQ(g_st.requested_bytes_exact, 1u);
}

TEST(RequestedStats, SideArrayIndexIsTheObjectIndex) {
  // requested::slot() divides by multiplying with the class's magic: check
  // every object of every class against the true index.
  static uint32_t side[magslab::kMaxSlabObjects];
  magslab::Slab s;
  s.requested = side;
  s.set_start(uintptr_t{1} << 40);
  for (unsigned c = 0; c < magslab::kNumClasses; ++c) {
    const magslab::ClassInfo& ci = magslab::kClasses[c];
    s.cls = c;
    for (uint32_t k = 0; k < ci.objects; ++k) {
      void* p = reinterpret_cast<void*>(s.start() + uint64_t{k} * ci.size);
      ASSERT_EQ(&magslab::requested::slot(&s, p), &side[k]) << "class " << c << " size " << ci.size;
    }
  }
}

TEST(RequestedStats, CountsTheSizeAskedForNotTheClassSize) {
  const size_t base = requested();
  size_t expect = base;
  std::vector<void*> v;
  for (size_t n : {0, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 3000, 4095, 4097, 30000, 65535, 65536}) {
    void* p = magslab_malloc(n);
    ASSERT_NE(p, nullptr);
    v.push_back(p);
    expect += n;
    ASSERT_EQ(requested(), expect)
        << "after malloc(" << n << "), usable " << magslab_usable_size(p);
  }
  for (void* p : v) magslab_free(p);
  EXPECT_EQ(requested(), base);
}

TEST(RequestedStats, EveryEntryPoint) {
  const size_t base = requested();
  void* c = magslab_calloc(3, 7);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(requested(), base + 21);
  void* a = magslab_aligned_alloc(64, 100);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(requested(), base + 121);
  void* a16 = magslab_aligned_alloc(16, 5);  // served from the 16-byte class
  ASSERT_NE(a16, nullptr);
  EXPECT_EQ(requested(), base + 126);
  void* pm = nullptr;
  ASSERT_EQ(magslab_posix_memalign(&pm, 4096, 3000), 0);
  EXPECT_EQ(requested(), base + 3126);

  // realloc: in place (shrink within the class), moved (growth), to large.
  void* r = magslab_malloc(100);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(requested(), base + 3226);
  void* r2 = magslab_realloc(r, 90);
  ASSERT_EQ(r2, r) << "a shrink within the class is expected to stay in place";
  EXPECT_EQ(requested(), base + 3216);
  r2 = magslab_realloc(r2, 5000);
  ASSERT_NE(r2, nullptr);
  EXPECT_EQ(requested(), base + 3126 + 5000);
  // Out of its class by a byte: the block moves to a class a quarter larger,
  // the program asked for 5121 bytes.
  r2 = magslab_realloc(r2, 5121);
  ASSERT_NE(r2, nullptr);
  ASSERT_GE(magslab_usable_size(r2), 6400u);
  EXPECT_EQ(requested(), base + 3126 + 5121);
  r2 = magslab_realloc(r2, 200000);  // large: counted by the page-run layer
  ASSERT_NE(r2, nullptr);
  EXPECT_EQ(requested(), base + 3126 + 200000);
  r2 = magslab_realloc(r2, 50);  // back to a slab class
  ASSERT_NE(r2, nullptr);
  EXPECT_EQ(requested(), base + 3176);

  magslab_free_sized(c, 21);
  EXPECT_EQ(requested(), base + 3155);
  EXPECT_EQ(magslab_realloc(r2, 0), nullptr);  // frees, as glibc
  EXPECT_EQ(requested(), base + 3105);
  magslab_free(a);
  magslab_free(a16);
  magslab_free(pm);
  EXPECT_EQ(requested(), base);
}

TEST(RequestedStatsMt, FreesByOtherThreadsAndThreadExit) {
  // Producers allocate and exit; consumers (whose first call is a free) free
  // everything and exit. The count must follow each phase exactly.
  const size_t base = requested();
  constexpr int kProducers = 4, kPerThread = 3000;
  std::vector<std::vector<Block>> made(kProducers);
  std::vector<std::thread> ts;
  for (int t = 0; t < kProducers; ++t)
    ts.emplace_back([&made, t] {
      mstest::Rng rng(100 + t);
      for (int i = 0; i < kPerThread; ++i) made[t].push_back(make(rng));
    });
  for (auto& t : ts) t.join();
  ts.clear();
  size_t total = 0;
  for (auto& v : made)
    for (Block& b : v) total += b.n;
  ASSERT_EQ(requested(), base + total) << "after the allocating threads exited";

  // Consumers free the first half of each producer's blocks.
  for (int t = 0; t < kProducers; ++t)
    ts.emplace_back([&made, t] {
      for (size_t i = 0; i < made[t].size() / 2; ++i) magslab_free(made[t][i].p);
    });
  for (auto& t : ts) t.join();
  ts.clear();
  size_t left = 0;
  for (auto& v : made)
    for (size_t i = v.size() / 2; i < v.size(); ++i) left += v[i].n;
  ASSERT_EQ(requested(), base + left) << "after the freeing threads exited";

  // The main thread frees the rest.
  for (auto& v : made)
    for (size_t i = v.size() / 2; i < v.size(); ++i) magslab_free(v[i].p);
  EXPECT_EQ(requested(), base);
}

TEST(RequestedStatsMt, LiveThreadsCountTooWhileStatsAreRead) {
  // Threads stay alive holding their counts (one positive, one negative)
  // while the main thread reads the stats.
  const size_t base = requested();
  mstest::Rng rng(7);
  std::vector<Block> mine;
  for (int i = 0; i < 2000; ++i) mine.push_back(make(rng));
  size_t total = 0;
  for (Block& b : mine) total += b.n;
  mstest::Phase phase;
  std::vector<Block> theirs;
  std::thread freer([&] {
    for (size_t i = 0; i < mine.size() / 2; ++i) magslab_free(mine[i].p);
    phase.arrive();
    phase.wait_for(3);
  });
  std::thread maker([&] {
    mstest::Rng r(8);
    for (int i = 0; i < 1000; ++i) theirs.push_back(make(r));
    phase.arrive();
    phase.wait_for(3);
  });
  phase.wait_for(2);
  size_t expect = base + total;
  for (size_t i = 0; i < mine.size() / 2; ++i) expect -= mine[i].n;
  for (Block& b : theirs) expect += b.n;
  EXPECT_EQ(requested(), expect) << "counts of threads that are still running";
  phase.set(3);
  freer.join();
  maker.join();
  EXPECT_EQ(requested(), expect) << "the same counts after those threads exited";
  for (size_t i = mine.size() / 2; i < mine.size(); ++i) magslab_free(mine[i].p);
  for (Block& b : theirs) magslab_free(b.p);
  EXPECT_EQ(requested(), base);
}

TEST(RequestedStatsMt, ChurnWithHandOversEndsAtBaseline) {
  // Threads allocate, free some of their own, hand some to the next thread
  // (which frees them), and keep some; afterwards the main thread knows
  // exactly what is live.
  const size_t base = requested();
#ifdef MS_SANITIZED
  constexpr int kRounds = 4000;
#else
  constexpr int kRounds = 40000;
#endif
  constexpr int kThreads = 8;
  std::vector<std::vector<Block>> kept(kThreads);
  std::vector<std::mutex> mu(kThreads);
  std::vector<std::vector<Block>> inbox(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      mstest::Rng rng(1000 + t);
      for (int i = 0; i < kRounds; ++i) {
        Block b = make(rng);
        unsigned r = rng() % 8;
        if (r < 4) {
          magslab_free(b.p);
        } else if (r < 6) {
          std::lock_guard<std::mutex> g(mu[(t + 1) % kThreads]);
          inbox[(t + 1) % kThreads].push_back(b);
        } else if (r == 6) {
          // realloc in place or moved, of a block this thread keeps
          size_t n = random_size(rng);
          void* q = magslab_realloc(b.p, n);
          if (n == 0) {
            EXPECT_EQ(q, nullptr);
            continue;
          }
          ASSERT_NE(q, nullptr);
          kept[t].push_back({q, n});
        } else {
          kept[t].push_back(b);
        }
        if (i % 64 == 0) {
          std::vector<Block> got;
          {
            std::lock_guard<std::mutex> g(mu[t]);
            got.swap(inbox[t]);
          }
          for (Block& g : got) magslab_free(g.p);
        }
      }
    });
  for (auto& t : ts) t.join();
  size_t live = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (Block& b : kept[t]) live += b.n;
    for (Block& b : inbox[t]) live += b.n;
  }
  EXPECT_EQ(requested(), base + live);
  for (int t = 0; t < kThreads; ++t) {
    for (Block& b : kept[t]) magslab_free(b.p);
    for (Block& b : inbox[t]) magslab_free(b.p);
  }
  EXPECT_EQ(requested(), base);
}

TEST(RequestedStatsMt, ForkedChildKeepsTheParentsOtherThreadsCounts) {
  // Another thread allocates and is still running at fork(); in the child it
  // does not exist, but its block does, and the child frees it.
  const size_t base = requested();
  mstest::Phase phase;
  void* theirs = nullptr;
  std::thread t([&] {
    theirs = magslab_malloc(777);
    phase.set(1);
    phase.wait_for(2);
  });
  phase.wait_for(1);
  void* mine = magslab_malloc(333);
  ASSERT_EQ(requested(), base + 1110);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);
    int code = 0;
    if (requested() != base + 1110) code |= 1;
    magslab_free(theirs);
    if (requested() != base + 333) code |= 2;
    magslab_free(mine);
    if (requested() != base) code |= 4;
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died, status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "bit 1: at fork, 2: after freeing the other thread's block, 4: at the end";
  phase.set(2);
  t.join();
  magslab_free(theirs);
  magslab_free(mine);
  EXPECT_EQ(requested(), base);
}

}  // namespace
