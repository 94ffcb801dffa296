// Sweeps request sizes (crossing every size-class boundary reported by
// magslab_stats) and alignments; every block is fully written with a pattern
// derived from its address and size and verified byte by byte while many other
// blocks are live, which catches overlapping blocks and wrong usable sizes.

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "magslab/magslab.h"
#include "testing/pattern.h"

namespace {

struct Block {
  void* p;
  size_t size;    // requested
  size_t usable;  // as reported at allocation time
};

// The pattern of testing/pattern.h over the whole usable size, keyed by the
// block's address and requested size.
void fill_block(const Block& b) {
  mstest::fill_pattern(b.p, b.usable, mstest::block_key(0, b.p, b.size));
}

// Returns the first bad offset or SIZE_MAX (mstest::kNoMismatch).
size_t verify_block(const Block& b) {
  return mstest::check_pattern(b.p, b.usable, mstest::block_key(0, b.p, b.size));
}

std::vector<size_t> class_sizes() {
  static struct magslab_stats st;
  magslab_stats(&st);
  std::vector<size_t> v;
  for (size_t i = 0; i < st.class_count && i < MAGSLAB_MAX_CLASSES; ++i)
    v.push_back(st.classes[i].object_size);
  return v;
}

// Every size to 1024, steps of 8 to 8192, steps of 64 to 65536, plus each
// class boundary (object_size - 1, object_size, object_size + 1) and powers of
// two +-1, all capped at 65536.
std::vector<size_t> sweep_sizes() {
  std::set<size_t> s;
  for (size_t i = 0; i <= 1024; ++i) s.insert(i);
  for (size_t i = 1024; i <= 8192; i += 8) s.insert(i);
  for (size_t i = 8192; i <= 65536; i += 64) s.insert(i);
  for (size_t c : class_sizes()) {
    for (size_t d : {c - 1, c, c + 1})
      if (d <= 65536) s.insert(d);
  }
  for (size_t p = 2; p <= 65536; p *= 2)
    for (size_t d : {p - 1, p, p + 1})
      if (d <= 65536) s.insert(d);
  return {s.begin(), s.end()};
}

void check_no_overlap(const std::vector<Block>& blocks) {
  std::vector<std::pair<uintptr_t, uintptr_t>> r;
  r.reserve(blocks.size());
  for (const Block& b : blocks) {
    uintptr_t s = reinterpret_cast<uintptr_t>(b.p);
    r.push_back({s, s + std::max<size_t>(b.usable, 1)});
  }
  std::sort(r.begin(), r.end());
  for (size_t i = 1; i < r.size(); ++i)
    ASSERT_LE(r[i - 1].second, r[i].first)
        << "blocks overlap: [" << std::hex << r[i - 1].first << "," << r[i - 1].second << ") and ["
        << r[i].first << "," << r[i].second << ")";
}

void verify_all(const std::vector<Block>& blocks) {
  for (const Block& b : blocks) {
    EXPECT_EQ(magslab_usable_size(b.p), b.usable) << "usable size changed, size " << b.size;
    size_t bad = verify_block(b);
    ASSERT_EQ(bad, SIZE_MAX) << "block " << b.p << " of size " << b.size << " (usable " << b.usable
                             << ") corrupted at offset " << bad;
  }
}

TEST(AlignmentSweep, ClassesCoverTheSweep) {
  std::vector<size_t> c = class_sizes();
  ASSERT_FALSE(c.empty());
  for (size_t i = 1; i < c.size(); ++i) EXPECT_LT(c[i - 1], c[i]);
}

TEST(AlignmentSweep, EverySizeToSixtyFourKiB) {
  const std::vector<size_t> sizes = sweep_sizes();
  std::vector<Block> batch1, batch2;
  batch1.reserve(sizes.size());
  batch2.reserve(sizes.size());
  auto alloc_batch = [&](std::vector<Block>& out) {
    for (size_t sz : sizes) {
      void* p = magslab_malloc(sz);
      ASSERT_NE(p, nullptr) << "malloc(" << sz << ")";
      size_t align = sz >= 16 ? 16 : 8;
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u)
          << "malloc(" << sz << ") = " << p << " not " << align << "-aligned";
      size_t u = magslab_usable_size(p);
      ASSERT_GE(u, sz) << "usable_size too small for size " << sz;
      Block b{p, sz, u};
      fill_block(b);
      out.push_back(b);
    }
  };
  ASSERT_NO_FATAL_FAILURE(alloc_batch(batch1));
  ASSERT_NO_FATAL_FAILURE(alloc_batch(batch2));
  std::vector<Block> all = batch1;
  all.insert(all.end(), batch2.begin(), batch2.end());
  ASSERT_NO_FATAL_FAILURE(check_no_overlap(all));
  ASSERT_NO_FATAL_FAILURE(verify_all(all));

  // Free every other block of batch1, reallocate the same sizes (reuse of
  // just-freed memory), then verify everything again.
  for (size_t i = 0; i < batch1.size(); i += 2) magslab_free(batch1[i].p);
  std::vector<Block> batch3;
  for (size_t i = 0; i < batch1.size(); i += 2) {
    size_t sz = batch1[i].size;
    void* p = magslab_malloc(sz);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % (sz >= 16 ? 16 : 8), 0u);
    Block b{p, sz, magslab_usable_size(p)};
    ASSERT_GE(b.usable, sz);
    fill_block(b);
    batch3.push_back(b);
  }
  all.clear();
  for (size_t i = 1; i < batch1.size(); i += 2) all.push_back(batch1[i]);
  all.insert(all.end(), batch2.begin(), batch2.end());
  all.insert(all.end(), batch3.begin(), batch3.end());
  ASSERT_NO_FATAL_FAILURE(check_no_overlap(all));
  ASSERT_NO_FATAL_FAILURE(verify_all(all));
  for (const Block& b : all) magslab_free(b.p);
}

TEST(AlignmentSweep, AlignedAllocAndPosixMemalign) {
  const size_t sizes[] = {1, 7, 64, 100, 4096, 10000, 70000, size_t{1} << 20, size_t{5} << 20};
  for (size_t align = 1; align <= 65536; align *= 2) {
    std::vector<Block> live;
    for (size_t sz : sizes) {
      SCOPED_TRACE(testing::Message() << "alignment=" << align << " size=" << sz);
      errno = 0;
      void* a = magslab_aligned_alloc(align, sz);
      ASSERT_NE(a, nullptr) << "errno " << errno;
      ASSERT_EQ(reinterpret_cast<uintptr_t>(a) % align, 0u) << a;
      Block ba{a, sz, magslab_usable_size(a)};
      ASSERT_GE(ba.usable, sz);
      fill_block(ba);
      live.push_back(ba);

      if (align >= sizeof(void*)) {
        void* q = nullptr;
        ASSERT_EQ(magslab_posix_memalign(&q, align, sz), 0);
        ASSERT_NE(q, nullptr);
        ASSERT_EQ(reinterpret_cast<uintptr_t>(q) % align, 0u) << q;
        Block bq{q, sz, magslab_usable_size(q)};
        ASSERT_GE(bq.usable, sz);
        fill_block(bq);
        live.push_back(bq);
      }
    }
    ASSERT_NO_FATAL_FAILURE(check_no_overlap(live));
    ASSERT_NO_FATAL_FAILURE(verify_all(live));
    for (const Block& b : live) magslab_free(b.p);
  }
}

TEST(AlignmentSweep, AlignedBlocksMixedWithPlainOnes) {
  // Aligned requests interleaved with plain ones in the same classes must not
  // overlap each other.
  std::vector<Block> live;
  for (int round = 0; round < 4; ++round) {
    for (size_t align : {size_t{32}, size_t{64}, size_t{256}, size_t{4096}}) {
      for (size_t sz : {size_t{24}, size_t{64}, size_t{200}, size_t{3000}}) {
        void* a = magslab_aligned_alloc(align, sz);
        ASSERT_NE(a, nullptr);
        ASSERT_EQ(reinterpret_cast<uintptr_t>(a) % align, 0u);
        Block ba{a, sz, magslab_usable_size(a)};
        fill_block(ba);
        live.push_back(ba);
        void* m = magslab_malloc(sz);
        ASSERT_NE(m, nullptr);
        Block bm{m, sz, magslab_usable_size(m)};
        fill_block(bm);
        live.push_back(bm);
      }
    }
  }
  ASSERT_NO_FATAL_FAILURE(check_no_overlap(live));
  ASSERT_NO_FATAL_FAILURE(verify_all(live));
  for (const Block& b : live) magslab_free(b.p);
}

TEST(AlignmentSweep, LargeAndHugeSizes) {
  const size_t sizes[] = {40000,           100000,           size_t{1} << 20,
                          size_t{3} << 20, size_t{16} << 20, size_t{100} << 20};
  struct Big {
    uint8_t* p;
    size_t size;
  };
  std::vector<Big> live;
  auto key = [](const Big& b) { return mstest::block_key(0, b.p, b.size); };
  for (int round = 0; round < 2; ++round) {
    for (size_t sz : sizes) {
      auto* p = static_cast<uint8_t*>(magslab_malloc(sz));
      ASSERT_NE(p, nullptr) << "malloc(" << sz << ")";
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
      ASSERT_GE(magslab_usable_size(p), sz);
      Big b{p, sz};
      mstest::fill_pattern_sparse(p, sz, key(b));
      live.push_back(b);
    }
  }
  std::vector<Block> ranges;
  for (const Big& b : live) ranges.push_back(Block{b.p, b.size, b.size});
  ASSERT_NO_FATAL_FAILURE(check_no_overlap(ranges));
  for (const Big& b : live) {
    size_t bad = mstest::check_pattern_sparse(b.p, b.size, key(b));
    EXPECT_EQ(bad, mstest::kNoMismatch) << "block of " << b.size << " corrupted at " << bad;
  }
  for (const Big& b : live) magslab_free(b.p);
}

}  // namespace
