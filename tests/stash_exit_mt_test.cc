// A thread's stash (the full magazines of its own frees beyond loaded and
// previous: lib/small/thread_cache.cc, "The stash") goes back with the rest
// of its cache when it exits. Until this test only magslab-stress's live
// count saw an exit that left the stash in the pooled cache (stop 52's
// mutation campaign: retire_all without its drain_stash passed every unit
// test): its objects then stayed out of every cache until another thread
// reused the cache, and counted as live.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/size_classes.h"
#include "small/thread_cache.h"
#include "testing/magazines.h"
#include "testing/no_decay.h"  // a pass would take the stash itself, before the exit

namespace {

size_t live_objects() {
  struct magslab_stats st;
  magslab_stats(&st);
  return st.live_objects;
}

TEST(StashExit, AnExitingThreadsStashGoesBack) {
  const unsigned cls = magslab::class_of(64);
  magslab_trim_all();
  const size_t live0 = live_objects();
  size_t stashed = 0;
  std::thread t([&] {
    std::vector<void*> v;
    for (int i = 0; i < 20000; ++i) v.push_back(magslab_malloc(64));
    for (void* p : v) magslab_free(p);  // own frees: loaded, previous, then the stash
    stashed = mstest::stash_objects(magslab::t_cache, cls).size();
  });
  t.join();
  EXPECT_GT(stashed, 0u) << "the thread's frees overflowed into its stash";
  EXPECT_EQ(live_objects(), live0) << stashed << " objects were in the exited thread's stash";
}

}  // namespace
