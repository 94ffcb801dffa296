// A decay pass retires idle threads' magazines (decay_stashes: their
// stashes, previous magazines and inboxes) to the depot or the slabs. It
// walks the threads' caches under the registry lock, which a new thread's
// first call (its cache's registration) and every thread's exit take; the
// retiring — class locks, slab bitmaps, perhaps the page heap — is done
// after the walk, outside it (stop 54's bug hunt: 500 idle threads whose
// stashes were full kept it 143 ms of CPU).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "platform/platform.h"
#include "small/magazine.h"
#include "small/thread_cache.h"
#include "testing/held_point.h"
#include "testing/no_decay.h"  // the test runs the passes itself

namespace {

using namespace magslab;
constexpr auto kHold = mstest::HeldPoint::kLimit;

// The first retire of the pass waits until a thread made meanwhile has
// started, allocated, freed and exited (at most kHold).
mstest::HeldPoint g_retire;
void held_retire(Magazine*) { g_retire.hold(); }

// An idle thread with a full stash of 64-byte blocks, alive while walk()
// runs on another thread and its first retire is held; meanwhile a thread
// is started, allocates, frees and exits. Returns whether it did so before
// the held retire gave up (kHold).
template <class Walk>
bool fresh_thread_runs_while_held(Walk walk) {
  g_retire.reset();
  std::mutex mu;
  std::condition_variable cv;
  bool release = false, ready = false;
  std::thread idle([&] {
    std::vector<void*> v(4096);
    for (void*& p : v) p = magslab_malloc(64);
    for (void* p : v) magslab_free(p);
    std::unique_lock<std::mutex> l(mu);
    ready = true;
    cv.notify_all();
    cv.wait(l, [&] { return release; });
  });
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return ready; });
  }
  cache::g_taken_retire_hook.store(held_retire);
  std::atomic<bool> walked{false};
  std::thread walker([&] {
    walk();
    walked.store(true);
  });
  while (!g_retire.reached() && !walked.load()) std::this_thread::yield();
  std::thread fresh([] {
    magslab_free(magslab_malloc(24));  // its cache is made (registered) here, or before
  });
  fresh.join();  // and its exit takes it out of the registry
  g_retire.release();
  walker.join();
  cache::g_taken_retire_hook.store(nullptr);
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  idle.join();
  EXPECT_GT(g_retire.calls(), 0) << "nothing was retired";
  return g_retire.in_time();
}

// Before, the pass retired each magazine under the registry lock: the new
// thread's registration waited until the held retire gave up after kHold,
// and the test failed.
TEST(DecayRegistryWaitMt, AThreadStartsAndExitsWhileAPassRetiresMagazines) {
  const uint64_t now = platform::now_ns();
  EXPECT_TRUE(fresh_thread_runs_while_held([now] {
    // The first call finds the stash used since the last pass; the second,
    // a second later, takes it.
    cache::decay_stashes(now);
    cache::decay_stashes(now + 1'000'000'000);
  })) << "a thread's start or exit waited for the pass's retiring (held "
      << kHold.count() << " s)";
}

// magslab_trim_all takes every thread's previous magazines, inboxes and
// stashes (take_previous_all) the same way: before, it too retired them
// under the registry lock, and this failed the same way.
TEST(DecayRegistryWaitMt, AThreadStartsAndExitsWhileTrimAllRetiresMagazines) {
  EXPECT_TRUE(fresh_thread_runs_while_held([] { magslab_trim_all(); }))
      << "a thread's start or exit waited for trim_all's retiring (held " << kHold.count() << " s)";
}

}  // namespace
