// testing/fork.h: forking children of a busy process and judging their exit.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>

namespace mstest {

// How a child whose status waitpid() returned ended, for a failure message.
inline std::string child_end(int status) {
  if (WIFEXITED(status)) return "the child exited with " + std::to_string(WEXITSTATUS(status));
  if (!WIFSIGNALED(status)) return "the child did not end";
  return "the child was killed by signal " + std::to_string(WTERMSIG(status)) +
         (WTERMSIG(status) == SIGALRM ? " (deadlock: alarm fired)" : "");
}

// Forks n children, one at a time, each running child(), which must _exit(0)
// (a child that may deadlock sets an alarm(): it then dies of SIGALRM); adds
// a failure naming each child that did not, and counts them in *failures.
inline void fork_children(int n, void (*child)(), int* failures) {
  for (int f = 0; f < n; ++f) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) child();
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++*failures;
      ADD_FAILURE() << "fork " << f << ": " << child_end(status);
    }
  }
}

}  // namespace mstest
