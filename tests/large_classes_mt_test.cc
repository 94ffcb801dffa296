// Large classes across threads: a steady malloc/free of one large size takes
// no lock (it completes while another thread holds every class lock and the
// page-heap lock), large blocks handed from producers to consumers keep their
// contents and their counts, and an exiting thread leaves none of its large
// blocks in thread caches.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "chunks/page_heap.h"
#include "magslab/magslab.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "testing/no_decay.h"  // exact cache contents
#include "testing/pattern.h"
#include "testing/threads.h"

// ThreadSanitizer's deadlock detector tracks at most 64 locks held by one
// thread; SteadyPairsTakeNoLock holds every class lock (97) and the page
// heap's on purpose. Race detection stays on; only lock-order tracking is
// off, and only in this binary (as in fork_mt_test.cc).
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

using namespace magslab;

constexpr size_t KiB = 1024, MiB = 1024 * KiB;
const size_t kSizes[] = {64 * KiB, 80 * KiB, 100000, 256 * KiB, 700 * KiB, MiB};

TEST(LargeClassesMt, SteadyPairsTakeNoLock) {
  // The depots empty: the loop below holds more than thread_large_bytes, so
  // its frees hand magazines of the other classes to the depot, and a depot
  // an earlier test left full (in a shuffled order, CrossThread... below)
  // would send them to the slabs, under the class lock held here.
  magslab_trim();
  mstest::Phase phase;
  std::thread t([&] {
    for (size_t n : kSizes) {  // warm up: each class gets a loaded magazine
      auto* p = static_cast<char*>(magslab_malloc(n));
      p[0] = p[n - 1] = 1;
      magslab_free(p);
    }
    phase.set(1);
    phase.wait_for(2);
    for (int i = 0; i < 2000; ++i) {
      for (size_t n : kSizes) {
        auto* p = static_cast<char*>(magslab_malloc(n));
        p[0] = p[n - 1] = static_cast<char>(i);
        magslab_free(p);
      }
    }
    phase.set(3);
  });
  phase.wait_for(1);
  slab::lock_all_for_fork();  // every class lock
  heap::g_lock.lock();        // and the page heap's
  phase.set(2);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (phase.get() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const bool done = phase.get() == 3;
  heap::g_lock.unlock();
  slab::unlock_all_after_fork();
  t.join();
  EXPECT_TRUE(done) << "a steady malloc/free pair of a large size waited for a lock";
}

// Producers hand large blocks (every large class, some small and huge ones
// among them) to consumers through bounded rings; every block is stamped and
// checked on the other side. Afterwards the counts are back where they were.
TEST(LargeClassesMt, CrossThreadLargeBlocksKeepContentsAndCounts) {
  magslab_trim();
  struct magslab_stats before;
  magslab_stats(&before);
  constexpr int kPairs = 2, kPerProducer = 3000, kRing = 8;
  struct Ring {
    std::atomic<uint64_t> head{0}, tail{0};
    void* p[kRing];
    size_t n[kRing];
  };
  std::vector<Ring> rings(kPairs);
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> ts;
  for (int r = 0; r < kPairs; ++r) {
    ts.emplace_back([&, r] {  // producer
      Ring& ring = rings[r];
      for (int i = 0; i < kPerProducer; ++i) {
        size_t n = i % 17 == 0 ? 2 * MiB + 4096 : 64 * KiB + static_cast<size_t>(i * 7919) % MiB;
        auto* p = static_cast<unsigned char*>(magslab_malloc(n));
        if (p == nullptr) std::abort();
        mstest::fill_pattern(p, 64, static_cast<uint64_t>(i));
        mstest::fill_pattern(p + n - 64, 64, static_cast<uint64_t>(i) + 1);
        uint64_t h = ring.head.load(std::memory_order_relaxed);
        while (h - ring.tail.load(std::memory_order_acquire) >= kRing) std::this_thread::yield();
        ring.p[h % kRing] = p;
        ring.n[h % kRing] = n;
        ring.head.store(h + 1, std::memory_order_release);
      }
    });
    ts.emplace_back([&, r] {  // consumer
      Ring& ring = rings[r];
      for (int i = 0; i < kPerProducer; ++i) {
        uint64_t t = ring.tail.load(std::memory_order_relaxed);
        while (ring.head.load(std::memory_order_acquire) == t) std::this_thread::yield();
        auto* p = static_cast<unsigned char*>(ring.p[t % kRing]);
        size_t n = ring.n[t % kRing];
        ring.tail.store(t + 1, std::memory_order_release);
        if (mstest::check_pattern(p, 64, static_cast<uint64_t>(i)) != mstest::kNoMismatch ||
            mstest::check_pattern(p + n - 64, 64, static_cast<uint64_t>(i) + 1) !=
                mstest::kNoMismatch)
          bad.fetch_add(1);
        if (magslab_usable_size(p) < n) bad.fetch_add(1);
        magslab_free(p);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0u);
  struct magslab_stats after;
  magslab_stats(&after);
  EXPECT_EQ(after.live_objects, before.live_objects);
  EXPECT_EQ(after.huge_live_blocks, before.huge_live_blocks);
  // The threads exited: nothing of theirs stays in thread caches. What they
  // cached is in the depot, bounded per class by about 1 MiB of blocks and
  // at least eight magazines, or, after the class's depot refused magazines
  // that a thread then missed, up to 16 MiB of blocks in at most 64 magazines
  // (lib/small/depot.cc, DepotClass::extra).
  for (unsigned c = kNumSmallClasses; c < kNumClasses; ++c) {
    size_t mag_bytes = size_t{kClasses[c].mag_cap} * kClasses[c].size;
    size_t limit = std::max<size_t>(8, MiB / mag_bytes);
    limit = std::max(limit, std::min<size_t>(64, (16 * MiB) / mag_bytes));
    size_t depot_bytes = mag_bytes * limit;
    size_t was = before.classes[c].cached_objects, now = after.classes[c].cached_objects;
    EXPECT_LE((now > was ? now - was : 0) * kClasses[c].size, depot_bytes)
        << "class " << c << " (" << kClasses[c].size << " B)";
  }
}

}  // namespace
