// Unit tests of testing/pattern.h: the byte pattern of the tests, the stress
// harness and the benchmarks, and of testing/rng.h.
#include "testing/pattern.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "testing/rng.h"

namespace {

using mstest::block_key;
using mstest::check_pattern;
using mstest::check_pattern_range;
using mstest::check_zero;
using mstest::fill_pattern;
using mstest::fill_pattern_range;
using mstest::kNoMismatch;
using mstest::pattern_byte;

TEST(Pattern, FillThenCheckIsClean) {
  std::vector<unsigned char> buf(5000);
  for (size_t size : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 4095, 4999}) {
    uint64_t key = block_key(42, buf.data(), size);
    fill_pattern(buf.data(), size, key);
    EXPECT_EQ(check_pattern(buf.data(), size, key), kNoMismatch) << size;
    for (size_t i = 0; i < size; ++i) ASSERT_EQ(buf[i], pattern_byte(key, i));
  }
}

TEST(Pattern, EveryFlippedByteIsFoundAtItsOffset) {
  for (size_t size : {1, 5, 8, 13, 24, 100, 257}) {
    std::vector<unsigned char> buf(size + 3);
    for (size_t shift = 0; shift < 3; ++shift) {  // unaligned starts too
      unsigned char* p = buf.data() + shift;
      uint64_t key = block_key(7, p, size);
      fill_pattern(p, size, key);
      for (size_t i = 0; i < size; ++i) {
        for (unsigned bit = 0; bit < 8; bit += 7) {
          p[i] ^= static_cast<unsigned char>(1u << bit);
          ASSERT_EQ(check_pattern(p, size, key), i) << "size " << size << " offset " << i;
          p[i] ^= static_cast<unsigned char>(1u << bit);
        }
      }
      EXPECT_EQ(check_pattern(p, size, key), kNoMismatch);
    }
  }
}

TEST(Pattern, FirstMismatchIsReported) {
  std::vector<unsigned char> buf(64);
  uint64_t key = block_key(1, buf.data(), 64);
  fill_pattern(buf.data(), 64, key);
  buf[40] ^= 1;
  buf[20] ^= 1;
  EXPECT_EQ(check_pattern(buf.data(), 64, key), 20u);
  EXPECT_EQ(check_pattern(buf.data(), 20, key), kNoMismatch);  // prefix check
}

TEST(Pattern, KeysDependOnSeedAddressAndSize) {
  char x[2] = {};  // only its addresses matter
  uint64_t k = block_key(1, x, 16);
  EXPECT_NE(k, block_key(2, x, 16));
  EXPECT_NE(k, block_key(1, x + 1, 16));
  EXPECT_NE(k, block_key(1, x, 17));
  EXPECT_EQ(k, block_key(1, x, 16));
}

TEST(Pattern, OtherBlocksPatternIsDetected) {
  // A block overwritten with another block's pattern (overlap) is caught.
  std::vector<unsigned char> buf(256);
  uint64_t mine = block_key(9, buf.data(), 256), other = block_key(9, buf.data() + 16, 64);
  fill_pattern(buf.data(), 256, mine);
  fill_pattern(buf.data() + 16, 64, other);
  // The first mismatch is in the overwritten range: at byte 16 unless the two
  // patterns happen to agree there (1 in 256, depending on the address), and
  // not all 64 bytes can agree.
  size_t at = check_pattern(buf.data(), 256, mine);
  EXPECT_GE(at, 16u);
  EXPECT_LT(at, 80u);
}

TEST(Pattern, PatternBytesAreNotMostlyZero) {
  std::vector<unsigned char> buf(4096);
  fill_pattern(buf.data(), buf.size(), block_key(3, buf.data(), buf.size()));
  size_t zeros = 0;
  for (unsigned char c : buf) zeros += c == 0;
  EXPECT_LT(zeros, 64u);  // ~16 expected
  EXPECT_NE(check_zero(buf.data(), buf.size()), kNoMismatch);
}

TEST(Zero, FindsFirstNonZeroByte) {
  std::vector<unsigned char> buf(100, 0);
  EXPECT_EQ(check_zero(buf.data(), 100), kNoMismatch);
  buf[99] = 1;
  EXPECT_EQ(check_zero(buf.data(), 100), 99u);
  EXPECT_EQ(check_zero(buf.data(), 99), kNoMismatch);
  buf[3] = 0x80;
  EXPECT_EQ(check_zero(buf.data(), 100), 3u);
}

TEST(Pattern, RangesAgreeWithTheWholeBlock) {
  std::vector<unsigned char> whole(203), parts(203);
  uint64_t key = 0x1234;
  fill_pattern(whole.data(), whole.size(), key);
  // Pieces with every alignment of their ends, in any order.
  for (size_t from : {152, 0, 13, 64, 101})
    fill_pattern_range(parts.data(), from, std::min<size_t>(from + 51, parts.size()), key);
  fill_pattern_range(parts.data(), 51, 64, key);
  EXPECT_EQ(whole, parts);
  EXPECT_EQ(check_pattern_range(parts.data(), 7, 203, key), kNoMismatch);
  parts[77] ^= 4;
  EXPECT_EQ(check_pattern_range(parts.data(), 3, 203, key), 77u);
  EXPECT_EQ(check_pattern_range(parts.data(), 78, 203, key), kNoMismatch);
  EXPECT_EQ(check_pattern_range(parts.data(), 50, 77, key), kNoMismatch);
}

TEST(Pattern, SparseProbesFirstAndLastByteOfEveryStrideAndPrefixesCheck) {
  std::vector<unsigned char> buf(10 * 64 + 5, 0);
  const uint64_t key = 99;
  mstest::fill_pattern_sparse(buf.data(), buf.size(), key, 64);
  EXPECT_EQ(buf[0], pattern_byte(key, 0));
  EXPECT_EQ(buf[63], pattern_byte(key, 63));
  EXPECT_EQ(buf[64 * 9 + 63], pattern_byte(key, 64 * 9 + 63));
  EXPECT_EQ(mstest::check_pattern_sparse(buf.data(), buf.size(), key, 64), kNoMismatch);
  EXPECT_EQ(mstest::check_pattern_sparse(buf.data(), 200, key, 64), kNoMismatch);  // a prefix
  buf[128 + 63] ^= 1;
  EXPECT_EQ(mstest::check_pattern_sparse(buf.data(), buf.size(), key, 64), 191u);
  buf[1] ^= 1;  // not a probe
  EXPECT_EQ(mstest::check_pattern_sparse(buf.data(), 128, key, 64), kNoMismatch);
}

TEST(Rng, SameSeedSameStreamOtherSeedOtherStream) {
  mstest::Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    EXPECT_NE(x, c.next());
  }
}

TEST(Rng, BoundsAreKept) {
  mstest::Rng r(0);  // seed 0 is fine
  EXPECT_EQ(r.below(0), 0u);
  bool seen_lo = false, seen_hi = false;
  for (int i = 0; i < 10000; ++i) {
    uint64_t x = r.between(5, 9);
    ASSERT_GE(x, 5u);
    ASSERT_LE(x, 9u);
    seen_lo |= x == 5;
    seen_hi |= x == 9;
    size_t l = r.log_uniform(129, 4096);
    ASSERT_GE(l, 129u);
    ASSERT_LE(l, 4096u);
  }
  EXPECT_TRUE(seen_lo && seen_hi);
}

TEST(Rng, DrivesStandardDistributions) {
  mstest::Rng r(7);
  std::uniform_int_distribution<int> d(1, 6);
  for (int i = 0; i < 1000; ++i) {
    int x = d(r);
    ASSERT_GE(x, 1);
    ASSERT_LE(x, 6);
  }
  std::vector<int> v{1, 2, 3, 4, 5};
  std::shuffle(v.begin(), v.end(), r);
  std::sort(v.begin(), v.end());
  EXPECT_EQ(v, (std::vector<int>{1, 2, 3, 4, 5}));
}

}  // namespace
