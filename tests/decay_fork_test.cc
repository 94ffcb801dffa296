// A fork() while the process starts its decay thread (small/decay.cc): the
// thread that claimed the start does not exist in the child, so the child
// must not keep that claim — its next second thread starts its own decay
// thread. Review finding (stop 33): the child kept "starting" for good, and
// neither it nor its descendants ever had a decay thread (an idle child kept
// what it had cached).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "magslab/magslab.h"
#include "small/decay.h"

namespace {

using namespace magslab;

void* allocate_once(void*) {
  magslab_free(magslab_malloc(64));  // a second thread's cache: the process is multithreaded
  return nullptr;
}

void run_second_thread() {
  pthread_t t;
  if (pthread_create(&t, nullptr, allocate_once, nullptr) != 0) _exit(3);
  pthread_join(t, nullptr);
}

// In the thread that starts the decay thread, between its claim and the
// thread's creation: fork, and report whether the child gets a decay thread.
int g_grandchild_status = -1;
void fork_mid_start() {
  decay::set_start_hook_for_testing(nullptr);  // once
  pid_t pid = fork();
  if (pid == 0) {
    alarm(10);
    run_second_thread();  // the child's second thread: it starts the child's decay thread
    _exit(decay::background_running() ? 0 : 1);
  }
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid) return;
  g_grandchild_status = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

TEST(DecayFork, AChildForkedWhileTheDecayThreadStartsStartsItsOwn) {
  // In a child of the test process: one thread, and no decay thread (a fork
  // child's state), so the next second thread starts one — and forks first.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);
    magslab_free(magslab_malloc(64));  // this thread's cache
    if (decay::background_running()) _exit(4);
    decay::set_start_hook_for_testing(fork_mid_start);
    run_second_thread();
    // 0: the grandchild got its decay thread; 1: it did not; the parent's start went on.
    _exit(g_grandchild_status == 0 && decay::background_running() ? 0 : 10 + g_grandchild_status);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st)) << "signal " << WTERMSIG(st);
  EXPECT_EQ(WEXITSTATUS(st), 0) << "11: the child forked mid-start never started a decay thread";
}

}  // namespace
