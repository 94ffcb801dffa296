/* Override test: fork() while other threads allocate.
 *
 * 8 threads malloc/free (and pass blocks to each other) without pause while
 * the main thread forks 100 times. Each child, under alarm(), allocates and
 * frees 100,000 objects with plain malloc/free, frees blocks inherited from
 * the parent, starts a thread that allocates, and exits 0. A child that
 * deadlocks in the allocator (a lock held by a thread that does not exist in
 * the child) is killed by SIGALRM, and the parent reports it.
 *
 * Usage: fork_threads --expect=glibc|magslab */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { kThreads = 8, kForks = 100, kChildObjects = 100000, kChildAlarmSeconds = 20 };

static atomic_int g_stop;
static _Atomic(void*) g_exchange[64];
static atomic_ulong g_ops;

static uint64_t rng(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static size_t pick(uint64_t x) {
  switch (x % 8) {
    case 0:
      return 1 + (x >> 8) % 16384;
    case 1:
      return (x >> 8) % 64 == 0 ? 1 + (x >> 16) % (3u << 20) : 1 + (x >> 8) % 2048;
    default:
      return 1 + (x >> 8) % 128;
  }
}

/* Blocks carry their size and a check byte pattern in the first 16 bytes. */
static void* make_block(size_t n, uint64_t tag) {
  if (n < 16) n = 16;
  unsigned char* p = malloc(n);
  if (!p) return NULL;
  memcpy(p, &n, sizeof n);
  memcpy(p + 8, &tag, sizeof tag);
  p[n - 1] = (unsigned char)tag;
  return p;
}
static int check_block(void* v) {
  unsigned char* p = v;
  size_t n;
  uint64_t tag;
  memcpy(&n, p, sizeof n);
  memcpy(&tag, p + 8, sizeof tag);
  return p[n - 1] == (unsigned char)tag;
}

static void* churn(void* arg) {
  uint64_t s = 0x1234567ull * (uintptr_t)arg + 99;
  void* window[32] = {0};
  while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
    uint64_t x = rng(&s);
    unsigned i = x % 32;
    if (window[i]) {
      if (!check_block(window[i])) {
        fprintf(stderr, "fork_threads: corrupt block in parent thread\n");
        abort();
      }
      free(window[i]);
    }
    window[i] = make_block(pick(rng(&s)), x);
    /* Hand a block to another thread through a shared slot. */
    if (x % 16 == 0) {
      void* mine = make_block(pick(rng(&s)), x);
      void* theirs = atomic_exchange(&g_exchange[(x >> 20) % 64], mine);
      if (theirs) {
        if (!check_block(theirs)) abort();
        free(theirs);
      }
    }
    if (x % 97 == 0) {
      void* r = realloc(make_block(64, x), 1 + (x >> 12) % 20000);
      free(r);
    }
    atomic_fetch_add_explicit(&g_ops, 1, memory_order_relaxed);
  }
  for (int i = 0; i < 32; ++i) free(window[i]);
  return NULL;
}

static void* child_thread(void* arg) {
  (void)arg;
  uint64_t s = 77;
  for (int i = 0; i < 10000; ++i) {
    void* p = make_block(pick(rng(&s)), (uint64_t)i);
    if (!check_block(p)) return (void*)1;
    free(p);
  }
  return NULL;
}

static void child(int round, void** inherited, int n_inherited) {
  alarm(kChildAlarmSeconds);
  /* Blocks allocated by the parent before fork are ours to free. */
  for (int i = 0; i < n_inherited; ++i) {
    if (!check_block(inherited[i])) _exit(10);
    free(inherited[i]);
  }
  /* Blocks other threads left in the exchange slots too (the copies of them). */
  for (int i = 0; i < 64; ++i) {
    void* p = atomic_exchange(&g_exchange[i], NULL);
    if (p) {
      if (!check_block(p)) _exit(11);
      free(p);
    }
  }
  uint64_t s = 0xABCDEFull + (uint64_t)round;
  void* window[64] = {0};
  for (int i = 0; i < kChildObjects; ++i) {
    unsigned k = (unsigned)(rng(&s) % 64);
    if (window[k]) {
      if (!check_block(window[k])) _exit(12);
      free(window[k]);
    }
    window[k] = make_block(pick(rng(&s)), (uint64_t)i);
    if (!window[k]) _exit(13);
  }
  for (int i = 0; i < 64; ++i) free(window[i]);
  pthread_t t;
  void* res = (void*)1;
  if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, &res) != 0 || res)
    _exit(14);
  exit(0);
}

int main(int argc, char** argv) {
  const char* expect = NULL;
  for (int i = 1; i < argc; ++i)
    if (strncmp(argv[i], "--expect=", 9) == 0) expect = argv[i] + 9;
  int magslab = dlsym(RTLD_DEFAULT, "magslab_malloc") != NULL;
  if (!expect || magslab != (strcmp(expect, "magslab") == 0)) {
    fprintf(stderr, "fork_threads: expected %s but magslab_malloc is %s\n",
            expect ? expect : "(no --expect)", magslab ? "present" : "absent");
    return 3;
  }

  pthread_t ts[kThreads];
  for (long t = 0; t < kThreads; ++t) pthread_create(&ts[t], NULL, churn, (void*)t);

  int ok = 0, deadlocked = 0, failed = 0;
  uint64_t s = 4242;
  for (int round = 0; round < kForks; ++round) {
    /* Let the threads get going between forks. */
    unsigned long before = atomic_load(&g_ops);
    while (atomic_load(&g_ops) - before < 2000) sched_yield();

    void* inherited[100];
    int n = (int)(rng(&s) % 100);
    for (int i = 0; i < n; ++i) inherited[i] = make_block(pick(rng(&s)), (uint64_t)i * 3);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0) child(round, inherited, n);
    for (int i = 0; i < n; ++i) free(inherited[i]);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) {
      perror("waitpid");
      return 1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++ok;
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
      ++deadlocked;
      fprintf(stderr, "fork_threads: child %d hung for %d s (deadlock?), killed by SIGALRM\n",
              round, kChildAlarmSeconds);
    } else {
      ++failed;
      if (WIFSIGNALED(status))
        fprintf(stderr, "fork_threads: child %d killed by signal %d\n", round, WTERMSIG(status));
      else
        fprintf(stderr, "fork_threads: child %d exited with status %d\n", round,
                WEXITSTATUS(status));
    }
  }
  atomic_store(&g_stop, 1);
  for (int t = 0; t < kThreads; ++t) pthread_join(ts[t], NULL);
  for (int i = 0; i < 64; ++i) free(atomic_exchange(&g_exchange[i], NULL));

  printf("forks %d: exited 0: %d, deadlocked: %d, failed: %d\n", kForks, ok, deadlocked, failed);
  return ok == kForks ? 0 : 1;
}
