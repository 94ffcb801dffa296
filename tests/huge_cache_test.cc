// Issue #12, defect 3: the cache of freed huge mappings must not fill for
// good with mappings no later request fits. Two 16 MiB blocks freed once used
// to occupy it (32 MiB, its whole budget) forever: every 2 MiB malloc after
// that mapped and faulted fresh memory and every free unmapped it. Now the
// oldest entries make room for a new one, and entries unused for
// kHugeCacheMaxAgeNs are released at the next huge operation. Counted through
// the platform seam: map() calls, and a test clock.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "magslab/magslab.h"
#include "testing/fake_os.h"
#include "testing/no_decay.h"  // exact cache contents

namespace {

constexpr size_t MiB = size_t{1} << 20;

// The fake OS counting map() calls and a test clock (testing/fake_os.h), with
// the huge cache emptied before and after.
namespace fake_os = mstest::fake_os;
// These tests are about the shared cache: the per-thread slot that keeps a
// thread's last freed huge block in front of it (option huge_park,
// tests/huge_park_test.cc) is turned off, so every free reaches the cache.
struct Trimmed {
  Trimmed() {
    magslab_trim();
    magslab_option_set("huge_park", 0);
  }
  ~Trimmed() {
    magslab_option_set("huge_park", 1);
    magslab_trim();
  }
};
class Guard : Trimmed, public fake_os::Guard, public fake_os::ClockGuard {
 public:
  uint64_t maps() const { return fake_os::counts().maps; }
};

size_t huge_cached_mapped() {
  struct magslab_stats st;
  magslab_stats(&st);
  return st.mapped_bytes;
}

void pollute() {
  void* a = magslab_malloc(16 * MiB);
  void* b = magslab_malloc(16 * MiB);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  memset(a, 1, 4096);
  memset(b, 1, 4096);
  magslab_free(a);
  magslab_free(b);
}

TEST(HugeCache, PollutedCacheRecoversForOtherSizes) {
  Guard g;
  pollute();
  const uint64_t maps0 = g.maps();
  for (int i = 0; i < 200; ++i) {
    auto* p = static_cast<char*>(magslab_malloc(2 * MiB));
    ASSERT_NE(p, nullptr);
    p[0] = 1;
    p[2 * MiB - 1] = 2;
    magslab_free(p);
  }
  // The first 2 MiB block maps; its free evicts a 16 MiB entry to stay
  // within the budget; every later round reuses the cached 2 MiB mapping.
  EXPECT_LE(g.maps() - maps0, 2u) << "huge malloc/free still maps every time after pollution";
}

TEST(HugeCache, StaysWithinItsBudgetWhileEvicting) {
  Guard g;
  size_t base = huge_cached_mapped();
  // Many different sizes, each freed once: the cache keeps the newest.
  for (size_t mib = 2; mib <= 16; ++mib) {
    void* p = magslab_malloc(mib * MiB);
    ASSERT_NE(p, nullptr);
    magslab_free(p);
    EXPECT_LE(huge_cached_mapped() - base, 32 * MiB) << "after freeing " << mib << " MiB";
  }
  // The newest (16 MiB) is reused at once.
  const uint64_t maps0 = g.maps();
  void* p = magslab_malloc(15 * MiB);
  EXPECT_EQ(g.maps(), maps0);
  magslab_free(p);
}

TEST(HugeCache, UnusedEntriesAgeOut) {
  Guard g;
  size_t base = huge_cached_mapped();
  pollute();
  EXPECT_EQ(huge_cached_mapped() - base, 32 * MiB);
  // Time passes with no huge traffic; the next huge operation releases them.
  g.advance(uint64_t{10} * 1000 * 1000 * 1000);
  void* p = magslab_malloc(3 * MiB);
  ASSERT_NE(p, nullptr);
  magslab_free(p);
  EXPECT_LE(huge_cached_mapped() - base, 4 * MiB) << "stale entries were not released";
}

// A producer keeps 16 blocks of 4 MiB in flight and a consumer frees them in a
// burst: the cache must keep all 16 for the next round, since the program had
// that much live a moment ago. With the fixed 32 MiB limit it kept 8, so every
// round mapped 8 blocks afresh (and unmapped 8): in bench/micro's
// BM_cross_thread_large/4194304 one operation in 14 made a system call.
TEST(HugeCache, KeepsWhatTheProgramRecentlyHadLive) {
  Guard g;
  size_t base = huge_cached_mapped();
  void* v[16];
  for (int round = 0; round < 3; ++round) {
    const uint64_t maps0 = g.maps();
    for (auto& p : v) {
      p = magslab_malloc(4 * MiB);
      ASSERT_NE(p, nullptr);
      static_cast<char*>(p)[0] = 1;
    }
    if (round > 0) {
      EXPECT_EQ(g.maps(), maps0) << "round " << round << " mapped afresh";
    }
    for (void* p : v) magslab_free(p);
    EXPECT_LE(huge_cached_mapped() - base, 16 * 4 * MiB) << "more than the recent peak";
  }
}

// ... and the higher limit goes when that peak is more than two windows
// (huge_cache_ms) old: one block at a time of many sizes is then held to the
// options' 32 MiB again.
TEST(HugeCache, AHigherLimitLastsOnlyWhileThePeakIsRecent) {
  Guard g;
  size_t base = huge_cached_mapped();
  void* v[16];
  for (auto& p : v) p = magslab_malloc(4 * MiB);
  for (void* p : v) magslab_free(p);
  ASSERT_GT(huge_cached_mapped() - base, 32 * MiB);
  for (int i = 0; i < 3; ++i) {
    g.advance(uint64_t{2} * 1000 * 1000 * 1000);
    magslab_free(magslab_malloc(2 * MiB));  // a huge free: entries age, windows roll
  }
  for (size_t mib = 2; mib <= 16; ++mib) {
    void* p = magslab_malloc(mib * MiB);
    ASSERT_NE(p, nullptr);
    magslab_free(p);
    EXPECT_LE(huge_cached_mapped() - base, 32 * MiB) << "after freeing " << mib << " MiB";
  }
}

}  // namespace
