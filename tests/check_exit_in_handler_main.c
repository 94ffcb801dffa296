/* Check mode: exit() from a signal handler that interrupted the program's own
 * free (a common, if not async-signal-safe, way to stop on SIGTERM or SIGALRM)
 * must end the process. Run under LD_PRELOAD of libmagslab-check.so (ctest
 * check_exit_from_a_signal_handler_ends). 200 children each free and allocate
 * in a loop until a timer 1-10 ms later calls exit(0); a child that has not
 * ended 10 s later is killed and counted. Review finding (stop 33): the exit
 * check of the quarantine waited for the ring lock its own interrupted free
 * held, for ever (13 of 200 runs). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void on_alarm(int sig) {
  (void)sig;
  exit(0);
}

static void child(unsigned delay_us) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  void* keep[64];
  for (int i = 0; i < 64; ++i) keep[i] = malloc(48);
  struct itimerval it = {{0, 0}, {0, (suseconds_t)delay_us}};
  setitimer(ITIMER_REAL, &it, NULL);
  for (unsigned long i = 0;; ++i) {
    free(keep[i & 63]);
    keep[i & 63] = malloc(48);
  }
}

int main(void) {
  int hung = 0, bad = 0;
  for (int n = 0; n < 200; ++n) {
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) child(1000 + (unsigned)(n * 7919) % 9000);
    int st = 0;
    int waited_ms = 0;
    int killed = 0;
    while (waitpid(pid, &st, WNOHANG) == 0) {
      if (++waited_ms > 10000) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        killed = 1;
        break;
      }
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, NULL);
    }
    if (killed)
      ++hung;
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      ++bad;
  }
  printf("children=200 hung=%d bad=%d\n", hung, bad);
  return hung != 0 || bad != 0;
}
