// Unit tests of magslab-stress's checks: the byte pattern and the overlap index.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "checks.h"

namespace {

using stress::block_key;
using stress::check_pattern;
using stress::check_zero;
using stress::fill_pattern;
using stress::kNoMismatch;
using stress::OverlapIndex;
using stress::pattern_byte;

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
  char x[2];
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
  EXPECT_EQ(check_pattern(buf.data(), 256, mine), 16u);
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

void* at(uintptr_t a) { return reinterpret_cast<void*>(a); }

TEST(Overlap, DisjointAndAdjacentIntervalsAreAccepted) {
  OverlapIndex ix;
  OverlapIndex::Conflict c;
  EXPECT_TRUE(ix.insert(at(0x10000), 64, &c));
  EXPECT_TRUE(ix.insert(at(0x10040), 64, &c));  // adjacent after
  EXPECT_TRUE(ix.insert(at(0x0ffc0), 64, &c));  // adjacent before
  EXPECT_EQ(ix.size(), 3u);
}

TEST(Overlap, EveryKindOfOverlapIsRejected) {
  OverlapIndex ix;
  OverlapIndex::Conflict c;
  ASSERT_TRUE(ix.insert(at(0x20000), 100, &c));
  struct {
    uintptr_t a;
    size_t n;
  } bad[] = {{0x20000, 100}, {0x20000, 1}, {0x1fff0, 17}, {0x20063, 10},
             {0x20010, 10},  {0x1f000, 0x2000}, {0x20050, 0}};
  for (auto& b : bad) {
    EXPECT_FALSE(ix.insert(at(b.a), b.n, &c)) << std::hex << b.a << "+" << b.n;
    EXPECT_EQ(c.addr, 0x20000u);
    EXPECT_EQ(c.len, 100u);
  }
  EXPECT_EQ(ix.size(), 1u);  // failed inserts left nothing behind
}

TEST(Overlap, EraseMakesRoom) {
  OverlapIndex ix;
  OverlapIndex::Conflict c;
  ASSERT_TRUE(ix.insert(at(0x30000), 32, &c));
  EXPECT_FALSE(ix.insert(at(0x30010), 32, &c));
  EXPECT_TRUE(ix.erase(at(0x30000), 32));
  EXPECT_FALSE(ix.erase(at(0x30000), 32));
  EXPECT_TRUE(ix.insert(at(0x30010), 32, &c));
}

TEST(Overlap, LargeIntervalsSpanningManyRegionsAndShards) {
  OverlapIndex ix;
  OverlapIndex::Conflict c;
  const uintptr_t base = uintptr_t{1} << 40;
  // 100 MiB: more regions than shards.
  ASSERT_TRUE(ix.insert(at(base), 100u << 20, &c));
  EXPECT_FALSE(ix.insert(at(base + (77u << 20) + 5), 8, &c));
  EXPECT_EQ(c.addr, base);
  EXPECT_FALSE(ix.insert(at(base + (100u << 20) - 1), 8, &c));
  EXPECT_TRUE(ix.insert(at(base + (100u << 20)), 8, &c));
  // An interval straddling a region boundary is found from both sides.
  const uintptr_t b2 = base + (200u << 20) - 16;
  ASSERT_TRUE(ix.insert(at(b2), 32, &c));
  EXPECT_FALSE(ix.insert(at(b2 + 20), 4, &c));
  EXPECT_FALSE(ix.insert(at(b2 - 4), 8, &c));
  EXPECT_EQ(ix.size(), 3u);
  EXPECT_TRUE(ix.erase(at(base), 100u << 20));
  EXPECT_TRUE(ix.insert(at(base + (77u << 20) + 5), 8, &c));
}

TEST(Overlap, ConcurrentInsertsOfOverlappingIntervalsAdmitExactlyOne) {
  for (int round = 0; round < 200; ++round) {
    OverlapIndex ix;
    std::atomic<int> ok{0};
    const uintptr_t base = 0x5000000 + (static_cast<uintptr_t>(round) << 20) - 64;
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        OverlapIndex::Conflict c;
        // all four intervals share [base+48, base+64) across a region boundary
        if (ix.insert(at(base + 16 * t), 64 + 16 * (3 - t) - 16 * t + 16 * t, &c)) ++ok;
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(ok.load(), 1);
  }
}

}  // namespace
