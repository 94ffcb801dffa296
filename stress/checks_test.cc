// Unit tests of magslab-stress's overlap index (the byte pattern it uses is
// tested with testing/pattern.h, in testing/pattern_test.cc).
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "checks.h"

namespace {

using stress::OverlapIndex;

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
  } bad[] = {{0x20000, 100}, {0x20000, 1},      {0x1fff0, 17}, {0x20063, 10},
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

TEST(Overlap, FindContainingNamesTheLiveIntervalAnAddressIsIn) {
  OverlapIndex ix;
  OverlapIndex::Conflict c;
  const uintptr_t base = 0x7000000;
  ASSERT_TRUE(ix.insert(at(base), 3u << 20, &c));  // three regions
  ASSERT_TRUE(ix.insert(at(base + (4u << 20)), 64, &c));
  OverlapIndex::Conflict f;
  ASSERT_TRUE(ix.find_containing(base + (2u << 20) + 7, &f));  // in a later region of it
  EXPECT_EQ(f.addr, base);
  EXPECT_EQ(f.len, 3u << 20);
  ASSERT_TRUE(ix.find_containing(base + (4u << 20) + 63, &f));
  EXPECT_EQ(f.addr, base + (4u << 20));
  EXPECT_FALSE(ix.find_containing(base + (3u << 20), &f));  // just past the first
  EXPECT_FALSE(ix.find_containing(base + (4u << 20) + 64, &f));
  EXPECT_FALSE(ix.find_containing(base - 1, &f));
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

// A child forked while another thread updates the index keeps every interval
// of the shards nobody held, starts a held one again, and can use them all
// (200 forks: some land inside the other thread's insert or erase).
TEST(Overlap, AForkChildKeepsTheIntervalsOfShardsNobodyHeldAndCanUseEveryShard) {
  OverlapIndex ix;
  OverlapIndex::Conflict c;
  const uintptr_t kept = 0x7000000;                   // region 0x70: shard 48
  const uintptr_t busy = 0x7000000 + (5u << 20) + 8;  // region 0x75: shard 53
  ASSERT_TRUE(ix.insert(at(kept), 64, &c));
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    OverlapIndex::Conflict cc;
    while (!stop.load(std::memory_order_relaxed)) {
      if (ix.insert(at(busy), 16, &cc)) ix.erase(at(busy), 16);
    }
  });
  unsigned resets = 0;
  for (int i = 0; i < 200; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(10);  // a shard lock inherited held: a hang, not a pass
      unsigned reset = ix.after_fork_child();
      OverlapIndex::Conflict cc;
      bool kept_found = !ix.insert(at(kept + 8), 8, &cc) && cc.addr == kept;
      bool all_usable = true;
      for (uintptr_t r = 0; r < OverlapIndex::kShards; ++r) {
        uintptr_t a = (0x100u + r) << OverlapIndex::kRegionShift;
        all_usable = all_usable && ix.insert(at(a), 8, &cc) && ix.erase(at(a), 8);
      }
      _exit(!kept_found ? 2 : !all_usable ? 3 : reset > 1 ? 4 : reset == 1 ? 10 : 0);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st)) << "child " << i << " signal " << WTERMSIG(st);
    int code = WEXITSTATUS(st);
    ASSERT_TRUE(code == 0 || code == 10) << "child " << i << " exit " << code;
    resets += code == 10;
  }
  stop = true;
  churn.join();
  std::printf("forks that found the churning shard held: %u of 200\n", resets);
}

}  // namespace
