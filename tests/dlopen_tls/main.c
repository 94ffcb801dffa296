/* dlopen_tls <libmagslab.so> <probe_ie.so> <tls_heavy.so>...
 *
 * Issue #17: libmagslab.so loaded with dlopen() must work even after other
 * libraries took glibc's static TLS surplus (where an initial-exec TLS
 * variable fails with "cannot allocate memory in static TLS block").
 *  1. two threads are started first: they exist before magslab is loaded;
 *  2. the TLS-heavy libraries are dlopen()ed (tls_heavy.c): some with a
 *     1 MiB __thread array (dynamic TLS), some with an initial-exec one of
 *     decreasing size (1 KiB down to 8 B) that only fits in the static TLS
 *     surplus; those that no longer fit fail for want of static TLS, and at
 *     least one must;
 *  3. the probe (8 bytes of initial-exec TLS) must now fail to load: the
 *     situation is the one that breaks initial-exec TLS;
 *  4. libmagslab.so is dlopen()ed and used from the two old threads and four
 *     new ones: blocks allocated in one thread are freed in another, and
 *     the stats must balance at the end.
 * Prints "OK" and exits 0, or names what failed and exits 1. */
#define _GNU_SOURCE /* pthread_barrier_t, RTLD_DEFAULT */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magslab/magslab.h"

static void* (*ms_malloc)(size_t);
static void (*ms_free)(void*);
static void (*ms_stats)(struct magslab_stats*);

enum { kThreads = 6, kBlocks = 20000 };
static void* g_handoff[kThreads][kBlocks];
static pthread_barrier_t g_loaded, g_allocated;

static int fail(const char* what, const char* detail) {
  printf("FAIL: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static void* worker(void* arg) {
  long t = (long)arg;
  if (t < 2) pthread_barrier_wait(&g_loaded); /* the old threads wait for the dlopen */
  for (int i = 0; i < kBlocks; ++i) {
    size_t n = 8 + (size_t)((i * 37 + t * 101) % 3000);
    unsigned char* p = ms_malloc(n);
    if (p == NULL) fail("magslab_malloc returned NULL", NULL);
    memset(p, (int)t, n);
    g_handoff[t][i] = p;
  }
  pthread_barrier_wait(&g_allocated);
  /* Free the blocks of the next thread: cross-thread frees. */
  long other = (t + 1) % kThreads;
  for (int i = 0; i < kBlocks; ++i) {
    unsigned char* p = g_handoff[other][i];
    if (p[0] != (unsigned char)other) fail("a block was overwritten", NULL);
    ms_free(p);
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 4) fail("usage: dlopen_tls <libmagslab.so> <probe_ie.so> <tls_heavy.so>...", NULL);
  pthread_barrier_init(&g_loaded, NULL, 3);
  pthread_barrier_init(&g_allocated, NULL, kThreads);
  pthread_t th[kThreads];
  for (long t = 0; t < 2; ++t) pthread_create(&th[t], NULL, worker, (void*)t);

  int loaded = 0;
  static char why[512];
  for (int i = 3; i < argc; ++i) {
    void* h = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
      snprintf(why, sizeof why, "%s", dlerror());
      if (strstr(why, "static TLS") == NULL) fail("dlopen of a TLS-heavy library", why);
      continue;
    }
    char* (*touch)(void) = (char* (*)(void))dlsym(h, "tls_heavy_touch");
    if (touch == NULL || touch() == NULL) fail("tls_heavy_touch", NULL);
    ++loaded;
  }
  if (why[0] == '\0') fail("the TLS-heavy libraries did not use the static TLS surplus up", NULL);
  if (dlopen(argv[2], RTLD_NOW | RTLD_LOCAL) != NULL)
    fail("the initial-exec probe still loads: static TLS is not exhausted", NULL);
  printf("loaded %d of %d TLS-heavy libraries; the others and the initial-exec probe fail: %s\n",
         loaded, argc - 3, why);

  void* ms = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (ms == NULL) fail("dlopen of libmagslab.so", dlerror());
  ms_malloc = (void* (*)(size_t))dlsym(ms, "magslab_malloc");
  ms_free = (void (*)(void*))dlsym(ms, "magslab_free");
  ms_stats = (void (*)(struct magslab_stats*))dlsym(ms, "magslab_stats");
  if (!ms_malloc || !ms_free || !ms_stats) fail("dlsym", dlerror());

  pthread_barrier_wait(&g_loaded);
  for (long t = 2; t < kThreads; ++t) pthread_create(&th[t], NULL, worker, (void*)t);
  for (int t = 0; t < kThreads; ++t) pthread_join(th[t], NULL);

  struct magslab_stats st;
  ms_stats(&st);
  if (st.live_objects != 0) fail("live objects remain after every block was freed", NULL);
  printf("OK: %d threads, %d blocks each, freed across threads\n", kThreads, kBlocks);
  return 0;
}
