// The size-class table (lib/size_classes.h): class_of picks the smallest
// fitting class, waste per object is bounded, slabs and magazines are sized
// within their documented limits, and class_for_aligned honours alignment.
//
// Waste bounds: ≤ 12.5% for requests above 128 B. Between 64 and 128 B the
// bound is 25%: classes there must be multiples of 16 (16-byte alignment of
// every object above 8 B), so 65 B lands in the 80 B class (15/65 = 23%).
// Below 64 B no percentage bound holds (9 B → 16 B); the absolute waste is
// < 16 B there, which is checked instead. Above 64 KiB (large classes, 4 per
// doubling, one object per slab) the bound is 25%.
#include <gtest/gtest.h>

#include <cstdio>

#include "base/config.h"
#include "magslab/magslab.h"
#include "small/size_classes.h"

namespace {

using magslab::class_for_aligned;
using magslab::class_of;
using magslab::kClasses;
using magslab::kNumClasses;
using magslab::kNumSmallClasses;
using magslab::kPageSize;

constexpr size_t kMaxSmall = 65536;  // kMaxSmallSize
constexpr size_t kMax = 1 << 20;     // kMaxClassSize

TEST(SizeClasses, TableShape) {
  ASSERT_GT(kNumClasses, 1u);
  EXPECT_EQ(kClasses[0].size, 8u);
  EXPECT_EQ(kClasses[kNumSmallClasses - 1].size, kMaxSmall);
  EXPECT_EQ(kClasses[kNumClasses - 1].size, kMax);
  EXPECT_LE(kNumClasses, unsigned{MAGSLAB_MAX_CLASSES});
  for (unsigned c = 1; c < kNumClasses; ++c) {
    SCOPED_TRACE(testing::Message() << "class " << c << " size " << kClasses[c].size);
    EXPECT_GT(kClasses[c].size, kClasses[c - 1].size) << "sizes must increase";
    if (kClasses[c].size > 8) {
      EXPECT_EQ(kClasses[c].size % 16, 0u) << "not a multiple of 16";
    }
  }
}

TEST(SizeClasses, ClassOfIsSmallestFittingClass) {
  EXPECT_EQ(class_of(0), 0u);
  for (size_t n = 1; n <= kMax; ++n) {
    unsigned c = class_of(n);
    ASSERT_LT(c, kNumClasses) << "n=" << n;
    ASSERT_GE(kClasses[c].size, n) << "n=" << n << " class " << c << " too small";
    if (c > 0) {
      ASSERT_LT(kClasses[c - 1].size, n) << "n=" << n << ": class " << c - 1 << " (size "
                                         << kClasses[c - 1].size << ") fits and is smaller";
    }
  }
}

TEST(SizeClasses, WastePerObjectBounded) {
  for (size_t n = 1; n <= kMax; n += n > kMaxSmall ? 97 : 1) {
    size_t size = kClasses[class_of(n)].size;
    size_t waste = size - n;
    if (n > kMaxSmall) {
      ASSERT_LE(waste * 4, n) << "n=" << n << " size=" << size << ": waste above 25%";
    } else if (n > 128) {
      // waste / n <= 1/8
      ASSERT_LE(waste * 8, n) << "n=" << n << " size=" << size << ": waste above 12.5%";
    } else if (n >= 64) {
      ASSERT_LE(waste * 4, n) << "n=" << n << " size=" << size << ": waste above 25%";
    } else {
      ASSERT_LT(waste, 16u) << "n=" << n << " size=" << size;
    }
  }
  // The documented worst case between 64 and 128 B.
  EXPECT_EQ(kClasses[class_of(65)].size, 80u);
  EXPECT_EQ(kClasses[class_of(kMaxSmall + 1)].size, 80u * 1024);  // 25% – 1 B
}

TEST(SizeClasses, SlabGeometry) {
  for (unsigned c = 0; c < kNumClasses; ++c) {
    const auto& ci = kClasses[c];
    SCOPED_TRACE(testing::Message() << "class " << c << " size " << ci.size << " pages "
                                    << ci.slab_pages << " objects " << ci.objects);
    EXPECT_EQ(ci.magic, ~uint64_t{0} / ci.size + 1);
    if (ci.size > magslab::kMaxSharedSlabSize) {
      // Above 32 KiB: one object that is exactly its slab (whole pages).
      EXPECT_EQ(ci.objects, 1u);
      EXPECT_EQ(size_t{ci.slab_pages} * kPageSize, ci.size);
      continue;
    }
    size_t slab_bytes = size_t{ci.slab_pages} * kPageSize;
    EXPECT_GE(ci.slab_pages, 1u);
    // 64 pages bound the tail-waste search; classes above 32 KiB need 8 objects
    // of up to 16 pages each (and are whole pages: no tail).
    EXPECT_LE(ci.slab_pages, ci.size > 32768 ? 128u : 64u);
    EXPECT_GE(ci.objects, 8u) << "a slab holds at least 8 objects";
    EXPECT_LE(ci.objects, magslab::kMaxSlabObjects);
    EXPECT_LE(size_t{ci.objects} * ci.size, slab_bytes) << "objects overflow the slab";
    // objects is all that fit (unless capped by the bitmap size).
    if (ci.objects < magslab::kMaxSlabObjects) {
      EXPECT_EQ(ci.objects, slab_bytes / ci.size) << "slab does not use every object slot";
    }
    size_t tail = slab_bytes - size_t{ci.objects} * ci.size;
    EXPECT_TRUE(tail * 16 <= slab_bytes || ci.slab_pages == 64)
        << "tail waste " << tail << " B above 1/16 of a " << slab_bytes << " B slab";
    // magic = ceil(2^64 / size), used to validate frees without a division.
    EXPECT_EQ(ci.magic, ~uint64_t{0} / ci.size + 1);
  }
}

TEST(SizeClasses, MagazineCapacity) {
  for (unsigned c = 0; c < kNumClasses; ++c) {
    SCOPED_TRACE(testing::Message() << "class " << c << " size " << kClasses[c].size);
    // docs/design.md: [4, 256] up to 32 KiB, 4 up to 128 KiB, 2 above.
    size_t size = kClasses[c].size;
    EXPECT_GE(kClasses[c].mag_cap, size > 131072 ? 2u : 4u);
    if (size > 32768) {
      EXPECT_EQ(kClasses[c].mag_cap, size > 131072 ? 2u : 4u);
    }
    EXPECT_LE(kClasses[c].mag_cap, 256u);
  }
}

TEST(SizeClasses, ClassForAligned) {
  for (size_t a = 1; a <= 4096; a *= 2) {
    for (size_t n = 0; n <= kMax; n += n > kMaxSmall ? 61 : 1) {
      unsigned c = class_for_aligned(n, a);
      // The smallest class whose size is a multiple of a and >= max(n, 1).
      unsigned want = kNumClasses;
      for (unsigned k = 0; k < kNumClasses; ++k)
        if (kClasses[k].size >= n && kClasses[k].size % a == 0) {
          want = k;
          break;
        }
      ASSERT_EQ(c, want) << "n=" << n << " align=" << a;
      if (c < kNumClasses) {
        ASSERT_EQ(kClasses[c].size % a, 0u) << "n=" << n << " align=" << a;
        ASSERT_GE(kClasses[c].size, n) << "n=" << n << " align=" << a;
      }
    }
  }
  // Every page-aligned request up to 1 MiB has a class (4, 8, ... 64 KiB are
  // classes, and every large class is whole pages).
  for (size_t n = 1; n <= kMax; n += 511) EXPECT_LT(class_for_aligned(n, 4096), kNumClasses) << n;
  EXPECT_EQ(class_for_aligned(kMax + 1, 16), kNumClasses);
  EXPECT_EQ(class_for_aligned(1, 4096), class_of(4096));
}

TEST(SizeClasses, PrintTable) {
  std::printf("| class | size (B) | slab (KiB) | objects/slab | magazine cap |\n");
  std::printf("|------:|---------:|-----------:|-------------:|-------------:|\n");
  for (unsigned c = 0; c < kNumClasses; ++c) {
    const auto& ci = kClasses[c];
    std::printf("| %5u | %8u | %10zu | %12u | %12u |\n", c, ci.size,
                size_t{ci.slab_pages} * kPageSize / 1024, ci.objects, ci.mag_cap);
  }
  std::fflush(stdout);
}

}  // namespace
