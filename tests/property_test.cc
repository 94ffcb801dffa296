// Property-based test of the C API's invariants (issue #12), one thread:
// RapidCheck generates sequences of malloc / calloc / realloc / aligned_alloc /
// posix_memalign / free / free_sized / usable_size operations (sizes from 0 B
// to 4 MiB, mostly small) and tests/model/heap_model.h runs them against a
// shadow model, checking after every operation: no overlap, alignment,
// usable_size, contents, calloc zeroing, EINVAL for invalid alignments, strict
// reuse of a freed small block, and magslab_stats live_objects/live_bytes ==
// baseline + the model's blocks. After the sequence frees everything the live
// counters are back to their values from before it. A failing sequence is
// shrunk by RapidCheck to a minimal one and printed.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "magslab/magslab.h"
#include "model/heap_model.h"
#include "model/rc_support.h"
#include "testing/sanitizers.h"

namespace {

using namespace magslab_model;

#ifdef MS_SANITIZED
constexpr int kCases = 200;
#else
constexpr int kCases = 500;
#endif
constexpr int kMaxSize = 100;  // sequences of up to 2 * kMaxSize operations

void warm_up() {
  // Thread cache, page map and a block of each kind, so that what is created
  // once per process does not show up in the first case's balance.
  IntervalSet intervals;
  Interpreter m(intervals, nullptr, Config{}, 1);
  for (unsigned tier = 0; tier < kNumTiers; ++tier)
    for (uint32_t raw : {1u, 1000u, 77777u}) m.step(make_op(0, tier, raw, 0, 0, 0));
  m.step(make_op(unsigned(Kind::AlignedAlloc), 5, 4000, 16, 0, 0));
  m.free_all();
  ASSERT_FALSE(m.failed()) << m.error();
}

TEST(HeapProperty, SequencesKeepInvariantsAndStatsBalance) {
  warm_up();
  uint64_t seed_base = uint64_t{1} << 32;
  size_t reuse_tries = 0;
  check_property(
      [&] {
        const std::vector<Op> ops =
            *rc::gen::scale(2.0, rc::gen::container<std::vector<Op>>(gen_op(false)));
        struct magslab_stats before;
        magslab_stats(&before);
        IntervalSet intervals;
        Config cfg;
        cfg.strict_reuse = true;
        cfg.stats_every_op = true;
        Interpreter m(intervals, nullptr, cfg, seed_base);
        seed_base += uint64_t{1} << 24;
        if (!m.run(ops)) RC_FAIL(m.error());
        if (!m.free_all()) RC_FAIL(m.error());
        reuse_tries += m.reuse_tries();
        struct magslab_stats after;
        magslab_stats(&after);
        RC_ASSERT(after.live_objects == before.live_objects);
        RC_ASSERT(after.live_bytes == before.live_bytes);
        RC_ASSERT(intervals.size() == 0u);
      },
      kCases, kMaxSize);
  EXPECT_GT(reuse_tries, 0u) << "no sequence exercised reuse";
}

// The oracle itself: a changed byte, anywhere the pattern is kept, is caught
// when the block is freed (small, large and huge blocks), and an overlapping
// range is refused by the interval set.
TEST(HeapProperty, ModelCatchesCorruptionAndOverlap) {
  for (uint32_t tier : {0u, 5u, 6u, 7u}) {
    for (int where : {0, 1, 2}) {  // first byte, a sampled middle word, last byte
      IntervalSet intervals;
      Interpreter m(intervals, nullptr, Config{}, 99);
      ASSERT_TRUE(m.step(make_op(unsigned(Kind::Malloc), tier, 300000, 0, 0, 0))) << m.error();
      const Block b = m.live().back();
      size_t off = where == 0 ? 0 : where == 2 ? b.usable - 1 : (b.usable / 2) & ~size_t{4095};
      b.p[off] ^= 0x40;
      EXPECT_FALSE(m.step(make_op(unsigned(Kind::Free), 0, 0, 0, 0, 0)));
      EXPECT_NE(m.error().find("contents changed at offset " + std::to_string(off)),
                std::string::npos)
          << m.error();
      b.p[off] ^= 0x40;
      magslab_free(b.p);
    }
  }
  IntervalSet intervals;
  uintptr_t other = 0;
  EXPECT_TRUE(intervals.insert(1000, 1100, &other));
  EXPECT_TRUE(intervals.insert(1100, 1200, &other));
  EXPECT_TRUE(intervals.insert(900, 1000, &other));
  EXPECT_FALSE(intervals.insert(1199, 1300, &other));
  EXPECT_EQ(other, 1100u);
  EXPECT_FALSE(intervals.insert(950, 960, &other));
  EXPECT_EQ(other, 900u);
  EXPECT_FALSE(intervals.insert(800, 901, &other));
  EXPECT_EQ(other, 900u);
  EXPECT_FALSE(intervals.insert(1000, 1001, &other));
  EXPECT_EQ(other, 1000u);
}

}  // namespace
