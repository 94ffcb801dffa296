// small/thread_cache as a unit, through the public API (magslab_malloc/free
// run cache::alloc/free): a thread's cache is registered while it lives
// (cache::live_caches), its magazines swap — loaded and previous, then whole
// magazines through the depot — before any object goes back to the slabs,
// frees of another thread's objects go to the remote magazine and from there
// to the depot, and flush_current empties the calling thread's magazines.
// Each test runs its work on fresh threads, one class per test.
#include "small/thread_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/depot.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "testing/no_decay.h"  // exact cache contents
#include "testing/threads.h"

namespace {

using namespace magslab;

size_t cached(unsigned cls) {
  cache::CachedCounts c;
  cache::cached_objects(&c);
  return c.objects[cls];
}

// Slab refills start small and double up to a whole magazine (slow start,
// thread_cache.cc). Runs the calling thread's refills of the class of `size`
// up to whole magazines and gives everything back to the slabs, so that the
// tests below see whole-magazine refills.
void refill_whole_magazines(size_t size) {
  const unsigned cls = class_of(size);
  std::vector<void*> v;
  while (t_cache->cls[cls].refilled < kClasses[cls].mag_cap) v.push_back(magslab_malloc(size));
  for (void* p : v) magslab_free(p);
  cache::flush_current();
}

TEST(ThreadCache, SlabRefillsStartSmallAndDoubleUpToAWholeMagazine) {
  const size_t kSize = 48;
  const unsigned cls = class_of(kSize);
  const uint32_t cap = kClasses[cls].mag_cap;
  std::vector<size_t> expected;
  for (uint32_t n = cap / 16 > 0 ? cap / 16 : 1; n < cap; n *= 2) expected.push_back(n);
  expected.push_back(cap);
  ASSERT_GE(expected.size(), 3u);
  auto refills_of_a_new_thread = [&] {
    std::vector<size_t> refills;
    std::vector<void*> v;
    size_t carved = slab::counts(cls).carved_objects;
    while (refills.size() < expected.size() + 1) {
      v.push_back(magslab_malloc(kSize));
      size_t now = slab::counts(cls).carved_objects;
      if (now != carved) refills.push_back(now - carved);
      carved = now;
    }
    for (void* p : v) magslab_free(p);
    cache::flush_current();
    return refills;
  };
  std::vector<size_t> whole = expected;
  whole.push_back(cap);  // and whole magazines from then on
  std::vector<size_t> first, second;
  std::thread([&] { first = refills_of_a_new_thread(); }).join();
  // The second thread gets the first one's cache, recycled: it starts small again.
  std::thread([&] { second = refills_of_a_new_thread(); }).join();
  EXPECT_EQ(first, whole);
  EXPECT_EQ(second, whole);
}

TEST(ThreadCache, LiveWhileItsThreadLives) {
  const size_t base = cache::live_caches();
  size_t inside = 0;
  std::thread t([&] {
    magslab_free(magslab_malloc(40));
    inside = cache::live_caches();
  });
  t.join();
  EXPECT_EQ(inside, base + 1);
  EXPECT_EQ(cache::live_caches(), base);
}

TEST(ThreadCache, FlushCurrentEmptiesTheCallersMagazines) {
  const size_t kSize = 64;
  const unsigned cls = class_of(kSize);
  const uint32_t cap = kClasses[cls].mag_cap;
  std::thread t([&] {
    refill_whole_magazines(kSize);
    std::vector<void*> v;
    for (uint32_t i = 0; i < cap / 2; ++i) v.push_back(magslab_malloc(kSize));
    // The first miss filled the loaded magazine from the slabs.
    EXPECT_EQ(slab::counts(cls).carved_objects, cap);
    EXPECT_EQ(cached(cls), cap - cap / 2);
    for (void* p : v) magslab_free(p);
    EXPECT_EQ(cached(cls), cap);
    cache::flush_current();
    EXPECT_EQ(cached(cls), 0u);
    EXPECT_EQ(slab::counts(cls).carved_objects, 0u);
    for (void* p : v) EXPECT_TRUE(slab::is_free_in_slab(cls, p));
    EXPECT_EQ(cache::live_caches(), 1u);  // flushed, still registered
  });
  t.join();
}

TEST(ThreadCache, MagazinesSwapThroughTheDepotBeforeObjectsReachTheSlabs) {
  const size_t kSize = 96;
  const unsigned cls = class_of(kSize);
  const uint32_t cap = kClasses[cls].mag_cap;
  ASSERT_GE(depot::cached_objects(cls), 0u);
  std::thread t([&] {
    refill_whole_magazines(kSize);
    // Three magazines' worth: three refills of the loaded magazine.
    std::vector<void*> v;
    for (uint32_t i = 0; i < 3 * cap; ++i) v.push_back(magslab_malloc(kSize));
    EXPECT_EQ(slab::counts(cls).carved_objects, 3 * cap);
    EXPECT_EQ(cached(cls), 0u);
    // Freed: loaded fills, becomes previous (an empty one is loaded), and
    // when both are full the previous goes to the depot whole.
    for (void* p : v) magslab_free(p);
    EXPECT_EQ(cached(cls), 2 * cap);
    EXPECT_EQ(depot::cached_objects(cls), cap);
    EXPECT_EQ(slab::counts(cls).carved_objects, 3 * cap) << "nothing went back to the slabs";
    // Allocated again: loaded, then the previous swapped in, then the depot's
    // magazine — the same objects, and no slab refill.
    std::vector<void*> w;
    for (uint32_t i = 0; i < 3 * cap; ++i) w.push_back(magslab_malloc(kSize));
    EXPECT_EQ(slab::counts(cls).carved_objects, 3 * cap);
    EXPECT_EQ(depot::cached_objects(cls), 0u);
    EXPECT_EQ(cached(cls), 0u);
    EXPECT_EQ(std::set<void*>(v.begin(), v.end()), std::set<void*>(w.begin(), w.end()));
    for (void* p : w) magslab_free(p);
    cache::flush_current();
  });
  t.join();
}

// ... and a full remote magazine of a running thread's objects to that
// thread's inbox (thread_cache.cc, send_to_owner), not the depot.
TEST(ThreadCache, OtherThreadsObjectsGoToTheRemoteMagazineThenTheirOwner) {
  const size_t kSize = 160;
  const unsigned cls = class_of(kSize);
  const uint32_t cap = kClasses[cls].mag_cap;
  std::vector<void*> objs;
  mstest::Phase phase;
  // The allocating thread stays alive while the other frees, so that the
  // freeing thread cannot be given its (recycled) cache.
  std::thread producer([&] {
    refill_whole_magazines(kSize);
    for (uint32_t i = 0; i < cap + 1; ++i) objs.push_back(magslab_malloc(kSize));
    phase.set(1);
    phase.wait_for(2);
  });
  phase.wait_for(1);
  const size_t depot0 = depot::cached_objects(cls);
  std::thread consumer([&] {
    for (uint32_t i = 0; i < cap; ++i) magslab_free(objs[i]);
    // All in the remote magazine: counted as cached, not in the depot yet.
    EXPECT_EQ(cached(cls), size_t{cap} + (2 * cap - (cap + 1)));  // + the producer's loaded rest
    EXPECT_EQ(depot::cached_objects(cls), depot0);
    magslab_free(objs[cap]);  // remote full: it goes to the producer whole
    EXPECT_EQ(depot::cached_objects(cls), depot0);
    EXPECT_EQ(cached(cls), size_t{cap} + (cap - 1) + 1);  // inbox, loaded rest, new remote
  });
  consumer.join();
  phase.set(2);
  producer.join();
}

}  // namespace
