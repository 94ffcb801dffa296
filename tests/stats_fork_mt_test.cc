// Statistics in a fork() child. The child loses the other threads' loaded and
// remote magazines (cache::reset_after_fork_child: their fast paths change
// them without atomics; a bounded leak). Their objects were free in the
// parent: in the child they are no more handed out than there, so they must
// not read as live, and the remote frees counted in the parent must not go
// back. Found by stop 51's bug hunt (statistics): a child forked while four
// threads each held a refilled magazine of 112 B objects read 65 live objects
// where the parent read 5 (the 60 in their magazines), and kept them after
// magslab_trim_all.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/size_classes.h"
#include "testing/fork.h"
#include "testing/no_decay.h"  // the parent's decay must not move the magazines meanwhile

// The fork prepare handler holds every class lock, past ThreadSanitizer's 64
// tracked locks per thread (as in fork_mt_test.cc).
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

using namespace magslab;

struct magslab_stats g_parent, g_child;  // 13 KiB each: off the stack

TEST(StatsFork, TheOtherThreadsLostMagazinesAreNotLiveInTheChild) {
  constexpr size_t kSize = 400, kRemoteSize = 1000;
  const unsigned cls = class_of(kSize), rcls = class_of(kRemoteSize);
  // The other thread's remote magazine gets these: freed there, they are
  // this thread's objects (of a class the other thread does not refill).
  std::vector<void*> mine(8);
  for (void*& p : mine) p = magslab_malloc(kRemoteSize);
  std::atomic<int> phase{0};
  void* held = nullptr;
  std::thread t([&] {
    held = magslab_malloc(kSize);          // a refill: the rest of it stays in its loaded magazine
    for (void* p : mine) magslab_free(p);  // into its remote magazine
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();  // alive at the fork
    magslab_free(held);
  });
  while (phase.load() != 1) std::this_thread::yield();
  magslab_stats(&g_parent);
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(20);  // a lock the child inherited held would hang it: fail instead
    magslab_stats(&g_child);
    const magslab_class_stats &p = g_parent.classes[cls], &c = g_child.classes[cls];
    int bad = 0;
    if (c.live_objects != p.live_objects || g_child.live_objects != g_parent.live_objects ||
        g_child.live_bytes != g_parent.live_bytes) {
      std::fprintf(stderr,
                   "child: %zu live objects of %zu B (%zu in all, %zu B), the parent %zu (%zu, "
                   "%zu B)\n",
                   c.live_objects, p.object_size, g_child.live_objects, g_child.live_bytes,
                   p.live_objects, g_parent.live_objects, g_parent.live_bytes);
      bad = 1;
    }
    const magslab_class_stats &pr = g_parent.classes[rcls], &cr = g_child.classes[rcls];
    if (cr.live_objects != pr.live_objects) {
      std::fprintf(stderr, "child: %zu live objects of %zu B, the parent %zu\n", cr.live_objects,
                   pr.object_size, pr.live_objects);
      bad = 1;
    }
    if (cr.remote_frees < pr.remote_frees) {
      std::fprintf(stderr, "child: %zu remote frees of %zu B, the parent %zu\n", cr.remote_frees,
                   pr.object_size, pr.remote_frees);
      bad = 1;
    }
    // Everything the child can reach goes back; what it lost stays out of
    // the statistics still.
    magslab_trim_all();
    magslab_stats(&g_child);
    if (g_child.classes[cls].live_objects != p.live_objects) {
      std::fprintf(stderr, "child after trim_all: %zu live objects of %zu B, the parent %zu\n",
                   g_child.classes[cls].live_objects, p.object_size, p.live_objects);
      bad = 1;
    }
    _exit(bad);
  }
  phase.store(2);
  t.join();
  ASSERT_GE(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << mstest::child_end(status) << " (1: the child's statistics count the lost magazines)";
  // The parent's ground truth: the other thread's block (freed now) aside,
  // this test holds none of the class.
  EXPECT_GE(g_parent.classes[cls].live_objects, 1u);
  EXPECT_GE(g_parent.classes[rcls].remote_frees, mine.size()) << "the test needs a remote magazine";
}

}  // namespace
