/* threads_demo.c: four threads hammer the magslab C API with random
 * malloc/free/realloc operations. Thread 0 hands half of the blocks it frees to
 * thread 1 through a mutex-protected array, so thread 1 frees memory thread 0
 * allocated (cross-thread frees). Every block carries a fill byte that is
 * verified before each realloc and free. At the end a short stats summary is
 * printed. Exit status: 0 on success, 1 on a verification failure.
 *
 * Build: cc -std=c11 -O2 threads_demo.c -lmagslab -lpthread (C11 + pthreads). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <magslab/magslab.h>

enum { kThreads = 4, kOps = 200000, kSlots = 1024, kHandoffCap = 4096 };

typedef struct {
  unsigned char* p;
  size_t size;
  unsigned char fill;
} block_t;

typedef struct {
  pthread_mutex_t mu;
  block_t items[kHandoffCap];
  size_t count;
} handoff_t;

static handoff_t g_handoff = {PTHREAD_MUTEX_INITIALIZER, {{0, 0, 0}}, 0};
static atomic_int g_producer_done = 0;
static atomic_ulong g_failures = 0;
static atomic_ulong g_cross_frees = 0;

/* Blocks still live when the threads finish, freed by main after printing
 * the stats (so the summary shows something live). */
static block_t g_slots[kThreads][kSlots];

static uint64_t xorshift(uint64_t* s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static size_t random_size(uint64_t* rng) {
  uint64_t r = xorshift(rng) % 1000;
  if (r < 700) return 1 + xorshift(rng) % 256;
  if (r < 950) return 257 + xorshift(rng) % 4096;
  if (r < 995) return 4353 + xorshift(rng) % 60000;
  return 100000 + xorshift(rng) % 400000;
}

static int verify(const block_t* b) {
  for (size_t i = 0; i < b->size; ++i) {
    if (b->p[i] != b->fill) {
      fprintf(stderr, "threads_demo: block %p (size %zu) byte %zu is 0x%02x, expected 0x%02x\n",
              (void*)b->p, b->size, i, b->p[i], b->fill);
      atomic_fetch_add(&g_failures, 1);
      return 0;
    }
  }
  return 1;
}

/* Thread 0 only: try to pass a block to thread 1 instead of freeing it. */
static int hand_off(const block_t* b) {
  int ok = 0;
  pthread_mutex_lock(&g_handoff.mu);
  if (g_handoff.count < kHandoffCap) {
    g_handoff.items[g_handoff.count++] = *b;
    ok = 1;
  }
  pthread_mutex_unlock(&g_handoff.mu);
  return ok;
}

/* Thread 1 only: free up to max blocks handed over by thread 0. */
static size_t drain_handoff(size_t max) {
  block_t local[64];
  size_t n = 0;
  if (max > 64) max = 64;
  pthread_mutex_lock(&g_handoff.mu);
  while (n < max && g_handoff.count > 0) local[n++] = g_handoff.items[--g_handoff.count];
  pthread_mutex_unlock(&g_handoff.mu);
  for (size_t i = 0; i < n; ++i) {
    verify(&local[i]);
    magslab_free(local[i].p);
  }
  atomic_fetch_add(&g_cross_frees, n);
  return n;
}

static void release_block(int tid, uint64_t* rng, block_t* b) {
  verify(b);
  if (tid == 0 && (xorshift(rng) & 1) && hand_off(b)) {
    /* thread 1 frees it */
  } else if (xorshift(rng) & 1) {
    magslab_free_sized(b->p, b->size);
  } else {
    magslab_free(b->p);
  }
  b->p = NULL;
  b->size = 0;
}

static void* worker(void* arg) {
  int tid = (int)(intptr_t)arg;
  uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(tid + 1);
  block_t* slots = g_slots[tid];

  for (int op = 0; op < kOps; ++op) {
    block_t* b = &slots[xorshift(&rng) % kSlots];
    uint64_t what = xorshift(&rng) % 10;
    if (b->p == NULL) {
      size_t size = random_size(&rng);
      b->p = (what < 2) ? magslab_calloc(1, size) : magslab_malloc(size);
      if (b->p == NULL) {
        fprintf(stderr, "threads_demo: allocation of %zu bytes failed\n", size);
        atomic_fetch_add(&g_failures, 1);
        continue;
      }
      if (what < 2) {
        b->fill = 0; /* calloc: must already be zero */
        b->size = size;
        verify(b);
      }
      b->size = size;
      b->fill = (unsigned char)(xorshift(&rng) | 1);
      memset(b->p, b->fill, size);
    } else if (what < 4) {
      /* realloc: keep the prefix, refill everything with a new byte. */
      size_t size = random_size(&rng);
      verify(b);
      unsigned char* q = magslab_realloc(b->p, size);
      if (q == NULL) {
        fprintf(stderr, "threads_demo: realloc to %zu bytes failed\n", size);
        atomic_fetch_add(&g_failures, 1);
        continue;
      }
      block_t nb = {q, size < b->size ? size : b->size, b->fill};
      verify(&nb); /* the preserved prefix */
      b->p = q;
      b->size = size;
      b->fill = (unsigned char)(xorshift(&rng) | 1);
      memset(b->p, b->fill, size);
    } else {
      release_block(tid, &rng, b);
    }
    if (tid == 1 && (op & 15) == 0) drain_handoff(64);
  }
  if (tid == 0) atomic_store(&g_producer_done, 1);
  if (tid == 1) {
    /* Keep freeing thread 0's blocks until it is done and nothing is left. */
    for (;;) {
      int done = atomic_load(&g_producer_done);
      if (drain_handoff(64) == 0 && done) break;
    }
  }
  return NULL;
}

static void print_summary(const char* title) {
  static struct magslab_stats s; /* large: keep it off the stack */
  magslab_stats(&s);
  printf("%s\n", title);
  printf("  live:      %10zu bytes in %zu blocks (%zu large, %zu huge)\n", s.live_bytes,
         s.live_objects, s.large_live_blocks, s.huge_live_blocks);
  printf("  requested: %10zu bytes%s\n", s.live_requested_bytes,
         s.requested_bytes_exact ? "" : " (small blocks at usable size)");
  printf("  peak:      %10zu bytes in use\n", s.peak_in_use_bytes);
  printf("  cached:    %10zu bytes\n", s.cached_bytes);
  printf("  mapped:    %10zu bytes (committed %zu, metadata %zu)\n", s.mapped_bytes,
         s.committed_bytes, s.metadata_bytes);

  /* Top 5 classes by live objects. */
  size_t order[MAGSLAB_MAX_CLASSES];
  size_t n = s.class_count < MAGSLAB_MAX_CLASSES ? s.class_count : MAGSLAB_MAX_CLASSES;
  for (size_t i = 0; i < n; ++i) order[i] = i;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j)
      if (s.classes[order[j]].live_objects > s.classes[order[i]].live_objects) {
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
  printf("  top classes by live objects:\n");
  for (size_t k = 0; k < n && k < 5; ++k) {
    const struct magslab_class_stats* c = &s.classes[order[k]];
    if (c->live_objects == 0) break;
    printf("    %7zu B objects: %7zu live, %7zu cached, %4zu slabs of %zu B\n", c->object_size,
           c->live_objects, c->cached_objects, c->slabs, c->slab_size);
  }
}

int main(void) {
  pthread_t threads[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    if (pthread_create(&threads[i], NULL, worker, (void*)(intptr_t)i) != 0) {
      fprintf(stderr, "threads_demo: pthread_create failed\n");
      return 2;
    }
  }
  for (int i = 0; i < kThreads; ++i) pthread_join(threads[i], NULL);

  printf("magslab threads_demo: %d threads x %d ops, %lu cross-thread frees\n", kThreads, kOps,
         (unsigned long)atomic_load(&g_cross_frees));
  print_summary("after the run (blocks still held by the threads' slots):");

  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < kSlots; ++i)
      if (g_slots[t][i].p) {
        verify(&g_slots[t][i]);
        magslab_free(g_slots[t][i].p);
        g_slots[t][i].p = NULL;
      }
  size_t trimmed = magslab_trim();
  print_summary("after freeing everything and magslab_trim():");
  printf("  trim returned %zu bytes to the OS\n", trimmed);

  static struct magslab_stats end;
  magslab_stats(&end);
  if (end.live_objects != 0 || end.live_bytes != 0) {
    fprintf(stderr, "threads_demo: %zu blocks / %zu bytes still live after freeing everything\n",
            end.live_objects, end.live_bytes);
    atomic_fetch_add(&g_failures, 1);
  }
  unsigned long failures = atomic_load(&g_failures);
  if (failures) {
    fprintf(stderr, "threads_demo: %lu verification failure(s)\n", failures);
    return 1;
  }
  printf("OK\n");
  return 0;
}
