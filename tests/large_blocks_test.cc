// Large blocks (page runs) and huge blocks (own mappings) through the public
// API and the stats: in-place growth into coalesced free neighbours, in-place
// shrink, huge realloc by mremap keeping contents, address space going back to
// the OS after free + trim, and the two fatal misuse reports for large blocks.
// Blocks up to 1 MiB are large *classes* (one object per slab, cached in
// magazines: tests/large_classes_test.cc); a page run is what an alignment
// above the page size gets, so the page-run tests allocate with run().
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "magslab/magslab.h"
#include "testing/fake_os.h"
#include "testing/no_decay.h"  // exact cache contents
#include "testing/pattern.h"

namespace {

constexpr size_t KiB = 1024, MiB = 1024 * KiB;
constexpr size_t kChunk = 4 * MiB;

struct magslab_stats g_st;
const struct magslab_stats& stats() {
  magslab_stats(&g_st);
  return g_st;
}

namespace fake_os = mstest::fake_os;

// A page run of n bytes: alignments above the page size skip the classes.
void* run(size_t n) { return magslab_aligned_alloc(8 * KiB, n); }

TEST(LargeBlocks, ReallocGrowsInPlaceIntoCoalescedNeighboursAndShrinksInPlace) {
  // Empty the large-run cache first: a freed run normally sits in that cache
  // (still marked as a cached block, not as free pages), where it neither
  // coalesces nor can be grown into. magslab_trim() hands every cached run
  // back to the page heap, which coalesces it with its free neighbours.
  magslab_trim();
  const size_t live0 = stats().live_objects;

  // Three adjacent 72 KiB page runs (8 KiB aligned: no class):
  // allocate until three consecutive ones are
  // contiguous (first-fit carving from one run makes that happen at once in
  // practice; earlier tests may have left short holes that absorb a few).
  constexpr size_t kBlock = 72 * KiB;
  std::vector<unsigned char*> all;
  unsigned char *a = nullptr, *b = nullptr, *c = nullptr;
  for (int i = 0; i < 64 && a == nullptr; ++i) {
    all.push_back(static_cast<unsigned char*>(run(kBlock)));
    ASSERT_NE(all.back(), nullptr);
    size_t k = all.size();
    if (k >= 3 && all[k - 2] == all[k - 3] + kBlock && all[k - 1] == all[k - 2] + kBlock) {
      a = all[k - 3];
      b = all[k - 2];
      c = all[k - 1];
    }
  }
  ASSERT_NE(a, nullptr) << "no three contiguous 72 KiB blocks in 64 allocations";
  EXPECT_EQ(magslab_usable_size(a), kBlock);
  mstest::fill_pattern(a, kBlock, 1);
  mstest::fill_pattern(b, kBlock, 2);
  mstest::fill_pattern(c, kBlock, 3);

  magslab_free(c);
  magslab_free(b);
  // b and c are in the large-run cache now; trim returns them to the page
  // heap, where they coalesce into one free run right after a.
  magslab_trim();

  unsigned char* g = static_cast<unsigned char*>(magslab_realloc(a, 200 * KiB));
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g, a) << "realloc did not grow into the free pages right after the block";
  EXPECT_EQ(mstest::check_pattern(g, kBlock, 1), mstest::kNoMismatch)
      << "contents lost by the in-place grow";
  EXPECT_EQ(magslab_usable_size(g), 200 * KiB);  // 50 pages
  // The grown part is ours now: writing it must not disturb anything.
  memset(g + kBlock, 0x5A, 200 * KiB - kBlock);

  // Shrink in place (still a large block: above 64 KiB).
  unsigned char* s = static_cast<unsigned char*>(magslab_realloc(g, 120 * KiB));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s, g) << "shrinking a large block must keep the pointer";
  EXPECT_EQ(magslab_usable_size(s), 120 * KiB);
  EXPECT_EQ(mstest::check_pattern(s, kBlock, 1), mstest::kNoMismatch);
  for (size_t i = kBlock; i < 120 * KiB; ++i) ASSERT_EQ(s[i], 0x5A) << i;

  // Shrink again and grow back into the tail it gave up.
  s = static_cast<unsigned char*>(magslab_realloc(s, 68 * KiB));
  EXPECT_EQ(s, a);
  magslab_trim();
  s = static_cast<unsigned char*>(magslab_realloc(s, 180 * KiB));
  EXPECT_EQ(s, a) << "the tail given back by the shrink did not coalesce";
  EXPECT_EQ(mstest::check_pattern(s, 68 * KiB, 1), mstest::kNoMismatch);

  for (unsigned char* p : all)
    if (p != a && p != b && p != c) magslab_free(p);
  magslab_free(s);
  EXPECT_EQ(stats().live_objects, live0);
}

TEST(LargeBlocks, HugeReallocMovesByMremapAndKeepsContents) {
  magslab_trim();
  const size_t huge0 = stats().huge_live_blocks;
  const size_t live0 = stats().live_objects;
  const size_t kOld = 8 * MiB, kNew = 64 * MiB;
  auto* p = static_cast<unsigned char*>(magslab_malloc(kOld));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(stats().huge_live_blocks, huge0 + 1);
  // First and last byte, and one byte in every page, each with its own value.
  for (size_t i = 0; i < kOld; i += 4096) p[i] = static_cast<unsigned char>((i >> 12) * 37 + 11);
  p[1] = 0xC3;
  p[kOld / 2 + 123] = 0x7E;
  p[kOld - 1] = 0xE1;

  unsigned char* q;
  {
    fake_os::Guard counting;
    q = static_cast<unsigned char*>(magslab_realloc(p, kNew));
    ASSERT_NE(q, nullptr);
    EXPECT_GE(fake_os::counts().remaps, 1u) << "a huge block must be resized by mremap, not copied";
  }
  EXPECT_GE(magslab_usable_size(q), kNew);
  for (size_t i = 0; i < kOld; i += 4096)
    ASSERT_EQ(q[i], static_cast<unsigned char>((i >> 12) * 37 + 11)) << "offset " << i;
  EXPECT_EQ(q[1], 0xC3);
  EXPECT_EQ(q[kOld / 2 + 123], 0x7E);
  EXPECT_EQ(q[kOld - 1], 0xE1);
  // The new part is usable up to the last byte.
  q[kNew - 1] = 0x42;
  q[kOld] = 0x43;
  EXPECT_EQ(q[kNew - 1], 0x42);
  EXPECT_EQ(stats().huge_live_blocks, huge0 + 1);
  EXPECT_GE(stats().mapped_bytes, kNew);
  EXPECT_EQ(stats().live_objects, live0 + 1);

  // And down again, in place.
  unsigned char* r = static_cast<unsigned char*>(magslab_realloc(q, 4 * MiB));
  ASSERT_EQ(r, q) << "shrinking a huge block must keep the pointer";
  for (size_t i = 0; i < 4 * MiB; i += 4096)
    ASSERT_EQ(r[i], static_cast<unsigned char>((i >> 12) * 37 + 11)) << "offset " << i;
  EXPECT_EQ(r[1], 0xC3);
  EXPECT_GE(magslab_usable_size(r), 4 * MiB);
  magslab_free(r);
  EXPECT_EQ(stats().huge_live_blocks, huge0);
  EXPECT_EQ(stats().live_objects, live0);
}

TEST(LargeBlocks, MappedBytesReturnAfterFreeAndTrim) {
  magslab_trim();
  const size_t mapped0 = stats().mapped_bytes;
  std::vector<void*> blocks;
  // 48 MiB of page runs in many chunks, plus huge blocks.
  for (int i = 0; i < 240; ++i) {
    void* p = magslab_malloc((i % 5 + 1) * 40 * KiB);
    ASSERT_NE(p, nullptr);
    memset(p, i, 40 * KiB);
    blocks.push_back(p);
  }
  for (int i = 0; i < 4; ++i) {
    void* p = magslab_malloc(8 * MiB + i * 4096);
    ASSERT_NE(p, nullptr);
    blocks.push_back(p);
  }
  EXPECT_GE(stats().mapped_bytes, mapped0 + 32 * MiB);
  for (void* p : blocks) magslab_free(p);
  magslab_trim();
  const size_t mapped1 = stats().mapped_bytes;
  EXPECT_LE(mapped1, mapped0 + kChunk)
      << "mapped before " << mapped0 << ", after free+trim " << mapped1;
  EXPECT_LE(stats().committed_bytes, mapped1);
}

// The child writes the address it is about to misuse ("expect=0x…") before the
// fatal call; the matcher then requires the exact report line for that address.
// (threadsafe death tests re-run the test in a fresh process, so the parent
// cannot know the child's addresses.)
class ReportsAddress : public testing::MatcherInterface<const std::string&> {
 public:
  ReportsAddress(std::string what, std::string suffix)
      : what_(std::move(what)), suffix_(std::move(suffix)) {}
  bool MatchAndExplain(const std::string& err, testing::MatchResultListener* l) const override {
    size_t at = err.find("expect=0x");
    if (at == std::string::npos) {
      *l << "the child never reached the misuse";
      return false;
    }
    size_t end = err.find('\n', at);
    std::string addr = err.substr(at + 7, end - at - 7);
    std::string line = "magslab: " + what_ + " " + addr + suffix_ + "\n";
    if (err.find(line) == std::string::npos) {
      *l << "no line \"" << line.substr(0, line.size() - 1) << "\"";
      return false;
    }
    return true;
  }
  void DescribeTo(std::ostream* os) const override {
    *os << "contains \"magslab: " << what_ << " 0x<the address>\"";
  }

 private:
  std::string what_;
  std::string suffix_;
};
// The whole line: what, the address, and what magslab knows of the block.
testing::Matcher<const std::string&> Reports(const char* what,
                                             const char* suffix = " (large block)") {
  return testing::MakeMatcher(new ReportsAddress(what, suffix));
}

void announce(const void* p) { std::fprintf(stderr, "expect=%p\n", p); }

TEST(LargeBlocksDeathTest, DoubleFreeOfLargeBlock) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Freed once, the run sits in the large-run cache.
  EXPECT_DEATH(
      {
        void* p = run(72 * KiB);
        announce(p);
        magslab_free(p);
        magslab_free(p);
      },
      Reports("double free of"));
  // Freed once and trimmed: the run is back in the page heap (a neighbour in
  // the same chunk keeps the chunk mapped).
  EXPECT_DEATH(
      {
        void* keep = run(72 * KiB);
        void* p = run(72 * KiB);
        if ((reinterpret_cast<uintptr_t>(keep) ^ reinterpret_cast<uintptr_t>(p)) >= kChunk)
          std::fprintf(stderr, "test setup: blocks in different chunks\n");
        else
          announce(p);
        magslab_free(p);
        magslab_trim();
        magslab_free(p);
        magslab_free(keep);
      },
      Reports("double free of"));
}

TEST(LargeBlocksDeathTest, InteriorPointerOfLargeBlock) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(run(72 * KiB));
        announce(p + 4096);
        magslab_free(p + 4096);
      },
      Reports("invalid free of"));
  // Not page aligned either.
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(run(200 * KiB));
        announce(p + 4096 + 8);
        magslab_free(p + 4096 + 8);
      },
      Reports("invalid free of"));
}

}  // namespace

// Freed page runs stay committed for reuse ("dirty"), but a chunk that becomes
// entirely free is unmapped beyond free_chunks_kept() (option free_chunks, 2): freeing 64 MiB of
// page runs leaves at most those two chunks' 8 MiB cached; trim gives it all back. (Decay, which
// purges dirty runs by age, is paused here: tests/decay_test.cc.)
TEST(LargeBlocks, DirtyFreeRunsStayWithinTheBudgetAndTrimPurgesThem) {
  magslab_trim();
  struct magslab_stats base, st;
  magslab_stats(&base);
  std::vector<void*> v;
  for (int i = 0; i < 256; ++i) {  // 256 x 256 KiB = 64 MiB, every page touched
    auto* p = static_cast<char*>(run(256 << 10));
    ASSERT_NE(p, nullptr);
    for (size_t k = 0; k < (256 << 10); k += 4096) p[k] = 1;
    v.push_back(p);
  }
  for (void* p : v) magslab_free(p);
  magslab_stats(&st);
  EXPECT_GT(st.cached_bytes, base.cached_bytes) << "freed runs are kept for reuse";
  EXPECT_LE(st.cached_bytes, base.cached_bytes + (size_t{8} << 20) + (size_t{1} << 20))
      << "no more than the two kept free chunks stay committed";
  EXPECT_LE(st.committed_bytes, base.committed_bytes + (size_t{9} << 20));
  magslab_trim();
  magslab_stats(&st);
  EXPECT_EQ(st.cached_bytes, 0u);
  EXPECT_LE(st.committed_bytes, base.committed_bytes);
}

// A huge block's mapping is a whole number of chunks (issue #14), so realloc
// growth up to the end of its last chunk is in place with no system call; past
// it, the mapping grows (mremap) to a whole number of chunks again.
TEST(LargeBlocks, HugeReallocGrowsWithinItsLastChunkWithoutASystemCall) {
  magslab_trim();
  auto* p = static_cast<unsigned char*>(magslab_malloc(MiB + MiB / 2));
  ASSERT_NE(p, nullptr);
  p[0] = 0x11;
  p[MiB + MiB / 2 - 1] = 0x22;
  {
    fake_os::Guard counting;
    auto* q = static_cast<unsigned char*>(magslab_realloc(p, 4 * MiB - 100));
    ASSERT_EQ(q, p) << "grown in place";
    EXPECT_EQ(fake_os::counts().maps + fake_os::counts().remaps + fake_os::counts().unmaps, 0u)
        << "growth within the block's chunk made a system call";
    EXPECT_GE(magslab_usable_size(q), 4 * MiB - 100);
    q[4 * MiB - 101] = 0x33;
    auto* r = static_cast<unsigned char*>(magslab_realloc(q, 6 * MiB));
    ASSERT_NE(r, nullptr);
    // In place, or moved when the address space after it is taken (a second mremap).
    const uint64_t remaps = fake_os::counts().remaps;
    EXPECT_GE(remaps, 1u) << "past its chunk: mremap";
    EXPECT_EQ(r[0], 0x11);
    EXPECT_EQ(r[MiB + MiB / 2 - 1], 0x22);
    EXPECT_EQ(r[4 * MiB - 101], 0x33);
    r[6 * MiB - 1] = 0x44;
    auto* s = static_cast<unsigned char*>(magslab_realloc(r, 7 * MiB + MiB / 2));
    ASSERT_EQ(s, r) << "6 MiB maps two chunks: 7.5 MiB fits in them";
    EXPECT_EQ(fake_os::counts().remaps, remaps);
    p = s;
  }
  magslab_free(p);
  magslab_trim();
}

// A freed huge mapping is kept (bounded) and reused by the next request it
// fits, without a new mmap; trim unmaps it.
TEST(LargeBlocks, FreedHugeMappingIsReusedAndTrimmed) {
  magslab_trim();
  struct magslab_stats base, st;
  magslab_stats(&base);
  const size_t n = size_t{3} << 20;
  auto* p = static_cast<char*>(magslab_malloc(n));
  ASSERT_NE(p, nullptr);
  memset(p, 0x5a, n);
  magslab_free(p);
  magslab_stats(&st);
  EXPECT_GE(st.cached_bytes, base.cached_bytes + n) << "the mapping is cached";
  EXPECT_GE(st.mapped_bytes, base.mapped_bytes + n) << "and still mapped";
  auto* q = static_cast<char*>(magslab_malloc(n - 4096));  // fits, fills > 3/4
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q, p) << "the cached mapping is reused";
  auto* z = static_cast<char*>(magslab_calloc(1, n));  // a second one: fresh, and zero
  ASSERT_NE(z, nullptr);
  for (size_t k = 0; k < n; k += 4096) ASSERT_EQ(z[k], 0);
  magslab_free(z);
  // calloc on a reused (dirty) mapping must still return zeros.
  auto* c = static_cast<char*>(magslab_calloc(1, n));
  ASSERT_NE(c, nullptr);
  for (size_t k = 0; k < n; k += 512) ASSERT_EQ(c[k], 0) << "offset " << k;
  magslab_free(c);
  magslab_free(q);
  magslab_trim();
  magslab_stats(&st);
  EXPECT_EQ(st.cached_bytes, 0u);
  EXPECT_EQ(st.mapped_bytes, base.mapped_bytes);
}
