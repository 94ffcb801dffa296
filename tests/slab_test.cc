// small/slab as a unit: refill carves objects out of slabs in address order
// and records the owner, release puts them back, one fully free slab per
// class stays cached (and trim gives it back), and release reports a double
// free. Calls slab:: directly: nothing here goes through a thread cache.
// Each test uses its own class, so the class's state starts fresh.
#include "small/slab.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

#include "chunks/chunk_map.h"
#include "small/size_classes.h"

namespace {

using namespace magslab;

uintptr_t addr(void* p) { return reinterpret_cast<uintptr_t>(p); }
Slab* slab_of(void* p) { return pagemap::lookup_slab(addr(p)); }

TEST(Slab, RefillHandsOutDistinctObjectsInAddressOrderAndRecordsTheOwner) {
  const unsigned cls = class_of(48);
  const ClassInfo& ci = kClasses[cls];
  const size_t carved0 = slab::counts(cls).carved_objects;
  int owner_tag = 0;
  std::vector<void*> out(32);
  ASSERT_EQ(slab::refill(cls, out.data(), 32, &owner_tag), 32u);
  EXPECT_EQ(slab::counts(cls).carved_objects, carved0 + 32);
  for (size_t i = 0; i < out.size(); ++i) {
    Slab* s = slab_of(out[i]);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->cls, cls);
    EXPECT_EQ(s->owner.load(), &owner_tag);
    EXPECT_EQ((addr(out[i]) - s->start) % ci.size, 0u);
    EXPECT_TRUE(valid_offset(s, addr(out[i]) - s->start));
    EXPECT_FALSE(slab::is_free_in_slab(cls, out[i]));
    // Popped from the end, they come out in increasing address order.
    if (i + 1 < out.size()) {
      EXPECT_GT(addr(out[i]), addr(out[i + 1]));
    }
  }
  slab::release(cls, out.data(), 16);
  EXPECT_EQ(slab::counts(cls).carved_objects, carved0 + 16);
  for (size_t i = 0; i < 16; ++i) EXPECT_TRUE(slab::is_free_in_slab(cls, out[i]));
  for (size_t i = 16; i < 32; ++i) EXPECT_FALSE(slab::is_free_in_slab(cls, out[i]));
  slab::release(cls, out.data() + 16, 16);
  EXPECT_EQ(slab::counts(cls).carved_objects, carved0);
}

TEST(Slab, CarvesExactlyTheClassObjectCountPerSlab) {
  const unsigned cls = class_of(1024);
  const ClassInfo& ci = kClasses[cls];
  std::vector<void*> out(ci.objects + 1);
  ASSERT_EQ(slab::refill(cls, out.data(), ci.objects + 1, nullptr), ci.objects + 1);
  // The first ci.objects objects (from the end) fill one slab, page-aligned,
  // of ci.slab_pages pages; the last one opens a second slab.
  Slab* first = slab_of(out[ci.objects]);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->start % kPageSize, 0u);
  std::set<uintptr_t> distinct;
  for (uint32_t i = 1; i <= ci.objects; ++i) {
    EXPECT_EQ(slab_of(out[i]), first);
    EXPECT_LT(addr(out[i]) + ci.size, first->start + uintptr_t{ci.slab_pages} * kPageSize + 1);
    distinct.insert(addr(out[i]));
  }
  EXPECT_EQ(distinct.size(), ci.objects);
  EXPECT_NE(slab_of(out[0]), first);
  EXPECT_EQ(slab::counts(cls).slabs, 2u);
  slab::release(cls, out.data(), static_cast<uint32_t>(out.size()));
}

TEST(Slab, OneEmptySlabIsCachedAndTrimGivesItBack) {
  const unsigned cls = class_of(4096);
  const ClassInfo& ci = kClasses[cls];
  ASSERT_EQ(slab::counts(cls).slabs, 0u);
  // Two full slabs, then everything back: the first slab to become empty is
  // kept (committed, for churn), the second goes back to the page heap.
  std::vector<void*> out(2 * ci.objects);
  ASSERT_EQ(slab::refill(cls, out.data(), 2 * ci.objects, nullptr), 2 * ci.objects);
  EXPECT_EQ(slab::counts(cls).slabs, 2u);
  EXPECT_EQ(slab::counts(cls).empty_cached_slabs, 0u);
  slab::release(cls, out.data(), static_cast<uint32_t>(out.size()));
  slab::ClassCounts c = slab::counts(cls);
  EXPECT_EQ(c.carved_objects, 0u);
  EXPECT_EQ(c.slabs, 1u);  // the cached empty one
  EXPECT_EQ(c.empty_cached_slabs, 1u);

  // The cached slab is carved again first: the same objects come back.
  std::vector<void*> again(ci.objects);
  ASSERT_EQ(slab::refill(cls, again.data(), ci.objects, nullptr), ci.objects);
  EXPECT_EQ(slab::counts(cls).empty_cached_slabs, 0u);
  Slab* s = slab_of(again[0]);
  for (void* p : again) EXPECT_EQ(slab_of(p), s);
  slab::release(cls, again.data(), ci.objects);
  EXPECT_EQ(slab::counts(cls).empty_cached_slabs, 1u);

  EXPECT_GE(slab::trim(), size_t{ci.slab_pages} * kPageSize);
  c = slab::counts(cls);
  EXPECT_EQ(c.slabs, 0u);
  EXPECT_EQ(c.empty_cached_slabs, 0u);
  // Its pages are no slab any more.
  EXPECT_EQ(slab_of(again[0]), nullptr);
}

TEST(SlabDeathTest, ReleaseReportsADoubleFree) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        const unsigned cls = class_of(100);
        void* p = nullptr;
        if (slab::refill(cls, &p, 1, nullptr) != 1) return;
        slab::release(cls, &p, 1);
        slab::release(cls, &p, 1);
      },
      "double free");
}

TEST(SlabDeathTest, ReleaseReportsAPointerOutsideEverySlab) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  static uint64_t not_a_slab[8];
  EXPECT_DEATH(
      {
        void* p = &not_a_slab[0];
        slab::release(class_of(64), &p, 1);
      },
      "invalid free");
}

}  // namespace
