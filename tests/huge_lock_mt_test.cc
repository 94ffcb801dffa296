// The large layer keeps huge blocks under a lock of its own, apart from the
// page heap's: huge malloc, realloc, usable_size and free complete while
// another thread holds the page-heap lock, and page runs (aligned beyond a
// page) are allocated and freed while another thread holds the huge-block
// lock. Neither ever waits for the other (the two locks are never held
// together, so they have no order to get wrong).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "chunks/page_heap.h"
#include "large/large.h"
#include "magslab/magslab.h"
#include "testing/threads.h"

namespace {

using namespace magslab;

constexpr size_t MiB = size_t{1} << 20;

// Runs `work` on another thread while `hold` is held here; true if it
// finished within a minute (it must not wait for the lock held).
template <class Hold, class Release, class Work>
bool completes_while_held(Hold hold, Release release, Work work) {
  mstest::Phase phase;
  std::thread t([&] {
    phase.wait_for(1);
    work();
    phase.set(2);
  });
  hold();
  phase.set(1);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (phase.get() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const bool done = phase.get() == 2;
  release();
  t.join();
  return done;
}

// Huge blocks: mapped (or taken from the huge cache), grown by mremap,
// measured and freed into the cache. true if every step worked.
bool huge_round_trips() {
  bool ok = true;
  for (int i = 0; i < 200; ++i) {
    auto* p = static_cast<char*>(magslab_malloc(8 * MiB));
    if (p == nullptr) return false;
    p[0] = p[8 * MiB - 1] = static_cast<char>(i);
    auto* q = static_cast<char*>(magslab_realloc(p, 12 * MiB));
    if (q == nullptr) {
      magslab_free(p);
      return false;
    }
    ok = ok && q[0] == static_cast<char>(i) && magslab_usable_size(q) >= 12 * MiB;
    magslab_free(q);
  }
  return ok;
}

// Page runs (aligned beyond a page: no size class): carved, measured, freed.
bool page_run_round_trips() {
  bool ok = true;
  for (int i = 0; i < 2000; ++i) {
    auto* p = static_cast<char*>(magslab_aligned_alloc(8192, 100000));
    if (p == nullptr) return false;
    std::memset(p, i, 100000);
    ok = ok && magslab_usable_size(p) >= 100000;
    magslab_free(p);
  }
  return ok;
}

TEST(HugeLockMt, HugeBlocksDoNotWaitForThePageHeap) {
  bool ok = false;
  const bool done = completes_while_held([] { heap::g_lock.lock(); }, [] { heap::g_lock.unlock(); },
                                         [&] { ok = huge_round_trips(); });
  EXPECT_TRUE(done) << "a huge block operation waited for the page-heap lock";
  EXPECT_TRUE(ok);
}

TEST(HugeLockMt, PageRunsDoNotWaitForTheHugeBlocks) {
  bool ok = false;
  const bool done =
      completes_while_held([] { large::lock_for_fork(); }, [] { large::unlock_after_fork(); },
                           [&] { ok = page_run_round_trips(); });
  EXPECT_TRUE(done) << "a page-run operation waited for the huge-block lock";
  EXPECT_TRUE(ok);
}

}  // namespace
