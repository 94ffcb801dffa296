/* fork() in a program that uses a library with fork handlers registered
 * before magslab's could be (tests/override/atfork_lib.c), under LD_PRELOAD of the
 * override (ctest override.atfork_first.*). Two threads
 * allocate through the library (inside its lock) while the main thread forks
 * 200 times; every child allocates in the library's child handler
 * (ATFORK_CHILD_ALLOCATES) and again in main. An alarm turns a hang into a
 * failure. Before magslab's constructor ran first (-z initfirst), the first
 * fork hung: magslab's prepare handler ran before the library's, which then
 * waited for its lock held by a thread waiting for magslab's class lock; and
 * a child's allocation in the library's child handler waited for magslab's
 * locks, released only by magslab's child handler, which runs after it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void* atfork_lib_make(size_t n);

static atomic_int stop;

static void* churn(void* arg) {
  unsigned long x = 0x9e3779b97f4a7c15ul ^ (unsigned long)arg;
  while (!atomic_load(&stop)) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
    size_t n = x % 2 ? (size_t)5 << 20 : (size_t)(x >> 8) % 200000 + 1;
    free(atfork_lib_make(n));
  }
  return NULL;
}

int main(void) {
  pthread_t t[2];
  for (long i = 0; i < 2; ++i) pthread_create(&t[i], NULL, churn, (void*)i);
  int bad = 0;
  alarm(60);
  for (int i = 0; i < 200; ++i) {
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
      alarm(10);
      void* volatile p = malloc(100);
      free(p);
      _exit(0);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) ++bad;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; ++i) pthread_join(t[i], NULL);
  printf("forks=200 failed=%d\n", bad);
  return bad != 0;
}
