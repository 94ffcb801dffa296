/* Review finding (stop 34): the statistics kept a struct magslab_stats
 * (13 KiB: 128 classes) on the stack, once or twice per call, so mallinfo2,
 * mallinfo, malloc_info, malloc_stats, magslab_stats_get/_json/_print and
 * the show_stats exit report overflowed a thread's stack of PTHREAD_STACK_MIN
 * (16 KiB; glibc's own need far less): SIGSEGV. Each is called here on a thread
 * with that stack, and the last one calls exit() there, so that the exit
 * report (the test sets MAGSLAB_SHOW_STATS) runs on it too. Prints "OK" and
 * exits 0 on glibc and on magslab alike.
 *
 * Stop 50's bug hunt: that exit() comes 4 KiB deep, with blocks leaked from a
 * few sites, so that check mode's leak report (the test sets
 * MAGSLAB_LEAK_REPORT) runs there with its lines: it kept the order of its
 * 1024 sites on the stack (4 KiB; 8.5 KiB in all) and died of SIGSEGV.
 * glibc's exit needs less than 3 KiB there. */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* mallinfo: still called */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int step;
static void* volatile leaked[3];

/* Leaks from sites of their own (the leak report's lines). */
__attribute__((noinline)) static void leak_a(void) { leaked[0] = malloc(24); }
__attribute__((noinline)) static void leak_b(void) { leaked[1] = malloc(300); }
__attribute__((noinline)) static void leak_c(void) { leaked[2] = malloc(5000); }

/* exit() with 4 KiB of the stack in use below this thread's start. */
__attribute__((noinline)) static void exit_deep(void) {
  volatile char used[4096];
  for (size_t i = 0; i < sizeof used; i += 64) used[i] = (char)i;
  printf("OK\n");
  fflush(stdout);
  exit(used[64] == 64 ? 0 : 5); /* the exit report, on this thread's stack */
}

static void* body(void* arg) {
  (void)arg;
  void* volatile p = malloc(100);
  free(p);
  int devnull = open("/dev/null", O_WRONLY);
  switch (step) {
    case 0: {
      struct mallinfo2 mi = mallinfo2();
      if (mi.arena == (size_t)-1) puts("?");
      break;
    }
    case 1: {
      struct mallinfo mi = mallinfo();
      if (mi.arena == -1) puts("?");
      break;
    }
    case 2: {
      FILE* f = fdopen(dup(devnull), "w");
      malloc_info(0, f);
      fclose(f);
      break;
    }
    case 3: {
      int saved = dup(2);
      dup2(devnull, 2);
      malloc_stats();
      dup2(saved, 2);
      close(saved);
      break;
    }
    case 4: { /* magslab's own, when it is there */
      size_t (*get)(void*, size_t) =
          (size_t(*)(void*, size_t))dlsym(RTLD_DEFAULT, "magslab_stats_get");
      size_t (*json)(char*, size_t) =
          (size_t(*)(char*, size_t))dlsym(RTLD_DEFAULT, "magslab_stats_json");
      int (*print)(int, int) = (int (*)(int, int))dlsym(RTLD_DEFAULT, "magslab_stats_print");
      static char buf[1 << 16];
      if (get != NULL) get(buf, sizeof buf);
      if (json != NULL) json(buf, sizeof buf);
      if (print != NULL) print(devnull, 0), print(devnull, 1);
      break;
    }
    case 5:
      close(devnull);
      leak_a();
      leak_b();
      leak_c();
      exit_deep();
  }
  close(devnull);
  return NULL;
}

int main(void) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (pthread_attr_setstacksize(&attr, PTHREAD_STACK_MIN) != 0) return 2;
  for (step = 0; step <= 5; ++step) {
    pthread_t t;
    if (pthread_create(&t, &attr, body, NULL) != 0) return 3;
    pthread_join(t, NULL);
  }
  return 4; /* step 5 exits */
}
