// A PoolResource's big blocks (above 4 KiB) across fork(): their list is under
// a lock (lib/api/pool.cc), which the fork handlers did not take, so a child
// forked while another thread held it inherited it held and hung at its first
// big allocation from a pool (review, stop 31: 18 of 200 children). Children
// run under alarm(): one that hangs is killed, and the test fails at once.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "magslab/magslab.hpp"

// The fork handlers hold every lock magslab has, past ThreadSanitizer's 64
// tracked locks per thread, and the children allocate after a multithreaded
// fork (as in fork_mt_test.cc).
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0:die_after_fork=0"; }

namespace {

TEST(PoolFork, AChildForkedWhileAnotherThreadUsesBigBlocksCanUseThem) {
  magslab::pmr::PoolResource pool;
  std::atomic<bool> stop{false};
  std::thread t([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      void* p = pool.allocate(8192, 16);
      pool.deallocate(p, 8192, 16);
    }
  });
  int hung = 0, forks = 0;
  for (; forks < 200 && hung == 0; ++forks) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(5);
      void* p = pool.allocate(8192, 16);
      pool.deallocate(p, 8192, 16);
      _exit(0);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
      ++hung;
    else
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  stop.store(true);
  t.join();
  EXPECT_EQ(hung, 0) << "a child hung in PoolResource::allocate(8192) (fork " << forks << ")";
}

}  // namespace
