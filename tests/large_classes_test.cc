// Large classes (64 KiB – 1 MiB; lib/small/size_classes.h): one object per
// slab, so a large block travels through magazines and the depot like a small
// one. Its usable size is the class size; a freed block comes back from the
// thread's magazine; calloc clears a reused (dirty) block; realloc moves across
// classes keeping the contents; and what the caches hold of a large class is
// bounded (three magazines per thread, two in the depot, one empty slab; and
// what one thread keeps of the other large classes, by bytes), and given back
// by trim. The lock-free claim is tested in large_classes_mt_test.cc.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "chunks/page_heap.h"
#include "magslab/magslab.h"
#include "small/size_classes.h"
#include "small/thread_cache.h"
#include "testing/no_decay.h"  // exact cache contents
#include "testing/pattern.h"

namespace {

using magslab::class_of;
using magslab::kClasses;
using magslab::kNumSmallClasses;

constexpr size_t KiB = 1024, MiB = 1024 * KiB;

struct magslab_stats stats() {
  struct magslab_stats st;
  magslab_stats(&st);
  return st;
}

TEST(LargeClasses, UsableSizeIsTheClassSize) {
  struct Case {
    size_t n, usable;
  } cases[] = {{64 * KiB + 1, 80 * KiB}, {100000, 112 * KiB}, {128 * KiB, 128 * KiB},
               {129 * KiB, 160 * KiB},   {300000, 320 * KiB}, {MiB, MiB}};
  for (const Case& c : cases) {
    void* p = magslab_malloc(c.n);
    ASSERT_NE(p, nullptr) << c.n;
    EXPECT_EQ(magslab_usable_size(p), c.usable) << c.n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u) << "a large class block starts a page";
    memset(p, 0x3c, c.n);
    magslab_free(p);
  }
  // Above the largest class: a huge mapping, counted as such.
  const size_t huge0 = stats().huge_live_blocks;
  void* h = magslab_malloc(MiB + 1);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(stats().huge_live_blocks, huge0 + 1);
  magslab_free(h);
}

TEST(LargeClasses, FreedBlockComesBackFromTheMagazine) {
  const unsigned cls = class_of(256 * KiB);
  ASSERT_GE(cls, kNumSmallClasses);
  const struct magslab_stats before = stats();
  void* p = magslab_malloc(256 * KiB);
  ASSERT_NE(p, nullptr);
  struct magslab_stats during;
  magslab_stats(&during);
  EXPECT_EQ(during.classes[cls].live_objects, before.classes[cls].live_objects + 1);
  EXPECT_EQ(during.large_live_blocks, before.large_live_blocks) << "not a page run";
  magslab_free(p);
  struct magslab_stats after;
  magslab_stats(&after);
  EXPECT_EQ(after.classes[cls].live_objects, before.classes[cls].live_objects);
  EXPECT_GE(after.classes[cls].cached_objects, 1u) << "the freed block stays in a magazine";
  void* q = magslab_malloc(240 * KiB + 1);  // same class (224–256 KiB)
  EXPECT_EQ(q, p) << "the next request of the class reuses it";
  magslab_free(q);
}

TEST(LargeClasses, CallocClearsAReusedBlock) {
  for (size_t n : {80 * KiB, 256 * KiB, MiB}) {
    auto* p = static_cast<unsigned char*>(magslab_malloc(n));
    ASSERT_NE(p, nullptr);
    memset(p, 0xAB, n);
    magslab_free(p);
    auto* z = static_cast<unsigned char*>(magslab_calloc(1, n));
    ASSERT_NE(z, nullptr);
    EXPECT_EQ(z, p) << "the dirty block is reused";
    for (size_t i = 0; i < n; i += 509) ASSERT_EQ(z[i], 0) << "n=" << n << " offset " << i;
    ASSERT_EQ(z[n - 1], 0);
    magslab_free(z);
  }
}

TEST(LargeClasses, ReallocAcrossClassesKeepsTheContents) {
  size_t len = 70 * KiB;
  auto* p = static_cast<unsigned char*>(magslab_malloc(len));
  ASSERT_NE(p, nullptr);
  mstest::fill_pattern(p, len, 7);
  for (size_t n : {200 * KiB, 900 * KiB, 3 * MiB, 100 * KiB, 40 * KiB}) {
    p = static_cast<unsigned char*>(magslab_realloc(p, n));
    ASSERT_NE(p, nullptr) << n;
    size_t keep = n < len ? n : len;
    ASSERT_EQ(mstest::check_pattern(p, keep, 7), mstest::kNoMismatch) << "after realloc to " << n;
    len = keep;
    EXPECT_GE(magslab_usable_size(p), n);
  }
  magslab_free(p);
}

// "A cache that fills with what nobody asks for again": 64 blocks of 1 MiB
// freed by one thread leave at most 3 (its magazines) + 8 (the depot)
// magazines of 2 blocks cached and one empty slab; the rest goes back to the
// page heap, whose dirty budget (8 MiB) bounds what stays committed.
// magslab_trim() gives all of it back.
TEST(LargeClasses, WhatTheCachesHoldIsBoundedAndTrimmed) {
  magslab_trim();
  const unsigned cls = class_of(MiB);
  ASSERT_EQ(kClasses[cls].mag_cap, 2u);
  const struct magslab_stats base = stats();
  std::vector<void*> v;
  for (int i = 0; i < 64; ++i) {
    auto* p = static_cast<char*>(magslab_malloc(MiB));
    ASSERT_NE(p, nullptr);
    for (size_t k = 0; k < MiB; k += 4096) p[k] = 1;
    v.push_back(p);
  }
  for (void* p : v) magslab_free(p);
  const struct magslab_stats st = stats();
  EXPECT_EQ(st.classes[cls].live_objects, base.classes[cls].live_objects);
  EXPECT_LE(st.classes[cls].cached_objects, 22u);
  EXPECT_LE(st.classes[cls].slabs, 22u + 1u) << "cached blocks and one empty slab";
  EXPECT_LE(st.committed_bytes,
            base.committed_bytes + 23 * MiB + magslab::heap::dirty_pages_max() * magslab::kPageSize)
      << "23 cached blocks and the dirty-page bound (decay: tests/decay_test.cc)";
  magslab_trim();
  const struct magslab_stats t = stats();
  EXPECT_EQ(t.classes[cls].cached_objects, 0u);
  EXPECT_EQ(t.cached_bytes, 0u);
  EXPECT_LE(t.committed_bytes, base.committed_bytes);
}

// A refill of a large class takes one block (a page run of its own), not a
// slow start of 1, 2, 4: a thread holding a few blocks of the class keeps no
// block it did not ask for (before: after the second malloc, one).
TEST(LargeClasses, ARefillTakesOneBlock) {
  magslab_trim();  // this thread's magazines and the depot empty
  const unsigned cls = class_of(96 * KiB);
  ASSERT_GE(cls, kNumSmallClasses);
  void* v[6];
  for (int i = 0; i < 6; ++i) {
    ASSERT_NE(v[i] = magslab_malloc(96 * KiB), nullptr);
    magslab::cache::CachedCounts mine;
    magslab::cache::cached_objects(&mine);
    EXPECT_EQ(mine.objects[cls], 0u) << "after malloc " << i;
  }
  for (void* p : v) magslab_free(p);
  magslab_trim();
}

// A thread that walks through every large class (as a buffer grown by
// realloc does) keeps at most thread_large_bytes (512 KiB) of the other large
// classes' blocks in its magazines (plus those of the class it uses now); the
// rest goes to the depot, where any thread finds it. Before the cap it kept
// two blocks of each class, 17 MiB.
TEST(LargeClasses, AThreadKeepsABoundedNumberOfBytesOfOtherLargeClasses) {
  magslab_trim();
  const struct magslab_stats base = stats();
  for (int round = 0; round < 3; ++round)
    for (unsigned c = kNumSmallClasses; c < magslab::kNumClasses; ++c) {
      void* p = magslab_malloc(kClasses[c].size);
      void* q = magslab_malloc(kClasses[c].size);
      ASSERT_TRUE(p && q);
      magslab_free(p);
      magslab_free(q);
    }
  magslab::cache::CachedCounts mine;
  magslab::cache::cached_objects(&mine);  // this thread's magazines: the only cache here
  size_t bytes = 0, last = 0;
  for (unsigned c = kNumSmallClasses; c < magslab::kNumClasses; ++c) {
    size_t b = mine.objects[c] * kClasses[c].size;
    (c + 1 == magslab::kNumClasses ? last : bytes) += b;
  }
  size_t cap = 0;
  ASSERT_EQ(magslab_option_get("thread_large_bytes", &cap), 0);
  EXPECT_EQ(cap, 512 * 1024u) << "the default";
  EXPECT_LE(bytes, cap) << "other large classes";
  EXPECT_LE(last, 3 * MiB) << "the class in use: up to three magazines";
  const struct magslab_stats st = stats();
  size_t cached = 0;
  for (unsigned c = kNumSmallClasses; c < magslab::kNumClasses; ++c)
    cached += st.classes[c].cached_objects - base.classes[c].cached_objects;
  EXPECT_GE(cached, magslab::kNumClasses - kNumSmallClasses)
      << "what the thread gave up waits in the depot";
  EXPECT_EQ(st.live_objects, base.live_objects);
  magslab_trim();
}

// The cap also counts blocks that reach a class's magazines by the fast path
// only: one block of every other large class, freed into a loaded magazine a
// slow path emptied earlier, makes no slow path of that class, so only the
// bound walk over classes whose slots hold a real magazine sees them (and a
// walk that forgot a class once its magazines were empty would not).
TEST(LargeClasses, BlocksFreedIntoEmptiedMagazinesStillCountTowardTheCap) {
  magslab_trim();
  const unsigned x = kNumSmallClasses;  // the class "in use"
  auto slow_paths_of_x = [&] {  // more than its three magazines hold: refills and depot trades
    void* v[16];
    for (auto& p : v) ASSERT_NE(p = magslab_malloc(kClasses[x].size), nullptr);
    for (void* p : v) magslab_free(p);
  };
  std::vector<void*> held;
  for (unsigned c = x + 1; c < magslab::kNumClasses; ++c)
    held.push_back(magslab_malloc(kClasses[c].size));  // a slow path each: refill, pop
  slow_paths_of_x();                                   // their magazines are real and empty
  for (void* p : held) magslab_free(p);                // fast path: into those magazines
  slow_paths_of_x();
  magslab::cache::CachedCounts mine;
  magslab::cache::cached_objects(&mine);
  size_t bytes = 0;
  for (unsigned c = x + 1; c < magslab::kNumClasses; ++c)
    bytes += mine.objects[c] * kClasses[c].size;
  EXPECT_LE(bytes, 512 * KiB) << "blocks of other large classes this thread keeps";
  magslab_trim();
}

}  // namespace
