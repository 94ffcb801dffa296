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
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "platform/options.h"
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
  const size_t caches = cache::live_caches();  // the main thread's, if an earlier test made one
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
    EXPECT_EQ(cache::live_caches(), caches + 1);  // flushed, still registered
  });
  t.join();
}

// A thread frees three magazines' worth of its own objects and allocates as
// many again: the third full magazine goes to its stash (stash_bytes > 0) or
// to the depot (stash_bytes = 0), and either way the same objects come back
// without a slab refill.
void overflow_and_take_back(bool stash) {
  const size_t kSize = 96;
  const unsigned cls = class_of(kSize);
  const uint32_t cap = kClasses[cls].mag_cap;
  uint64_t was = 0;
  ASSERT_EQ(magslab_option_get("stash_bytes", &was), 0);
  ASSERT_EQ(magslab_option_set("stash_bytes", stash ? was : 0), 0);
  ASSERT_GE(depot::cached_objects(cls), 0u);
  std::thread t([&] {
    refill_whole_magazines(kSize);
    // Three magazines' worth: three refills of the loaded magazine.
    std::vector<void*> v;
    for (uint32_t i = 0; i < 3 * cap; ++i) v.push_back(magslab_malloc(kSize));
    EXPECT_EQ(slab::counts(cls).carved_objects, 3 * cap);
    EXPECT_EQ(cached(cls), 0u);
    // Freed: loaded fills, becomes previous (an empty one is loaded), and
    // when both are full the previous goes whole to the thread's stash (kept
    // for its own misses), or without one to the depot.
    for (void* p : v) magslab_free(p);
    EXPECT_EQ(cached(cls), stash ? 3 * cap : 2 * cap);
    EXPECT_EQ(depot::cached_objects(cls), stash ? 0u : cap);
    EXPECT_EQ(slab::counts(cls).carved_objects, 3 * cap) << "nothing went back to the slabs";
    // Allocated again: loaded, then the previous swapped in, then the
    // stash's or the depot's magazine — the same objects, and no slab refill.
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
  ASSERT_EQ(magslab_option_set("stash_bytes", was), 0);
}

TEST(ThreadCache, MagazinesOverflowIntoTheThreadsStashBeforeObjectsReachTheSlabs) {
  overflow_and_take_back(true);
}

TEST(ThreadCache, WithoutAStashMagazinesSwapThroughTheDepotBeforeObjectsReachTheSlabs) {
  overflow_and_take_back(false);
}

// A block of a large class whose first word happens to hold the free key (the
// program's data, not a double free) is freed like any other, also while the
// thread has a stash of a small class: the double-free search looks at no
// stash for a large class (stash[] has none; reading past it took the stash's
// byte count for a magazine and crashed — found in review, stop 30).
TEST(ThreadCache, AFreeKeyInALargeClassBlockIsAFreeWhileTheThreadHasAStash) {
  const unsigned small = class_of(400), large = kNumSmallClasses;
  const size_t large_size = kClasses[large].size;
  std::thread t([&] {
    std::vector<void*> v(4 * size_t{mag_cap(small)});
    for (void*& p : v) p = magslab_malloc(400);
    for (void* p : v) magslab_free(p);
    ASSERT_NE(t_cache->stash_bytes, 0u);
    void* b = magslab_malloc(large_size);  // the large class's loaded magazine is real now
    void* c = magslab_malloc(large_size);
    ASSERT_NE(b, nullptr);
    const uint64_t key = g_free_key.load();
    ASSERT_NE(key, 0u);
    std::memcpy(b, &key, sizeof key);
    magslab_free(b);
    EXPECT_EQ(magslab_malloc(large_size), b) << "freed to the loaded magazine, handed out next";
    magslab_free(b);
    magslab_free(c);
    cache::flush_current();
  });
  t.join();
}

// ... and a full remote magazine of a running thread's objects to that
// thread's inbox (thread_cache.cc, send_to_owner), not the depot.
TEST(ThreadCache, OtherThreadsObjectsGoToTheRemoteMagazineThenTheirOwner) {
  magslab_trim();  // no magazine of the class left in the depot by an earlier run (--gtest_repeat)
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
    magslab_free(objs[0]);
    // The thread's first remote magazine: a quarter of the slots (its
    // capacity follows the traffic, thread_cache.cc "Magazine limits").
    const uint32_t rcap = t_cache->cls[cls].remote->cap;
    EXPECT_EQ(rcap, cap / 4);
    for (uint32_t i = 1; i < rcap; ++i) magslab_free(objs[i]);
    // All in the remote magazine: counted as cached, not in the depot yet.
    EXPECT_EQ(cached(cls), size_t{rcap} + (2 * cap - (cap + 1)));  // + the producer's loaded rest
    EXPECT_EQ(depot::cached_objects(cls), depot0);
    magslab_free(objs[rcap]);  // remote full: it goes to the producer whole
    EXPECT_EQ(depot::cached_objects(cls), depot0);
    EXPECT_EQ(cached(cls), size_t{rcap} + (cap - 1) + 1);  // inbox, loaded rest, new remote
    // Nothing but remote frees since: the new remote magazine has twice the room.
    EXPECT_EQ(t_cache->cls[cls].remote->cap, 2 * rcap);
  });
  consumer.join();
  phase.set(2);
  producer.join();
}

// Magazine limits (thread_cache.cc): a thread sets the capacity of the
// magazines it installs by their traffic. A class whose use goes up and down
// keeps a quarter of the slots: objects sitting in a thread's magazines are
// memory nobody else can use.
TEST(ThreadCache, MagazinesOfAClassUsedUpAndDownStaySmall) {
  const size_t kSize = 256;
  const unsigned cls = class_of(kSize);
  const uint32_t cap = mag_cap(cls);
  ASSERT_GE(cap, 64u);
  double sum = 0;
  size_t samples = 0;
  uint32_t limit = 0;
  std::thread([&] {
    // A server's pattern (larson): random slots, each freed if it holds a
    // block and filled if not, so the blocks live go up and down around 500.
    std::vector<void*> slots(1000, nullptr);
    uint64_t x = 0x9e3779b97f4a7c15;  // xorshift64: the same walk every run
    for (int i = 0; i < 200000; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      void*& s = slots[x % slots.size()];
      if (s == nullptr) {
        s = magslab_malloc(kSize);
      } else {
        magslab_free(s);
        s = nullptr;
      }
      if (i % 64 == 0) {
        sum += t_cache->cls[cls].loaded->cap;
        ++samples;
      }
    }
    limit = t_cache->cls[cls].limit;
    for (void* p : slots) magslab_free(p);
    cache::flush_current();
  }).join();
  // Filling the slots, the thread allocated one way and its magazines grew;
  // the swaps of the up and down traffic since brought the limit back down.
  // (For this walk, fixed by its seed: a magazine filled whole keeps its
  // capacity while it never runs empty, so other walks may end with one
  // loaded — thread_cache.cc, "Magazine limits".)
  EXPECT_EQ(limit, cap / 4);
  // Magazines still holding more keep their capacity until they are loaded
  // again (before magazine limits: every one had all the slots).
  const double mean = sum / static_cast<double>(samples);
  EXPECT_LE(mean, cap * 0.75) << "mean capacity of the loaded magazine, of " << cap << " slots";
}

// A small class above 16 KiB refills one block at a time and starts its
// magazines at a capacity of one (thread_cache.cc, refill_count and
// initial_limit): a thread whose use of the class peaks at two blocks (a
// buffer grown by realloc passing through) takes two from the slabs and
// keeps two, in magazines of a capacity of one or two. Before: it took three
// (a slow start of 1, then 2) and kept them, in magazines of all four slots.
TEST(ThreadCache, AClassAbove16KiBUsedTwoAtATimeKeepsTwoBlocks) {
  const size_t kSize = 24 * 1024;
  const unsigned cls = class_of(kSize);
  ASSERT_LT(cls, kNumSmallClasses);
  ASSERT_LT(mag_cap(cls), 16u) << "the classes whose magazines all start with every slot";
  size_t carved = 0, kept = 0;
  uint32_t first_cap = 0, last_cap = 0;
  std::thread([&] {
    const size_t before = slab::counts(cls).carved_objects;
    for (int i = 0; i < 100; ++i) {
      void* a = magslab_malloc(kSize);
      if (i == 0) first_cap = t_cache->cls[cls].loaded->cap;
      void* b = magslab_malloc(kSize);
      ASSERT_TRUE(a && b);
      std::memset(a, 1, kSize);
      magslab_free(a);
      magslab_free(b);
    }
    carved = slab::counts(cls).carved_objects - before;
    kept = cached(cls);
    last_cap = t_cache->cls[cls].loaded->cap;
    cache::flush_current();
  }).join();
  EXPECT_EQ(carved, 2u) << "blocks taken from the slabs";
  EXPECT_LE(kept, 2u) << "blocks kept in the thread's magazines";
  EXPECT_EQ(first_cap, 1u) << "the first magazine's capacity";
  EXPECT_LE(last_cap, 2u) << "the loaded magazine's capacity at the end (of 4 slots)";
  // Its remote magazine starts at one too: a block of another thread's
  // (blocks a thread took from the depot are remote when it frees them).
  // (The allocating thread stays alive meanwhile, so that the freeing one
  // cannot be given its recycled cache.)
  void* other = nullptr;
  mstest::Phase phase;
  std::thread producer([&] {
    other = magslab_malloc(kSize);
    phase.set(1);
    phase.wait_for(2);
  });
  phase.wait_for(1);
  EXPECT_NE(other, nullptr);
  uint32_t remote_cap = 0;
  std::thread([&] {
    if (other == nullptr) return;
    magslab_free(other);
    remote_cap = t_cache->cls[cls].remote->cap;
    cache::flush_current();
  }).join();
  phase.set(2);
  producer.join();
  EXPECT_EQ(remote_cap, 1u) << "the first remote magazine's capacity";
}

// ... but one that only allocates or only frees a class trades whole
// magazines at the depot, every capacity operations: its magazines grow to all
// their slots.
TEST(ThreadCache, OneWayTrafficGrowsMagazinesToAllTheirSlots) {
  const size_t kSize = 272;
  const unsigned cls = class_of(kSize);
  const uint32_t cap = mag_cap(cls);
  ASSERT_GE(cap, 64u);
  std::thread([&] {
    std::vector<void*> v;
    for (uint32_t i = 0; i < 6 * cap; ++i) v.push_back(magslab_malloc(kSize));
    EXPECT_EQ(t_cache->cls[cls].loaded->cap, cap) << "after allocating";
    for (void* p : v) magslab_free(p);
    EXPECT_EQ(t_cache->cls[cls].loaded->cap, cap) << "after freeing";
    cache::flush_current();
  }).join();
}

// A thread that frees an occasional object of another thread's, among its
// own traffic of the class, keeps its remote magazine at a quarter of the
// slots; a consumer's grows (OtherThreadsObjectsGoToTheRemoteMagazineThenTheirOwner).
// Sampled at every remote free once a quarter of them are done, not read
// once at the end: "no own traffic since the last remote trade" is "no own
// slow path, and the loaded count the same modulo 128", and a walk whose
// count happens to come back between two trades doubles the limit until the
// next trade halves it (thread_cache.cc, "Magazine limits"), which the end of
// one walk may or may not catch.
TEST(ThreadCache, AnOccasionalRemoteFreeKeepsTheRemoteMagazineSmall) {
  magslab_trim();  // no magazine of the class left in the depot by an earlier run (--gtest_repeat)
  const size_t kSize = 112;
  const unsigned cls = class_of(kSize);
  const uint32_t cap = mag_cap(cls);
  ASSERT_GE(cap, 64u);
  std::vector<void*> theirs;
  mstest::Phase phase;
  std::thread producer([&] {
    for (uint32_t i = 0; i < 8 * cap; ++i) theirs.push_back(magslab_malloc(kSize));
    phase.set(1);
    phase.wait_for(2);
  });
  phase.wait_for(1);
  size_t samples = 0, at_quarter = 0;
  std::thread([&] {
    std::vector<void*> live;
    uint64_t x = 0x2545f4914f6cdd1d;
    size_t next = 0;
    while (next < theirs.size()) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      if ((x & 15) == 0) {
        magslab_free(theirs[next++]);
        if (next > theirs.size() / 4) {
          ++samples;
          at_quarter += t_cache->cls[cls].remote->cap == cap / 4;
        }
      } else if (live.empty() || (x & 16) != 0) {
        live.push_back(magslab_malloc(kSize));
      } else {
        size_t k = (x >> 8) % live.size();
        magslab_free(live[k]);
        live[k] = live.back();
        live.pop_back();
      }
    }
    for (void* p : live) magslab_free(p);
    cache::flush_current();
  }).join();
  phase.set(2);
  producer.join();
  // With remote magazines at all their slots (before magazine limits): none.
  EXPECT_GE(at_quarter, samples * 9 / 10) << at_quarter << " of " << samples << " samples";
}

// The limits are measured in mag_cap() as the first cache found it; a
// magazine made after the options changed (a late load: no environment yet at
// the first allocation) has other slots, and its capacity stays within them.
TEST(ThreadCache, AMagazineWithFewerSlotsKeepsWithinThem) {
  const size_t kSize = 144;
  const unsigned cls = class_of(kSize);
  magslab_free(magslab_malloc(8));  // the first cache: limits from the defaults
  const uint32_t before = mag_cap(cls);
  setenv("MAGSLAB_MAG_BYTES", "1024", 1);
  opt::reset_for_testing();
  opt::load();
  const uint32_t now = mag_cap(cls);
  ASSERT_LT(now, before / 4) << "the first limit (a quarter) must exceed the new slots";
  bool within = true;
  std::thread([&] {
    std::vector<void*> v;
    auto check = [&] {
      const Magazine* m = t_cache->cls[cls].loaded;
      within = within && m->cap <= m->slots && m->count <= m->cap;
    };
    for (int i = 0; i < 200; ++i) {
      v.push_back(magslab_malloc(kSize));
      check();
    }
    for (void* p : v) {
      magslab_free(p);
      check();
    }
    EXPECT_EQ(t_cache->cls[cls].loaded->slots, now);
    cache::flush_current();
  }).join();
  unsetenv("MAGSLAB_MAG_BYTES");
  opt::reset_for_testing();
  opt::load();
  EXPECT_TRUE(within);
}

}  // namespace
