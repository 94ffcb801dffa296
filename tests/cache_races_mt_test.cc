// Two races of the thread caches (lib/small/thread_cache.cc) that last
// nanoseconds, made to happen at a set point through test hooks
// (cache::g_swap_hook, cache::g_exit_hook): stop 52's mutation campaign found
// that no test failed when either step the race needs was removed.
//  * A malloc's swap takes the previous magazine out of its slot
//    (take_previous's exchange) before it looks inside; a magslab_trim_all()
//    on another thread meanwhile must find the slot empty. With a plain read
//    instead, both used the magazine: the swap handed out its objects and the
//    trim gave them back to the depot or the slabs.
//  * An exiting thread drains its inboxes a second time after its owner tag
//    ends (give_back): a full remote magazine another thread sent it between
//    the first drain and the tag's end. Without that drain the magazine stayed
//    in the pooled cache, its objects counted live and reusable by no one.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "platform/numa.h"
#include "small/size_classes.h"
#include "small/thread_cache.h"
#include "testing/no_decay.h"  // a pass would take previous magazines and inboxes itself

namespace {

using magslab::ThreadCache;
namespace cache = magslab::cache;

size_t live_objects() {
  struct magslab_stats st;
  magslab_stats(&st);
  return st.live_objects;
}

void wait_for(const std::atomic<bool>& flag) {
  while (!flag.load(std::memory_order_acquire)) std::this_thread::yield();
}

constexpr size_t kSize = 64;  // a small class's objects

std::atomic<bool> g_hooked{false};  // the hooked thread stopped at the hook
std::atomic<bool> g_go_on{false};   // the other thread acted: the hooked one goes on

TEST(CacheRaces, ATrimAllDuringAMallocsSwapLeavesThePreviousMagazineToIt) {
  static unsigned s_cls;
  s_cls = magslab::class_of(kSize);
  g_hooked = false;
  g_go_on = false;
  std::vector<void*> mine;
  std::atomic<bool> done{false};
  std::atomic<bool> finish{false};
  std::thread t([&] {
    // Own frees fill the loaded magazine, the previous one and the stash.
    std::vector<void*> v;
    for (int i = 0; i < 20000; ++i) v.push_back(magslab_malloc(kSize));
    for (void* p : v) magslab_free(p);
    cache::g_swap_hook = [](unsigned cls) {
      if (cls != s_cls || g_hooked.load(std::memory_order_relaxed)) return;
      g_hooked.store(true, std::memory_order_release);
      wait_for(g_go_on);  // the trim runs now, with the previous magazine out of its slot
    };
    // Mallocs empty the loaded magazine; the first slow path swaps the full
    // previous one in, and more mallocs take objects from it.
    for (int i = 0; i < 2000; ++i) mine.push_back(magslab_malloc(kSize));
    cache::g_swap_hook = nullptr;
    done.store(true, std::memory_order_release);
    wait_for(finish);  // keep this cache (and its magazines) alive while the main thread checks
    for (void* p : mine) magslab_free(p);
  });
  wait_for(g_hooked);
  magslab_trim_all();
  g_go_on.store(true, std::memory_order_release);
  wait_for(done);
  // Every object the thread holds is live: none may be handed out again.
  std::set<void*> held(mine.begin(), mine.end());
  EXPECT_EQ(held.size(), mine.size()) << "the thread got an object twice";
  std::vector<void*> more;
  size_t twice = 0;
  for (int i = 0; i < 20000; ++i) {
    void* p = magslab_malloc(kSize);
    more.push_back(p);
    twice += held.count(p);
  }
  EXPECT_EQ(twice, 0u) << "objects of the magazine the swap took were handed out again";
  for (void* p : more) magslab_free(p);
  finish.store(true, std::memory_order_release);
  t.join();
}

TEST(CacheRaces, AMagazineSentToAnExitingThreadAfterItsDrainGoesBack) {
  if (magslab::numa::nodes() != 1) GTEST_SKIP() << "remote magazines go to their owner on one node";
  constexpr int kObjects = 4096;
  static ThreadCache* s_exiting;
  static std::atomic<bool> s_sent;
  magslab_trim_all();
  const size_t live0 = live_objects();
  g_hooked = false;
  g_go_on = false;
  s_exiting = nullptr;
  s_sent = false;
  std::vector<void*> objs;
  std::atomic<bool> ready{false};
  // The other thread frees the exiting thread's objects while the exit waits
  // at the hook: its remote magazines fill and go to their owner's inbox.
  std::thread other([&] {
    wait_for(ready);
    wait_for(g_hooked);
    for (void* p : objs) magslab_free(p);
    g_go_on.store(true, std::memory_order_release);
  });
  std::thread exiting([&] {
    for (int i = 0; i < kObjects; ++i) objs.push_back(magslab_malloc(kSize));
    s_exiting = magslab::t_cache;
    cache::g_exit_hook = [](ThreadCache* tc) {
      if (tc != s_exiting) return;
      g_hooked.store(true, std::memory_order_release);
      wait_for(g_go_on);
      const unsigned cls = magslab::class_of(kSize);
      s_sent = std::atomic_ref<magslab::Magazine*>(tc->inbox[cls]).load() != nullptr;
    };
    ready.store(true, std::memory_order_release);
  });
  exiting.join();
  other.join();
  cache::g_exit_hook = nullptr;
  ASSERT_TRUE(s_sent) << "no remote magazine reached the exiting thread's inbox after its drain";
  EXPECT_EQ(live_objects(), live0) << "a magazine sent to the exited thread stayed in its cache";
}

}  // namespace
