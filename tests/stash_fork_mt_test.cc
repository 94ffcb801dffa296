// A thread's stash (small/thread_cache.cc, "The stash") across fork(): the
// child has only the forking thread, and the other threads' stashes — full
// magazines of free objects, published whole — go back to the depot in the
// child (cache::reset_after_fork_child) instead of being lost with their
// caches, as their loaded and previous magazines are (a bounded leak).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "small/thread_cache.h"
#include "testing/fork.h"
#include "testing/magazines.h"
#include "testing/no_decay.h"  // the parent's decay must not drain the stash first

// The fork prepare handler holds every class lock, past ThreadSanitizer's 64
// tracked locks per thread (as in fork_mt_test.cc).
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

using namespace magslab;

TEST(StashFork, AnotherThreadsStashGoesBackInTheChild) {
  const unsigned cls = class_of(400);
  std::atomic<int> phase{0};
  std::vector<void*> stashed;
  std::thread t([&] {
    std::vector<void*> v(6 * size_t{mag_cap(cls)});
    for (void*& p : v) p = magslab_malloc(400);
    for (void* p : v) magslab_free(p);
    stashed = mstest::stash_objects(t_cache, cls);
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();  // alive, holding its stash, at the fork
  });
  while (phase.load() != 1) std::this_thread::yield();
  ASSERT_FALSE(stashed.empty());
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);  // a lock the child inherited held would hang it: fail instead
    // Everything the child can reach back to the slabs: what stays out is
    // what the child cannot reach (the other thread's loaded and previous).
    magslab_trim_all();
    const size_t out = slab::counts(cls).carved_objects;
    if (out >= stashed.size())
      std::fprintf(stderr, "child: %zu objects out of their slabs, %zu were in the stash\n", out,
                   stashed.size());
    _exit(out < stashed.size() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  phase.store(2);
  t.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << mstest::child_end(status) << " (1: the child lost the stash)";
}

}  // namespace
