// magslab_calloc must return zeroed memory for every size, in particular when
// it reuses memory that was just dirtied (filled with 0xAB) and freed: small
// slab objects, large page runs (100 KiB) and huge blocks (4 MiB).

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "magslab/magslab.h"
#include "testing/no_decay.h"  // exact cache contents

namespace {

// First non-zero offset or SIZE_MAX.
size_t first_nonzero(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != 0) return i;
  return SIZE_MAX;
}

size_t live_objects() {
  static struct magslab_stats s;
  magslab_stats(&s);
  return s.live_objects;
}

TEST(Calloc, ZeroForManySizes) {
  size_t base = live_objects();
  // Each block is checked, dirtied and freed, so the next sizes (often the
  // same class) reuse dirty memory.
  for (size_t sz = 1; sz <= 4096; sz += (sz < 1024 ? 1 : 13)) {
    auto* p = static_cast<uint8_t*>(magslab_calloc(1, sz));
    ASSERT_NE(p, nullptr) << sz;
    ASSERT_EQ(first_nonzero(p, sz), SIZE_MAX) << "calloc(1, " << sz << ")";
    memset(p, 0xAB, magslab_usable_size(p));
    magslab_free(p);
  }
  // count * size combinations.
  for (size_t n : {size_t{1}, size_t{3}, size_t{17}, size_t{1000}}) {
    for (size_t m : {size_t{1}, size_t{8}, size_t{24}, size_t{100}, size_t{4096}}) {
      auto* p = static_cast<uint8_t*>(magslab_calloc(n, m));
      ASSERT_NE(p, nullptr);
      ASSERT_GE(magslab_usable_size(p), n * m);
      ASSERT_EQ(first_nonzero(p, n * m), SIZE_MAX) << n << " x " << m;
      memset(p, 0xAB, n * m);
      magslab_free(p);
    }
  }
  EXPECT_EQ(live_objects(), base);
}

TEST(Calloc, ZeroSizeIsUniqueAndFreeable) {
  size_t base = live_objects();
  void* a = magslab_calloc(0, 0);
  void* b = magslab_calloc(0, 16);
  void* c = magslab_calloc(16, 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);
  EXPECT_EQ(live_objects(), base + 3);
  magslab_free(a);
  magslab_free(b);
  magslab_free(c);
  EXPECT_EQ(live_objects(), base);
}

void reuse_after_dirty(size_t size, size_t count, int rounds) {
  SCOPED_TRACE(testing::Message() << "size=" << size << " count=" << count);
  size_t base = live_objects();
  for (int r = 0; r < rounds; ++r) {
    std::vector<void*> v(count);
    for (auto& p : v) {
      p = magslab_malloc(size);
      ASSERT_NE(p, nullptr);
      memset(p, 0xAB, magslab_usable_size(p));
    }
    for (void* p : v) magslab_free(p);
    for (auto& p : v) {
      p = magslab_calloc(1, size);
      ASSERT_NE(p, nullptr);
      size_t bad = first_nonzero(p, size);
      ASSERT_EQ(bad, SIZE_MAX) << "round " << r << ": calloc block " << p
                               << " has a non-zero byte at offset " << bad << " (0x" << std::hex
                               << int(static_cast<uint8_t*>(p)[bad]) << ")";
    }
    for (auto& p : v) {
      memset(p, 0xAB, size);
      magslab_free(p);
    }
    // Same again with the count/size split the other way round.
    for (auto& p : v) {
      p = magslab_calloc(size / 8 ? size / 8 : 1, size / 8 ? 8 : size);
      ASSERT_NE(p, nullptr);
      size_t n = size / 8 ? (size / 8) * 8 : size;
      ASSERT_EQ(first_nonzero(p, n), SIZE_MAX) << "round " << r;
      memset(p, 0xAB, n);
    }
    for (void* p : v) magslab_free(p);
  }
  EXPECT_EQ(live_objects(), base);
}

TEST(Calloc, ReusesDirtySmallObjects) {
  for (size_t s : {size_t{8}, size_t{16}, size_t{24}, size_t{48}, size_t{64}, size_t{100},
                   size_t{128}, size_t{256}, size_t{512}, size_t{1000}, size_t{2048}, size_t{4096},
                   size_t{8192}, size_t{16384}, size_t{32768}})
    ASSERT_NO_FATAL_FAILURE(reuse_after_dirty(s, 300, 3));
}

TEST(Calloc, ReusesDirtyLargeBlocks) {
  ASSERT_NO_FATAL_FAILURE(reuse_after_dirty(100 * 1024, 32, 3));
  ASSERT_NO_FATAL_FAILURE(reuse_after_dirty(300 * 1024, 8, 3));
}

TEST(Calloc, ReusesDirtyHugeBlocks) {
  ASSERT_NO_FATAL_FAILURE(reuse_after_dirty(size_t{4} << 20, 4, 3));
  ASSERT_NO_FATAL_FAILURE(reuse_after_dirty((size_t{9} << 20) + 123, 2, 2));
}

TEST(Calloc, ZeroAfterReallocShrinkAndTrim) {
  // Dirty a big block, shrink it (tail returned to the allocator), then calloc
  // sizes that could land in the released tail.
  auto* p = static_cast<uint8_t*>(magslab_malloc(size_t{2} << 20));
  ASSERT_NE(p, nullptr);
  memset(p, 0xAB, size_t{2} << 20);
  p = static_cast<uint8_t*>(magslab_realloc(p, 4096));
  ASSERT_NE(p, nullptr);
  std::vector<void*> v;
  for (int i = 0; i < 16; ++i) {
    void* q = magslab_calloc(1, 100000);
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(first_nonzero(q, 100000), SIZE_MAX) << i;
    v.push_back(q);
  }
  for (void* q : v) {
    memset(q, 0xAB, 100000);
    magslab_free(q);
  }
  magslab_free(p);
  magslab_trim();
  for (size_t sz : {size_t{64}, size_t{4000}, size_t{100000}, size_t{4} << 20}) {
    void* q = magslab_calloc(1, sz);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(first_nonzero(q, sz), SIZE_MAX) << sz;
    magslab_free(q);
  }
}

}  // namespace
