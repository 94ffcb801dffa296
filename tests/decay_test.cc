// small/decay as a unit, on a fake clock, one thread (so no background thread:
// each pass here is run by the test, or by a slow path when one is due): what
// nobody uses goes back by itself, and nothing goes back before its time.
//   * dirty page runs untouched for decay_ms (heap::dirty_decay_ns()) are decommitted;
//   * the depot gives back half of the full magazines nobody took since the
//     previous pass, and none while they are in use;
//   * a cached empty slab goes back after a pass;
//   * pages of unused Slab records are decommitted, and the page words of
//     their slabs' pages are cleared (free never reads a record);
//   * a thread's stash of a class it did not use since the previous pass goes
//     to the depot, and one in use stays;
//   * a single-threaded program's own slow paths run the passes.
#include "small/decay.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "chunks/page_heap.h"
#include "magslab/magslab.h"
#include "platform/platform.h"
#include "small/depot.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "small/thread_cache.h"
#include "testing/magazines.h"
#include "testing/resident.h"

namespace {

using namespace magslab;

constexpr size_t KiB = 1024;
constexpr uint64_t kMs = 1000 * 1000;

std::atomic<uint64_t> g_now{uint64_t{1000} * 1000 * kMs};  // a fake clock, at 1000 s
uint64_t fake_now() { return g_now.load(); }

class Decay : public ::testing::Test {
 protected:
  void SetUp() override {
    platform::set_clock_for_testing(fake_now);
    magslab_trim();  // start from empty caches
  }
  void TearDown() override { platform::set_clock_for_testing(nullptr); }
  static uint64_t now() { return g_now.load(); }
  static void advance(uint64_t ns) { g_now.fetch_add(ns); }
};

size_t dirty_pages() {
  LockGuard g(heap::g_lock);
  return heap::totals_locked().dirty_pages;
}

// Page runs (8 KiB-aligned blocks are page runs, not class blocks), every
// other one freed so that no chunk becomes entirely free (those are unmapped
// beyond two, which is not decay).
TEST_F(Decay, DirtyRunsAreDecommittedOnceUntouchedForTheirAge) {
  std::vector<char*> v;
  for (int i = 0; i < 64; ++i) {
    auto* p = static_cast<char*>(magslab_aligned_alloc(8 * KiB, 192 * KiB));
    ASSERT_NE(p, nullptr);
    for (size_t k = 0; k < 192 * KiB; k += 4096) p[k] = 1;
    v.push_back(p);
  }
  for (size_t i = 0; i < v.size(); i += 2) magslab_free(v[i]);
  const size_t freed_pages = 32 * (192 * KiB / 4096);
  ASSERT_GE(dirty_pages(), freed_pages) << "freed runs stay committed for reuse";

  advance(heap::dirty_decay_ns() / 2);
  decay::tick(now());
  EXPECT_GE(dirty_pages(), freed_pages) << "not before their age";

  advance(heap::dirty_decay_ns() / 2 + kMs);
  decay::tick(now());
  EXPECT_EQ(dirty_pages(), 0u) << "all of them once older than decay_ms";
  for (size_t i = 1; i < v.size(); i += 2) magslab_free(v[i]);
}

// A freed run that is reused and freed again is young again: only runs
// untouched for the whole age go.
TEST_F(Decay, ARunFreedAgainIsYoungAgain) {
  auto* keep = static_cast<char*>(magslab_aligned_alloc(8 * KiB, 64 * KiB));
  auto* a = static_cast<char*>(magslab_aligned_alloc(8 * KiB, 512 * KiB));
  auto* pin = static_cast<char*>(magslab_aligned_alloc(8 * KiB, 64 * KiB));
  ASSERT_TRUE(keep && a && pin);
  magslab_free(a);
  advance(heap::dirty_decay_ns() - 10 * kMs);
  a = static_cast<char*>(magslab_aligned_alloc(8 * KiB, 512 * KiB));  // the same run, warm
  magslab_free(a);
  advance(20 * kMs);  // the first free is older than the age, the second is not
  decay::tick(now());
  EXPECT_GE(dirty_pages(), 512 * KiB / 4096);
  advance(heap::dirty_decay_ns());
  decay::tick(now());
  EXPECT_EQ(dirty_pages(), 0u);
  magslab_free(keep);
  magslab_free(pin);
}

using mstest::full_magazine;

TEST_F(Decay, DepotGivesBackHalfOfWhatNobodyTookEachPass) {
  const unsigned cls = class_of(176);
  const size_t cap = kClasses[cls].mag_cap;
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(depot::push_full(cls, full_magazine(cls)));
  ASSERT_EQ(depot::cached_objects(cls), 16 * cap);
  // The first pass sees the magazines arrive during its interval: not idle yet.
  decay::tick(now());
  EXPECT_EQ(depot::cached_objects(cls), 16 * cap);
  // Nobody took one since: half goes back to the slabs each pass.
  decay::tick(now());
  EXPECT_EQ(depot::cached_objects(cls), 8 * cap);
  decay::tick(now());
  EXPECT_EQ(depot::cached_objects(cls), 4 * cap);
  for (int i = 0; i < 4; ++i) decay::tick(now());
  EXPECT_EQ(depot::cached_objects(cls), 0u) << "and the last one too";
}

TEST_F(Decay, DepotKeepsWhatIsInUse) {
  const unsigned cls = class_of(208);
  const size_t cap = kClasses[cls].mag_cap;
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(depot::push_full(cls, full_magazine(cls)));
  decay::tick(now());
  for (int round = 0; round < 5; ++round) {
    // Between two passes every magazine is taken and given back: the depot's
    // low-water mark is 0, so none of them was surplus.
    std::vector<Magazine*> taken;
    while (Magazine* m = depot::pop_full(cls)) taken.push_back(m);
    ASSERT_EQ(taken.size(), 6u);
    for (Magazine* m : taken) ASSERT_TRUE(depot::push_full(cls, m));
    decay::tick(now());
    EXPECT_EQ(depot::cached_objects(cls), 6 * cap) << "round " << round;
  }
  // Two magazines taken each interval: the other four were surplus.
  for (int round = 0; round < 8; ++round) {
    Magazine* a = depot::pop_full(cls);
    Magazine* b = depot::pop_full(cls);
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(depot::push_full(cls, a));
    ASSERT_TRUE(depot::push_full(cls, b));
    decay::tick(now());
  }
  EXPECT_EQ(depot::cached_objects(cls), 2 * cap) << "the working set stays";
  depot::drain();
}

TEST_F(Decay, CachedEmptySlabGoesBackAfterAPass) {
  const unsigned cls = class_of(400);
  const uint32_t n = kClasses[cls].objects;
  std::vector<void*> objs(n);
  ASSERT_EQ(slab::refill(cls, objs.data(), n, 0), n);
  slab::release(cls, objs.data(), n);
  ASSERT_EQ(slab::counts(cls).empty_cached_slabs, 1u);
  decay::tick(now());
  EXPECT_EQ(slab::counts(cls).empty_cached_slabs, 1u) << "cached during this interval";
  advance(decay::kTickNs + kMs);
  decay::tick(now());
  EXPECT_EQ(slab::counts(cls).empty_cached_slabs, 0u);
}

TEST_F(Decay, PagesOfUnusedSlabRecordsAreDecommitted) {
  const unsigned cls = class_of(1024);
  const uint32_t per = kClasses[cls].objects;
  constexpr uint32_t kSlabs = 80;  // five pages of records at least
  std::vector<void*> objs(size_t{per} * kSlabs);
  ASSERT_EQ(slab::refill(cls, objs.data(), per * kSlabs, 0), per * kSlabs);
  // (Its slab may be the one left cached at the release; by the end, the
  // passes have given that back too.)
  const auto first = reinterpret_cast<uintptr_t>(objs[0]);
  ASSERT_NE(pagemap::lookup_slab(first), nullptr);
  ASSERT_NE(pagemap::lookup_word(first), 0u);
  const slab::RecordCounts before = slab::record_counts();
  slab::release(cls, objs.data(), per * kSlabs);  // every slab but the cached one goes back
  const slab::RecordCounts freed = slab::record_counts();
  EXPECT_GE(freed.idle_pages, before.idle_pages + 4);

  advance(heap::dirty_decay_ns() / 2);
  decay::tick(now());
  EXPECT_GE(slab::record_counts().idle_pages, freed.idle_pages - 1) << "not before their age";
  // (That pass gave back the class's cached empty slab too: its record went
  // unused then.)
  advance(heap::dirty_decay_ns() + kMs);
  decay::tick(now());
  const slab::RecordCounts after = slab::record_counts();
  EXPECT_EQ(after.idle_pages, 0u);
  EXPECT_GE(after.purged_pages, before.purged_pages + 4);
  // A free racing with the slab's release reads the page word, not the record:
  // cleared with the slab, so the pointer is taken for no slab's (and reported).
  EXPECT_EQ(pagemap::lookup_word(first), 0u);
  EXPECT_EQ(pagemap::lookup_slab(first), nullptr);
}

// This thread frees four magazines' worth of objects of cls: the full
// magazines past its loaded and previous ones go to its stash. Returns how many
// objects the stash holds.
size_t fill_stash(unsigned cls, std::vector<void*>& objs) {
  const size_t n = 4 * size_t{kClasses[cls].mag_cap};
  objs.resize(n);
  for (void*& p : objs) p = magslab_malloc(kClasses[cls].size);
  for (void* p : objs) magslab_free(p);
  return mstest::stash_objects(t_cache, cls).size();
}

TEST_F(Decay, AStashItsThreadDidNotUseSinceThePreviousPassGoesToTheDepot) {
  const unsigned cls = class_of(272);
  std::vector<void*> objs;
  const size_t stashed = fill_stash(cls, objs);
  ASSERT_GT(stashed, 0u);
  const size_t depot_before = depot::cached_objects(cls);
  // The previous magazine of the class goes too, at the same pass (since stop
  // 39: a class without a slow path since the pass before).
  const size_t previous = t_cache->cls[cls].previous->count;
  decay::tick(now());
  EXPECT_EQ(mstest::stash_objects(t_cache, cls).size(), stashed) << "used during this interval";
  EXPECT_EQ(depot::cached_objects(cls), depot_before);
  EXPECT_EQ(t_cache->cls[cls].previous->count, previous) << "used during this interval";
  advance(decay::kTickNs);
  decay::tick(now());
  EXPECT_EQ(mstest::stash_objects(t_cache, cls).size(), 0u);
  EXPECT_EQ(depot::cached_objects(cls), depot_before + stashed + previous)
      << "to the depot, which decays it";
  EXPECT_EQ(t_cache->cls[cls].previous, &g_empty_magazine);
  for (int i = 0; i < 8; ++i) decay::tick(now());
  EXPECT_EQ(depot::cached_objects(cls), 0u);
}

TEST_F(Decay, AStashInUseStays) {
  const unsigned cls = class_of(304);
  std::vector<void*> objs;
  ASSERT_GT(fill_stash(cls, objs), 0u);
  for (int round = 0; round < 6; ++round) {
    // Between two passes the thread takes its objects back (the stash's
    // magazines among them) and overflows again.
    for (void*& p : objs) p = magslab_malloc(kClasses[cls].size);
    for (void* p : objs) magslab_free(p);
    advance(decay::kTickNs);
    decay::tick(now());
    EXPECT_GT(mstest::stash_objects(t_cache, cls).size(), 0u) << "round " << round;
  }
  magslab_trim();
}

// Without the background thread (one thread here), the program's own slow
// paths run a pass once one is due.
TEST_F(Decay, SlowPathsRunPassesWhenNoThreadDoes) {
  ASSERT_FALSE(decay::background_running());
  const unsigned cls = class_of(720);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(depot::push_full(cls, full_magazine(cls)));
  const size_t cached = depot::cached_objects(cls);
  // Churn another class through its slabs while the clock advances.
  for (int step = 0; step < 40; ++step) {
    advance(decay::kTickNs);
    std::vector<void*> v;
    for (int i = 0; i < 2000; ++i) v.push_back(magslab_malloc(48));
    for (void* p : v) magslab_free(p);
    cache::flush_current();  // to the slabs: the next round refills from them
  }
  EXPECT_LT(depot::cached_objects(cls), cached);
  EXPECT_EQ(depot::cached_objects(cls), 0u);
}

// Paused (what tests with exact cache contents do), no pass gives anything back.
TEST_F(Decay, PauseStopsEveryPass) {
  const unsigned cls = class_of(1536);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(depot::push_full(cls, full_magazine(cls)));
  const size_t cached = depot::cached_objects(cls);
  decay::pause(true);
  for (int i = 0; i < 8; ++i) {
    advance(heap::dirty_decay_ns());
    decay::tick(now());
  }
  EXPECT_EQ(depot::cached_objects(cls), cached);
  decay::pause(false);
  for (int i = 0; i < 8; ++i) decay::tick(now());
  EXPECT_EQ(depot::cached_objects(cls), 0u);
}

// Empty magazines in the depot that no thread takes give their pages back at
// the next pass (depot::decay_empty): a spike of 500 threads left ~28 MB of
// them resident for good (only magslab_trim_all hollowed them). Not while
// threads take them: a pass after a take keeps them all.
TEST_F(Decay, EmptyMagazinesNobodyTakesGiveBackTheirPages) {
  const unsigned cls = class_of(40);  // 256 slots: 2,112 bytes a magazine
  constexpr size_t kMags = 64;
  std::vector<Magazine*> mags;
  for (size_t i = 0; i < kMags; ++i) mags.push_back(depot::get_empty(cls));
  for (Magazine* m : mags) {
    ASSERT_NE(m, nullptr);
    for (uint32_t k = 0; k < m->cap; ++k) m->objs[k] = m;  // every page resident
  }
  // The longest run of them back to back (fresh ones are carved in a row).
  std::vector<Magazine*> sorted = mags;
  const size_t bytes = mstest::magazine_bytes(cls);
  const auto [best, best_len] = mstest::longest_run(&sorted, bytes);
  ASSERT_GE(best_len, 32u) << "fresh magazines are made back to back";
  const uintptr_t first = reinterpret_cast<uintptr_t>(sorted[best]);
  const uintptr_t end = reinterpret_cast<uintptr_t>(sorted[best + best_len - 1]) + bytes;
  auto resident_pages = [&] {
    size_t n = 0, pages = 0;
    for (uintptr_t pg = (first + 4095) & ~uintptr_t{4095}; pg + 4096 <= end; pg += 4096, ++pages)
      n += mstest::page_resident(pg).value_or(true);
    std::printf("%zu of %zu pages resident\n", n, pages);
    return n;
  };
  const size_t pages = resident_pages();
  for (Magazine* m : mags) depot::push_empty(cls, m);

  // A thread took one (and gave it back) since the last pass: in use, all stay.
  depot::push_empty(cls, depot::get_empty(cls));
  decay::tick(now());
  EXPECT_EQ(resident_pages(), pages) << "a pass after a take keeps every empty magazine";
  // Nobody took one since the last pass: their pages go.
  decay::tick(now());
  EXPECT_LE(resident_pages(), 2u) << "the pages only idle empty magazines occupy go back";

  // All come back, whole, from the depot or the hollow list; none is new.
  std::vector<Magazine*> again;
  for (size_t i = 0; i < kMags; ++i) {
    Magazine* m = depot::get_empty(cls);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->cap, kClasses[cls].mag_cap);
    EXPECT_EQ(m->count, 0u);
    m->objs[m->cap - 1] = m;  // usable
    again.push_back(m);
  }
  std::sort(again.begin(), again.end());
  std::vector<Magazine*> ours;
  std::set_intersection(again.begin(), again.end(), sorted.begin(), sorted.end(),
                        std::back_inserter(ours));
  EXPECT_EQ(ours.size(), kMags) << "the depot gives back the same magazines";
  for (Magazine* m : again) depot::push_empty(cls, m);
}

}  // namespace
