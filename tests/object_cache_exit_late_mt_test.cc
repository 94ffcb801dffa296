// Object caches and a thread whose first cache call comes in the last round of
// pthread key destructors (glibc runs PTHREAD_DESTRUCTOR_ITERATIONS rounds):
// its table, made then, arms the cache layer's exit key after glibc has passed
// it, and glibc runs no further round. Until stop 47 (a bug hunt) such a table
// stayed registered for good, its magazines full: 2000 such threads kept 2001
// tables and ~32 MiB of objects, which neither magslab_cache_reap nor
// magslab_cache_destroy got back. Now each table's thread holds a robust
// mutex that the kernel marks when the thread ends holding it, and a sweep
// (when the new threads' tables since the last one are half the registered
// ones, at least 32; and at every reap and destroy) gives such a table back as
// the exit destructor would have (docs/cpp.md, "Thread exit, destroy, fork").
#include <gtest/gtest.h>
#include <limits.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>

#include "magslab/magslab.h"
#include "magslab/magslab.hpp"
#include "testing/sanitizers.h"

namespace {

struct Node {
  char bytes[200];
};

constexpr int kKeys = 5;
constexpr int kThreads = 500;
magslab::ObjectCache<Node>* g_cache = nullptr;
pthread_key_t g_keys[kKeys];
std::atomic<long> g_uses{0};
thread_local int t_round[kKeys];

// Each key re-arms itself until the last round; in that round the last key's
// destructor makes the thread's first cache calls.
void late_destructor(void* v) {
  const int k = static_cast<int>(reinterpret_cast<intptr_t>(v)) - 1;
  const int r = ++t_round[k];
  if (k == kKeys - 1 && r == PTHREAD_DESTRUCTOR_ITERATIONS) {
    Node* a[64];
    for (auto& p : a) p = g_cache->acquire();
    for (auto& p : a) g_cache->release(p);
    g_uses.fetch_add(1);
  }
  if (r < PTHREAD_DESTRUCTOR_ITERATIONS) pthread_setspecific(g_keys[k], v);
}

void* thread_body(void*) {
  for (int k = 0; k < kKeys; ++k)
    pthread_setspecific(g_keys[k], reinterpret_cast<void*>(intptr_t{k + 1}));
  return nullptr;
}

TEST(ObjectCacheExitLate, AThreadWhoseFirstCacheCallIsInTheLastRoundLeavesNothingBehind) {
#ifdef MS_TSAN
  GTEST_SKIP() << "ThreadSanitizer cannot run intercepted calls in the last destructor round";
#endif
  g_uses.store(0);
  struct magslab_stats base;
  magslab_stats(&base);
  g_cache = new magslab::ObjectCache<Node>("late");
  // This thread uses the cache first: the cache layer's exit key is created
  // before the test's keys, so glibc passes it before theirs in each round.
  g_cache->release(g_cache->acquire());
  for (auto& k : g_keys) ASSERT_EQ(pthread_key_create(&k, late_destructor), 0);
  for (int i = 0; i < kThreads; ++i) {
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, nullptr, thread_body, nullptr), 0);
    ASSERT_EQ(pthread_join(t, nullptr), 0);
  }
  ASSERT_EQ(g_uses.load(), kThreads);
  // Each new thread's table may sweep (at least every 32 new ones): before
  // any reap, the tables of at most a few dozen such threads wait.
  EXPECT_LT(g_cache->stats().in_magazines, 40 * 81u) << "objects of exited threads' tables";
  g_cache->reap();
  const auto s = g_cache->stats();
  // This thread's loaded magazine, and the last thread's table if the reap
  // came before the kernel marked its mutex: a few magazines, not one a thread.
  EXPECT_LT(s.in_magazines, 4 * 64u) << "objects of exited threads' tables";
  EXPECT_LT(s.slabs, 8u);
  for (auto& k : g_keys) pthread_key_delete(k);
  delete g_cache;
  struct magslab_stats after;
  magslab_stats(&after);
  // The tables are heap blocks: this thread's (made here) and a few may remain.
  EXPECT_LT(after.live_objects, base.live_objects + 8) << "tables of exited threads";
}

}  // namespace
