/* main() ends with pthread_exit() while another thread runs; that thread
 * ends later. The process must then end as glibc ends it: exit(0), atexit
 * handlers run. Until stop 40 magslab's decay thread, started by the second
 * thread's first allocation, counted among the process's threads and never
 * ends: the process stayed, a zombie main and the decay thread, for good
 * (SIGTERM pending: the decay thread blocks every signal). A bug hunt's
 * repro. Prints whether the decay thread ran (else the test proves nothing),
 * then the atexit handler's line.
 * Built with -DFROM_CONSTRUCTOR, the worker is started (and its allocation
 * made) by a constructor of the program, which runs before libmagslab.a's
 * own: until stop 53 the decay thread it started counted, as every decay
 * thread did in a -static program (no dynamic symbol to look the count up
 * by), and those stayed for good. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../testing/decay_thread.h"
#include "magslab/magslab.h"

static void* volatile sink; /* volatile: the compiler keeps each allocation */

static void bye(void) { fprintf(stderr, "atexit ran\n"); }

static volatile int allocated; /* set by the worker after its allocation */

static void* worker(void* arg) {
  (void)arg;
  sink = magslab_malloc(100); /* the second thread's first allocation starts the decay thread */
  magslab_free(sink);
  __atomic_store_n(&allocated, 1, __ATOMIC_RELEASE);
  usleep(200 * 1000);
  return NULL; /* the program's last thread ends here */
}

static int start(void) {
  sink = magslab_malloc(100);
  magslab_free(sink);
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) return 0;
  pthread_detach(t);
  /* Up to 10 s: a loaded machine may start the worker late. */
  for (int i = 0;
       i < 10000 && !(__atomic_load_n(&allocated, __ATOMIC_ACQUIRE) && decay_thread_runs()); ++i)
    usleep(1000);
  return 1;
}

#ifdef FROM_CONSTRUCTOR
static int started;
__attribute__((constructor)) static void start_early(void) { started = start(); }
#endif

int main(void) {
  atexit(bye);
#ifndef FROM_CONSTRUCTOR
  int started = start();
#endif
  if (!started) return 1;
  fprintf(stderr, decay_thread_runs() ? "decay thread runs\n" : "no decay thread\n");
  pthread_exit(NULL);
}
