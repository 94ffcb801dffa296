/* A plugin whose constructor starts a thread and waits for it; the thread's
 * first allocation is the process's second thread's, which starts magslab's
 * decay thread (tests/ctor_thread_host.c). */
#include <pthread.h>

#include "magslab/magslab.h"

static void* volatile sink;

static void* worker(void* arg) {
  sink = magslab_malloc(100);
  magslab_free(sink);
  return arg;
}

__attribute__((constructor)) static void start_and_wait(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) == 0) pthread_join(t, NULL);
}
