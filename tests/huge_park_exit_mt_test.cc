// Parked huge blocks left behind by threads that exit (lib/large/large.cc,
// "Parked huge blocks"; stop 51's bug hunt, area: lock-free code and atomics).
// A thread's park slot is picked by a hash of its thread-local storage's
// address, which the next thread made often gets again: it then finds the
// block the exited thread parked there, takes it for a request it fits or
// sends it to the huge cache, while a reclaimer empties every slot and reads
// the statistics, and other threads park blocks they did not allocate in the
// hand-over slots. HugeParkMt's workers live for the whole test; here every
// thread parks a block and exits with it parked. Every block keeps its stamp
// while live (no block is handed out twice) and the statistics balance.
#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "testing/pattern.h"
#include "testing/sanitizers.h"

namespace {

constexpr size_t MiB = size_t{1} << 20;

struct Block {
  char* p = nullptr;
  size_t n = 0;
  uint64_t tag = 0;
};

#ifdef MS_SANITIZED
constexpr int kGenerations = 60;
#else
constexpr int kGenerations = 300;
#endif
constexpr int kThreads = 3;

TEST(HugeParkExitMt, BlocksParkedByExitedThreadsAreTakenOnceByTheNext) {
  magslab_trim();
  struct magslab_stats base;
  magslab_stats(&base);
  std::atomic<bool> stop{false}, bad{false};
  std::thread reclaimer([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      magslab_trim();  // every slot emptied, as a decay pass does
      struct magslab_stats st;
      magslab_stats(&st);
      // A parked block counts as cached, never twice (the subtraction would
      // wrap). A lane holds up to three blocks, and a block between a slot
      // and the lock (a park's or a reclaim's) counts as live: a loose bound.
      if (st.huge_live_blocks > base.huge_live_blocks + 8 * kThreads) bad = true;
      sched_yield();
    }
  });
  // Each thread leaves one of its blocks here for the next generation's
  // thread of the same lane to free (a free of a block it did not allocate).
  std::vector<std::atomic<Block*>> left(kThreads);
  for (auto& l : left) l.store(nullptr);
  uint64_t tags = 0;
  for (int g = 0; g < kGenerations; ++g) {
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
      const uint64_t tag0 = ++tags << 8;
      ts.emplace_back([&, t, g, tag0] {
        // 2, 3 and 4 MiB, a page less every other generation: some requests
        // fit the block the slot holds, some do not.
        const size_t n = (2 + (g + t) % 3) * MiB - (g % 2) * 4096;
        Block a{static_cast<char*>(magslab_malloc(n)), n, tag0 | 1};
        if (a.p == nullptr) {
          bad = true;
          return;
        }
        mstest::stamp_ends(a.p, n, a.tag);
        if (Block* prev = left[static_cast<size_t>(t)].exchange(nullptr)) {
          if (!mstest::ends_stamped(prev->p, prev->n, prev->tag)) bad = true;
          magslab_free(prev->p);  // parks: this thread's slot, else a hand-over slot
          delete prev;
        }
        Block b{static_cast<char*>(magslab_malloc(n)), n, tag0 | 2};
        if (b.p == nullptr) {
          bad = true;
          return;
        }
        mstest::stamp_ends(b.p, n, b.tag);
        sched_yield();
        if (!mstest::ends_stamped(a.p, n, a.tag) || !mstest::ends_stamped(b.p, n, b.tag))
          bad = true;
        magslab_free(a.p);  // exits with it parked (unless the reclaimer came first)
        left[static_cast<size_t>(t)].store(new Block(b));
      });
    }
    for (auto& th : ts) th.join();
  }
  stop.store(true);
  reclaimer.join();
  for (auto& l : left)
    if (Block* b = l.exchange(nullptr)) {
      EXPECT_TRUE(mstest::ends_stamped(b->p, b->n, b->tag));
      magslab_free(b->p);
      delete b;
    }
  EXPECT_FALSE(bad.load()) << "a block lost its stamp while live, a malloc failed, or the "
                              "statistics counted a parked block as live";
  struct magslab_stats st;
  magslab_stats(&st);
  EXPECT_EQ(st.huge_live_blocks, base.huge_live_blocks);
  EXPECT_EQ(st.huge_live_bytes, base.huge_live_bytes);
  EXPECT_EQ(st.live_large_requested_bytes, base.live_large_requested_bytes);
  magslab_trim();
  magslab_stats(&st);
  EXPECT_EQ(st.mapped_bytes, base.mapped_bytes) << "trim unmaps every parked and cached block";
}

}  // namespace
