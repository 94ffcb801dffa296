/* The decay thread where the OS refuses its timed futex waits (a seccomp
 * filter's ENOSYS, as a sandbox's profile or a kernel without futexes gives,
 * or the errno named by the first argument, e.g. EAGAIN): it must still sleep
 * between passes. Until stop 52's bug hunt the refused wait returned at once
 * and the thread ran passes back to back for good, about a CPU's worth in an
 * idle process (0.99 s of CPU in 3 s of sleep); with EAGAIN (what the kernel
 * returns when the word no longer holds the value waited for) until stop 53.
 * The filter refuses only FUTEX_WAIT_PRIVATE with a timeout, which glibc's
 * own locks and joins do not use. Prints the CPU time the process used while
 * main slept, and fails above 4 % of the sleep. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../testing/decay_thread.h"
#include "magslab/magslab.h"

static void* volatile sink; /* volatile: the compiler keeps each allocation */

/* futex(FUTEX_WAIT_PRIVATE) with a timeout: err; everything else allowed. */
static int refuse_timed_futex_waits(int err) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FUTEX_WAIT_PRIVATE, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3]) + 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static void* worker(void* arg) {
  (void)arg;
  /* The second thread's first allocation starts the decay thread; the frees
   * leave it some work before it parks. */
  void* v[2000];
  for (int i = 0; i < 2000; ++i) v[i] = magslab_malloc(16 + (size_t)i * 24);
  for (int i = 0; i < 2000; ++i) magslab_free(v[i]);
  return NULL;
}

static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char** argv) {
  if (refuse_timed_futex_waits(argc > 1 ? atoi(argv[1]) : ENOSYS) != 0) {
    /* No seccomp here (an old kernel, a sandbox that forbids it): nothing to show. */
    printf("SKIP: no seccomp filter (%s)\n", strerror(errno));
    return 0;
  }
  sink = magslab_malloc(100);
  magslab_free(sink);
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) return 1;
  pthread_join(t, NULL);
  for (int i = 0; i < 5000 && !decay_thread_runs(); ++i) usleep(1000);
  if (!decay_thread_runs()) {
    printf("FAIL: no decay thread\n");
    return 1;
  }
  const double before = cpu_seconds();
  usleep(1500 * 1000);
  const double used = cpu_seconds() - before;
  printf("%s: %.3f s of CPU in 1.5 s idle\n", used < 0.06 ? "OK" : "FAIL", used);
  return used < 0.06 ? 0 : 1;
}
