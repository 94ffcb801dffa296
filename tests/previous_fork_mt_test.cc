// Another thread's previous magazine and inbox magazine across fork(): each
// slot is exchanged whole (take_previous, take_inbox), so in the child — where
// only the forking thread exists — they are consistent and go back
// (cache::reset_after_fork_child), as magslab_trim_all takes them from a
// running thread; only the thread's loaded and remote magazines, which its
// fast paths change without atomics, are lost with its cache (a bounded leak).
// Review finding (stop 34): the child lost the previous and inbox magazines of
// every other thread of the parent too.
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
#include "testing/no_decay.h"  // the parent's decay must not move the magazines first

// The fork prepare handler holds every class lock, past ThreadSanitizer's 64
// tracked locks per thread (as in fork_mt_test.cc).
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

using namespace magslab;

TEST(PreviousFork, AnotherThreadsPreviousAndInboxGoBackInTheChild) {
  const unsigned cls = class_of(400);
  const size_t cap = mag_cap(cls);
  std::atomic<int> phase{0};
  std::vector<void*> handed(4 * cap);
  size_t loaded = 0, previous = 0, remote = 0;
  ThreadCache* tc = nullptr;
  std::thread t([&] {
    // Its own frees: the loaded and the previous magazine fill (the rest, if
    // any, goes to its stash, which the child also takes back).
    std::vector<void*> own(2 * cap);
    for (void*& p : own) p = magslab_malloc(400);
    for (void*& p : handed) p = magslab_malloc(400);
    for (void* p : own) magslab_free(p);
    tc = t_cache;
    ThreadCache::Pair& pr = t_cache->cls[cls];
    loaded = pr.loaded->count;
    previous = pr.previous->count;
    remote = pr.remote->count;
    phase.store(1);
    while (phase.load() != 3) std::this_thread::yield();  // alive at the fork
  });
  struct Join {  // the thread ends however the test does (an ASSERT returns early)
    std::atomic<int>& phase;
    std::thread& t;
    ~Join() {
      phase.store(3);
      t.join();
    }
  } join{phase, t};
  while (phase.load() != 1) std::this_thread::yield();
  ASSERT_GT(previous, 0u) << "the test needs a previous magazine with objects in it";
  // This thread frees the other's objects until a full remote magazine of
  // them has gone to their owner's inbox (more would displace it: past a few,
  // send_to_owner sends them back to their slabs instead).
  size_t freed = 0;
  std::atomic_ref<Magazine*> inbox(tc->inbox[cls]);
  while (freed < handed.size() && inbox.load() == nullptr) magslab_free(handed[freed++]);
  ASSERT_NE(inbox.load(), nullptr) << "the test needs a magazine in the other thread's inbox";
  const size_t in_inbox = inbox.load()->count;
  const size_t still_live = handed.size() - freed;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);  // a lock the child inherited held would hang it: fail instead
    // Everything the child can reach goes back to the slabs: what stays out
    // is what it cannot reach, the other thread's loaded and remote magazines.
    magslab_trim_all();
    const size_t out = slab::counts(cls).carved_objects;
    const size_t lost = loaded + remote + still_live;
    if (out > lost)
      std::fprintf(
          stderr,
          "child: %zu objects out of their slabs; the other thread's loaded and remote "
          "magazines and the blocks still live held %zu (its previous %zu, its inbox %zu)\n",
          out, lost, previous, in_inbox);
    _exit(out <= lost ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  for (size_t i = freed; i < handed.size(); ++i) magslab_free(handed[i]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << mstest::child_end(status) << " (1: the child lost the previous or inbox magazine)";
}

}  // namespace
