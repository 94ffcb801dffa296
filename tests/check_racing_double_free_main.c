// Check mode (LD_PRELOAD=libmagslab-check.so): two threads free one page run
// at once. The first free makes the block inaccessible (its quarantine); the
// second must be named a double free, whatever point of the first it meets.
// Until stop 51's bug hunt the first free's mprotect came before its
// quarantine entry, outside the ring's lock, and a second free in between
// found no entry and read the trailer of the inaccessible block: SIGSEGV, no
// line (2 of 4000 racing pairs). This program's mprotect (it interposes the C
// library's for the preloaded library) holds the first free right after the
// block is made inaccessible and lets the second one run meanwhile.
// A child does it; the parent prints "ok" when the child died of SIGABRT with
// the double free's line naming the block, "bad ..." otherwise.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void* volatile g_block;
static atomic_int g_armed;
static atomic_int g_go;

int mprotect(void* addr, size_t len, int prot) {
  int r = (int)syscall(SYS_mprotect, addr, len, prot);
  if (prot == PROT_NONE && addr == g_block && atomic_exchange(&g_armed, 0)) {
    atomic_store(&g_go, 1);  // the second free now, while the first is here
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return r;
}

static void* second_free(void* arg) {
  (void)arg;
  while (!atomic_load(&g_go)) {
  }
  free(g_block);
  return NULL;
}

static void child(void) {
  void* p = NULL;
  if (posix_memalign(&p, 8192, 100000) != 0) _exit(3);  // a page run: aligned beyond a page
  g_block = p;
  pthread_t t;
  if (pthread_create(&t, NULL, second_free, NULL) != 0) _exit(3);
  fprintf(stderr, "block %p\n", p);
  atomic_store(&g_armed, 1);
  free(p);
  pthread_join(t, NULL);
  _exit(0);  // both frees returned: nothing reported
}

int main(void) {
  int fds[2];
  if (pipe(fds) != 0) return 2;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    child();
  }
  close(fds[1]);
  char out[4096];
  size_t len = 0;
  ssize_t r;
  while (len < sizeof out - 1 && (r = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
    len += (size_t)r;
  out[len] = 0;
  int st = 0;
  waitpid(pid, &st, 0);
  void* block = NULL;
  char want[128] = "";
  if (sscanf(out, "block %p", &block) == 1)
    snprintf(want, sizeof want,
             "magslab: double free of %p (large block, 102400 B; requested 100000 B; already "
             "freed)\n",
             block);
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && want[0] != 0 && strstr(out, want) != NULL) {
    printf("ok\n");
    return 0;
  }
  printf("bad: status %#x, output:\n%s", st, out);
  return 1;
}
