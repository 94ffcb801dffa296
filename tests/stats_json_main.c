/* stats_json_main: four threads allocate and free blocks of many sizes and hand
 * half of them to each other (remote frees, depot trades), a huge block stays
 * live, then magslab_stats_print(1, MAGSLAB_STATS_JSON). tests/check_stats_json.py
 * runs it and parses that output, the MAGSLAB_SHOW_STATS=json exit report and
 * the MAGSLAB_STATS_FILE one with python3's json module. */
#define _GNU_SOURCE /* pthread_barrier_t */
#include <pthread.h>
#include <stdio.h>

#include "magslab/magslab.h"

enum { kThreads = 4, kBlocks = 5000 };
static void* g_blocks[kThreads][kBlocks];
static pthread_barrier_t g_barrier;

static void* work(void* arg) {
  long t = (long)arg;
  for (int i = 0; i < kBlocks; ++i) g_blocks[t][i] = magslab_malloc(16 + (size_t)(i % 200) * 24);
  pthread_barrier_wait(&g_barrier);
  long other = (t + 1) % kThreads;
  for (int i = 0; i < kBlocks; i += 2) magslab_free(g_blocks[other][i]);
  pthread_barrier_wait(&g_barrier);
  for (int i = 1; i < kBlocks; i += 2) magslab_free(g_blocks[t][i]);
  return NULL;
}

int main(void) {
  pthread_barrier_init(&g_barrier, NULL, kThreads);
  pthread_t th[kThreads];
  for (long t = 0; t < kThreads; ++t) pthread_create(&th[t], NULL, work, (void*)t);
  for (int t = 0; t < kThreads; ++t) pthread_join(th[t], NULL);
  void* huge = magslab_malloc(3 << 20);
  int rc = magslab_stats_print(1, MAGSLAB_STATS_JSON);
  (void)huge; /* live at exit: the exit reports show it too */
  return rc;
}
