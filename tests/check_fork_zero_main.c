/* Check mode's zero-size range (malloc(0)) is made under a lock on the
 * process's first malloc(0). A fork() while another thread made it left the
 * child with that lock held by a thread it does not have, and the child's own
 * first malloc(0) blocked for ever (review, stop 31). Run with
 * LD_PRELOAD="slow_zero_mmap.so libmagslab-check.so": the preload before the
 * library makes the range's reservation take 200 ms, so that the fork lands
 * inside it. Prints "child: malloc(0) returned" and exits 0, or says the
 * child hung (SIGALRM) and exits 1. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void* first_zero_malloc(void* arg) {
  (void)arg;
  void* volatile p = malloc(0); /* the process's first: makes the range */
  free(p);
  return NULL;
}

int main(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, first_zero_malloc, NULL) != 0) return 2;
  usleep(50000); /* the thread is inside the 200 ms reservation */
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) {
    alarm(10);
    void* volatile p = malloc(0);
    free(p);
    _exit(p != NULL ? 0 : 3);
  }
  pthread_join(t, NULL);
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return 2;
  if (WIFSIGNALED(st)) {
    printf("child killed by signal %d: it hung in malloc(0)\n", WTERMSIG(st));
    return 1;
  }
  if (WEXITSTATUS(st) == 0) printf("child: malloc(0) returned\n");
  return WEXITSTATUS(st);
}
