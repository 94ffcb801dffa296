// A thread that exits while another thread forks: the slabs kept for it
// (slab.cc, "Partial slabs kept for their owner") must be shared in the
// child, where it does not exist. fork()'s prepare handler takes the registry
// lock, then every class lock; the child's handler disowns the kept slabs of
// every thread in the registry but the forking one. The exit used to leave
// the registry first and disown afterwards, class by class under each class
// lock: a fork whose handler took the class locks in between left the
// thread's kept slabs kept in the child for an owner that would never refill
// from them or disown them (found in review, stop 29). Now the exit disowns
// before it leaves the registry.
//
// The prepare handler's lock order is reproduced by hand: the class locks
// taken first, the exiting thread then blocked in its exit, the registry lock,
// a raw fork system call (the atfork handlers would take the held locks
// again), and in the child the calls api/fork.cc's child() makes that matter
// here (class locks released, then cache::reset_after_fork_child).
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "chunks/chunk_map.h"
#include "magslab/magslab.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "small/thread_cache.h"
#include "testing/sanitizers.h"

namespace {

using namespace magslab;

TEST(KeptSlabFork, AThreadExitingAcrossAForkLeavesNoKeptSlabInTheChild) {
#ifdef MS_SANITIZED
  GTEST_SKIP() << "a raw fork system call bypasses the sanitizer runtime's fork handling";
#else
  const size_t kSize = 368;
  const unsigned c = class_of(kSize);
  const size_t n = 4 * mag_cap(c);
  std::vector<void*> mine;
  mine.reserve(4 * n);
  std::atomic<int> phase{0};
  Slab* kept = nullptr;
  uint64_t tag = 0;
  std::thread x([&] {
    for (size_t i = 0; i < n; ++i) mine.push_back(magslab_malloc(kSize));
    tag = t_cache->owner_tag;
    const ThreadCache::Pair& pr = t_cache->cls[c];
    const size_t held = pr.loaded->count + pr.previous->count;
    for (size_t i = 0; i < held; ++i) mine.push_back(magslab_malloc(kSize));  // no refill
    for (void* o : mine) {
      Slab* s = pagemap::lookup_slab(reinterpret_cast<uintptr_t>(o));
      if (s->list == kListKept && s->owner == tag) kept = s;
    }
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
  });  // exits: on_thread_exit
  while (phase.load() != 1) std::this_thread::yield();
  if (kept == nullptr) {
    phase.store(2);
    x.join();
    FAIL() << "precondition: the thread's refills kept a slab";
  }
  // fork()'s prepare handler, up to the class locks, ahead of the exiting thread's disown.
  slab::lock_all_for_fork();
  phase.store(2);
  // The thread exits and waits for a class lock (in disown, or in whatever
  // else of its exit takes one).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  cache::lock_for_fork();
  pid_t pid = static_cast<pid_t>(syscall(SYS_fork));
  if (pid == 0) {
    // api/fork.cc child(), the parts that matter here.
    slab::unlock_all_after_fork();
    cache::reset_after_fork_child();
    const bool stranded = kept->list == kListKept && kept->owner == tag;
    std::fprintf(stderr, "child: slab %p list %u owner %#llx (exited thread's tag %#llx)\n",
                 static_cast<void*>(kept), kept->list, static_cast<unsigned long long>(kept->owner),
                 static_cast<unsigned long long>(tag));
    // Another thread's refill in the child: takes the shared head or carves.
    void* p = nullptr;
    slab::refill(c, &p, 1, owner_tag(uint64_t{1} << 30), 0, false);
    std::fprintf(stderr, "child: a refill took %s\n",
                 pagemap::lookup_slab(reinterpret_cast<uintptr_t>(p)) == kept
                     ? "the exited thread's slab"
                     : "another slab (the exited thread's is still kept for it)");
    _exit(stranded ? 1 : 0);
  }
  ASSERT_GT(pid, 0);
  slab::unlock_all_after_fork();
  cache::unlock_after_fork_parent();
  x.join();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "in the child, the slab kept for the thread that exited across the fork is still kept";
  EXPECT_NE(kept->list, kListKept) << "in the parent, the thread's disown ran";
  for (void* p : mine) magslab_free(p);
#endif
}

}  // namespace
