// Tests for depot::hollow_empty() against the threads that take empty
// magazines meanwhile (small/depot.h: no thread blocks another for long), and
// for what it counts when the OS refuses its madvise (stop 54's bug hunt).
// The OS is replaced through the platform seam (platform::set_ops_for_testing):
// a decommit that holds the hollowing inside its madvise step until the test
// lets it go, and a decommit that is refused.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "platform/platform.h"
#include "small/depot.h"
#include "small/magazine.h"
#include "small/size_classes.h"
#include "testing/held_point.h"
#include "testing/magazines.h"
#include "testing/no_decay.h"  // no pass hollows meanwhile, nor uses the seam

namespace {

using namespace magslab;
constexpr auto kHold = mstest::HeldPoint::kLimit;

// kMags fresh magazines of class cls, every page of them touched, pushed onto
// the depot's empty stack: a hollowing finds runs of them back to back.
void push_fresh_empties(unsigned cls, size_t n) {
  std::vector<Magazine*> mags;
  for (size_t i = 0; i < n; ++i) {
    Magazine* m = depot::get_empty(cls);
    ASSERT_NE(m, nullptr);
    for (uint32_t k = 0; k < m->cap; ++k) m->objs[k] = m;
    mags.push_back(m);
  }
  for (Magazine* m : mags) depot::push_empty(cls, m);
}

// The decommit that holds a hollowing in its madvise step, until the test
// says a taker got its magazine (at most kHold). Later calls go
// straight to the OS.
mstest::HeldPoint g_madvise;
bool held_decommit(void* addr, size_t size) {
  g_madvise.hold();
  return platform::os_ops().decommit(addr, size);
}

// A thread that wants an empty magazine while a hollowing (magslab_trim_all,
// or a decay pass) is in its madvise calls gets one without waiting for them.
// Before, get_empty() found the depot's stacks emptied by the hollowing and
// waited for the hollow lists' lock, held for the whole pass (the sort and
// every madvise: 6.2 ms for 30,000 magazines): here it waited until the held
// madvise gave up after kHold, and the test failed.
TEST(DepotHollowMt, ATakerOfAnEmptyMagazineDoesNotWaitForAHollowingsMadvise) {
  const unsigned hollowed = class_of(40), taken = class_of(48);
  depot::hollow_empty();  // whatever earlier tests left
  // Some hollow magazines on the lists (get_empty looks there, under their
  // lock, once its class's stack is empty)...
  push_fresh_empties(hollowed, 32);
  ASSERT_GT(depot::hollow_empty(), 0u);
  // ...and more empty ones for the held hollowing to give back.
  push_fresh_empties(taken, 32);

  const platform::PlatformOps ops{platform::os_ops().map, platform::os_ops().unmap, held_decommit,
                                  platform::os_ops().remap, platform::os_ops().map_at};
  platform::set_ops_for_testing(&ops);
  std::thread hollowing([] { depot::hollow_empty(); });
  g_madvise.wait_reached();
  // The hollowing holds every empty magazine of the depot and is in its
  // madvise step: this one is a new one or a hollow one.
  Magazine* m = depot::get_empty(taken);
  g_madvise.release();
  hollowing.join();
  platform::set_ops_for_testing(nullptr);
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(g_madvise.in_time())
      << "get_empty() waited for the hollowing's madvise (held " << kHold.count() << " s)";
  EXPECT_EQ(m->count, 0u);
  EXPECT_EQ(m->cls, taken);
  EXPECT_EQ(m->cap, kClasses[taken].mag_cap);
  m->objs[m->cap - 1] = m;  // usable
  depot::push_empty(taken, m);
  // Every magazine hollowed meanwhile is on the lists: taken again whole.
  std::vector<Magazine*> again;
  for (int i = 0; i < 64; ++i) {
    Magazine* x = depot::get_empty(i % 2 ? taken : hollowed);
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(x->count, 0u);
    x->objs[x->cap - 1] = x;
    again.push_back(x);
  }
  for (Magazine* x : again) depot::push_empty(x->cls, x);
}

bool refused_decommit(void*, size_t) { return false; }

// madvise refused (a seccomp filter, or the seam's fault injection): the
// pages stay resident, and hollow_empty() (so magslab_trim_all) does not
// count them as given back. It counted them: 65,536 bytes here, where no
// page went back.
TEST(DepotHollowMt, ARefusedDecommitIsNotCountedAsGivenBack) {
  const unsigned cls = class_of(40);
  depot::hollow_empty();
  push_fresh_empties(cls, 32);
  const platform::PlatformOps ops{platform::os_ops().map, platform::os_ops().unmap,
                                  refused_decommit, platform::os_ops().remap,
                                  platform::os_ops().map_at};
  platform::set_ops_for_testing(&ops);
  const size_t given = depot::hollow_empty();
  platform::set_ops_for_testing(nullptr);
  EXPECT_EQ(given, 0u) << "bytes counted as given back while madvise was refused";
  // The magazines are usable (their pages never went).
  std::vector<Magazine*> again;
  for (int i = 0; i < 32; ++i) {
    Magazine* x = depot::get_empty(cls);
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(x->count, 0u);
    x->objs[x->cap - 1] = x;
    again.push_back(x);
  }
  for (Magazine* x : again) depot::push_empty(cls, x);
}

}  // namespace
