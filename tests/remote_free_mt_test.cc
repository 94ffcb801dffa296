// Frees of another thread's objects (thread_cache.h, ThreadCache::Pair::remote):
// the freeing thread does not hand such an object out again itself (no passive
// false sharing), stats count the objects it holds, and they reach other
// threads as whole magazines through the depot.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/slab.h"
#include "small/thread_cache.h"
#include "testing/threads.h"

namespace {

// 3000 B: a class nothing else in this binary uses (magazine capacity 10).
constexpr size_t kSize = 3000;
constexpr size_t kCap = 10;

// The main thread allocates enough that its last object comes from a slab it
// refilled from itself (it is the slab's owner).
std::vector<void*> allocate_on_main(size_t n) {
  std::vector<void*> v;
  for (size_t i = 0; i < n; ++i) {
    void* p = magslab_malloc(kSize);
    EXPECT_NE(p, nullptr);
    std::memset(p, 0xA5, kSize);
    v.push_back(p);
  }
  return v;
}

TEST(RemoteFreeMt, FreeingThreadDoesNotReuseAnotherThreadsObject) {
  std::vector<void*> mine = allocate_on_main(3 * kCap);
  void* handed = mine.back();
  mine.pop_back();
  std::vector<void*> got;
  std::thread t([&] {
    magslab_free(handed);  // another thread's object
    // Without the remote magazine, the next allocation is `handed` again (LIFO).
    for (size_t i = 0; i < 4 * kCap; ++i) got.push_back(magslab_malloc(kSize));
    for (void* p : got) magslab_free(p);  // own objects: must not disturb anything
  });
  t.join();
  for (void* p : got)
    EXPECT_NE(p, handed) << "the freeing thread handed out the object it was given";
  for (void* p : mine) magslab_free(p);
}

TEST(RemoteFreeMt, OwnObjectsAreStillReusedLifo) {
  // Control: a thread's own free is handed out again by its next allocation.
  // "Own" means from a slab this thread refilled from (Slab::owner): objects
  // it gets in full magazines from the depot (left there by threads of earlier
  // tests in this process) belong to others, and their frees go remote. So
  // allocate until an own object turns up, bounded by the depot's contents.
  std::thread t([] {
    std::vector<void*> others;
    void* p = nullptr;
    for (size_t i = 0; i < 100000 && p == nullptr; ++i) {
      void* q = magslab_malloc(kSize);
      ASSERT_NE(q, nullptr);
      const uint64_t w = magslab::pagemap::lookup_word(reinterpret_cast<uintptr_t>(q));
      ASSERT_NE(w, 0u);
      if (magslab::word_owner(w) == magslab::t_cache->owner_tag)
        p = q;
      else
        others.push_back(q);
    }
    ASSERT_NE(p, nullptr) << "no object from a slab this thread refilled from";
    magslab_free(p);
    void* q = magslab_malloc(kSize);
    EXPECT_EQ(p, q);
    magslab_free(q);
    for (void* o : others) magslab_free(o);
  });
  t.join();
}

size_t live_objects() {
  static struct magslab_stats s;
  magslab_stats(&s);
  return s.live_objects;
}

TEST(RemoteFreeMt, StatsCountObjectsHeldInRemoteMagazines) {
  std::vector<void*> mine = allocate_on_main(2 * kCap);
  const size_t before = live_objects();
  mstest::Phase phase;
  std::thread t([&] {
    for (size_t i = 0; i < 3; ++i) magslab_free(mine[i]);  // stay in the remote magazine
    phase.set(1);
    phase.wait_for(2);
  });
  phase.wait_for(1);
  EXPECT_EQ(live_objects(), before - 3)
      << "objects in the freeing thread's remote magazine counted as live";
  phase.set(2);
  t.join();
  EXPECT_EQ(live_objects(), before - 3);  // after thread exit: in the depot or the slabs
  for (size_t i = 3; i < mine.size(); ++i) magslab_free(mine[i]);
}

TEST(RemoteFreeMt, RemoteFreesCirculateBackToTheProducer) {
  // One producer, one consumer, many rounds: the consumer's frees go back to
  // the producer as whole magazines, so the producer's objects are recycled
  // (the set of distinct addresses stays bounded) and every byte survives.
  constexpr size_t kRounds = 200, kPerRound = 4 * kCap;
  std::set<void*> distinct;
  for (size_t r = 0; r < kRounds; ++r) {
    std::vector<void*> batch;
    for (size_t i = 0; i < kPerRound; ++i) {
      auto* p = static_cast<unsigned char*>(magslab_malloc(kSize));
      ASSERT_NE(p, nullptr);
      std::memset(p, static_cast<int>((r + i) & 0xFF), kSize);
      batch.push_back(p);
      distinct.insert(p);
    }
    std::thread t([&] {
      for (size_t i = 0; i < batch.size(); ++i) {
        auto* p = static_cast<unsigned char*>(batch[i]);
        // The first word may hold the free key only while free; check the rest.
        for (size_t k = 8; k < kSize; ++k)
          if (p[k] != static_cast<unsigned char>((r + i) & 0xFF)) {
            ADD_FAILURE() << "content lost at byte " << k;
            break;
          }
        magslab_free(p);
      }
    });
    t.join();
  }
  // Each consumer thread keeps ≤ kCap objects in its remote magazine only until
  // it exits; all the rest come back. Far fewer than kRounds * kPerRound.
  EXPECT_LE(distinct.size(), 8 * kPerRound) << "remote frees are not recycled";
}

}  // namespace
