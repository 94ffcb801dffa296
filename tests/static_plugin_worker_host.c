// A program that dlopen()s a plugin with libmagslab.a linked in
// (tests/static_plugin.cc) and calls it from the main thread and from a
// worker, dlclose()s it while the worker is still alive, and only then lets
// the worker exit. Before stop 42 the plugin's copy of magslab left two
// things behind that ran its unmapped code: the thread-exit destructors of
// its pthread keys (the worker's exit: SIGSEGV in glibc's key cleanup) and
// its decay thread (SIGSEGV within a second of the dlclose). Found by a
// bug-hunt helper, 10 of 10 runs each. Mode 0: the worker exits at once
// (run with MAGSLAB_BACKGROUND_THREAD=0, so only the key destructors are in
// play); mode 1: the program waits a second and a half first, while the decay
// thread would run. ctests static_plugin_dlclosed_worker_exits and
// static_plugin_dlclosed_decay_thread: exit status 0. A third argument
// "dlmopen" loads the plugin into a namespace of its own (dlmopen with
// LM_ID_NEWLM), where dl_iterate_phdr lists the plugin first: until stop 53
// the plugin took itself for the program there and was not pinned, and its
// decay thread crashed (ctest static_plugin_dlmopened_decay_thread; mode 0
// proves nothing there: glibc's key destructors are the first namespace's).
#define _GNU_SOURCE  // dlmopen, nanosleep
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int (*work)(void);
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int closed = 0, worked = 0, worker_ok = 0;

static void* worker(void* arg) {
  (void)arg;
  int ok = work();
  pthread_mutex_lock(&m);
  worker_ok = ok;
  worked = 1;
  pthread_cond_broadcast(&cv);
  while (!closed) pthread_cond_wait(&cv, &m);
  pthread_mutex_unlock(&m);
  return NULL;  // the thread's exit: its key destructors run here
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const int mode = argv[2][0] - '0';
  void* h = argc > 3 && strcmp(argv[3], "dlmopen") == 0 ? dlmopen(LM_ID_NEWLM, argv[1], RTLD_NOW)
                                                        : dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  work = (int (*)(void))dlsym(h, "static_plugin_work");
  if (work == NULL || work() != 1) return 3;
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) return 5;
  pthread_mutex_lock(&m);
  while (!worked) pthread_cond_wait(&cv, &m);
  pthread_mutex_unlock(&m);
  if (dlclose(h) != 0) return 4;
  if (mode == 1) {
    struct timespec d = {1, 500000000};
    nanosleep(&d, NULL);
  }
  pthread_mutex_lock(&m);
  closed = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&m);
  pthread_join(t, NULL);
  return worker_ok ? 0 : 6;
}
