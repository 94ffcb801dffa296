// magslab::ConcurrentArena from many threads (runs under the tsan preset): every
// allocation is aligned, inside the region, and disjoint from every other —
// each thread fills its blocks with its own pattern and checks them after all
// threads are done; exhaustion is reached by all threads at once without a
// block past the end; reset and a second round reuse the region.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "magslab/magslab.hpp"
#include "testing/threads.h"

namespace {

struct Block {
  unsigned char* p;
  size_t n;
};

void fill_until_full(magslab::ConcurrentArena& a, int id, std::vector<Block>* out) {
  uint64_t seed = static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull + 1;
  for (;;) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    size_t n = 1 + (seed >> 33) % 300;
    size_t align = size_t{1} << ((seed >> 20) % 8);  // 1 .. 128
    auto* p = static_cast<unsigned char*>(a.allocate(n, align));
    if (p == nullptr) return;
    ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
    std::memset(p, id + 1, n);
    out->push_back(Block{p, n});
  }
}

TEST(ConcurrentArenaMt, DisjointAlignedBlocksUntilExhausted) {
  constexpr int kThreads = 6;
  constexpr size_t kCap = size_t{4} << 20;
  magslab::ConcurrentArena arena(kCap);
  for (int round = 0; round < 2; ++round) {
    std::vector<std::vector<Block>> blocks(kThreads);
    mstest::StartGate gate;
    std::vector<std::thread> ts;
    for (int i = 0; i < kThreads; ++i) {
      ts.emplace_back([&, i] {
        gate.wait();
        fill_until_full(arena, i, &blocks[i]);
      });
    }
    gate.open();
    for (auto& t : ts) t.join();
    EXPECT_EQ(arena.remaining(), 0u);
    // Every byte still holds its writer's pattern: no two blocks overlap.
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
    size_t total = 0;
    for (int i = 0; i < kThreads; ++i) {
      for (const Block& b : blocks[i]) {
        for (size_t k = 0; k < b.n; ++k) ASSERT_EQ(b.p[k], i + 1);
        ranges.emplace_back(reinterpret_cast<uintptr_t>(b.p),
                            reinterpret_cast<uintptr_t>(b.p) + b.n);
        total += b.n;
      }
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t k = 1; k < ranges.size(); ++k) ASSERT_LE(ranges[k - 1].second, ranges[k].first);
    EXPECT_LE(ranges.back().second - ranges.front().first, kCap);
    EXPECT_GT(total, kCap / 4);  // padding to 16 and alignment waste, not more
    arena.reset();
    EXPECT_EQ(arena.used(), 0u);
  }
}

}  // namespace
