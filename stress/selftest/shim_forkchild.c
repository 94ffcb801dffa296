/* Broken shim: sound in the parent; in a forked child, every 64th malloc
 * returns a block that another thread of the parent had live at the fork (a
 * table of live malloc blocks: pointer, size, the thread that allocated it).
 * Such a block is still allocated in the child, so this is an overlap: the
 * harness must report it (exit 1). Before the fork child's allocations went
 * through the overlap index, nothing in the child looked at the other
 * threads' blocks and the run passed. The returned block is fake (recorded
 * with real == NULL: never passed to glibc's free). */
#define SHIM_MALLOC(n) forkchild_malloc(n)
#define SHIM_ON_FREE(p) forkchild_on_free(p)
#include <pthread.h>
#include <stddef.h>
static void* forkchild_malloc(size_t n);
static int forkchild_on_free(void* p);
#include "shim_common.h"

/* Live blocks: linear probing, deletion by backward shift (no tombstones), a
 * spin lock of its own. */
#define LIVE_BITS 18
#define LIVE_SLOTS ((size_t)1 << LIVE_BITS)
struct live {
  void* p;
  size_t size;
  pthread_t owner;
};
static struct live live[LIVE_SLOTS];
static atomic_flag live_lock = ATOMIC_FLAG_INIT;
static pthread_t main_thread;
static int in_child;
static unsigned long child_calls;
static size_t child_scan;

static size_t live_slot(void* p) {
  return (((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull) >> (64 - LIVE_BITS);
}
static void live_lock_take(void) {
  while (atomic_flag_test_and_set_explicit(&live_lock, memory_order_acquire)) {
  }
}
static void live_lock_give(void) { atomic_flag_clear_explicit(&live_lock, memory_order_release); }

static void live_add(void* p, size_t size) {
  live_lock_take();
  size_t i = live_slot(p);
  for (size_t k = 0; k < LIVE_SLOTS; ++k, i = (i + 1) % LIVE_SLOTS) {
    if (live[i].p == NULL) {
      live[i].p = p;
      live[i].size = size;
      live[i].owner = pthread_self();
      break;
    }
  }
  live_lock_give();
}

/* Removes slot i, shifting back the entries of its probe run (caller holds the lock). */
static void live_remove_at(size_t i) {
  size_t j = i;
  for (;;) {
    live[i].p = NULL;
    for (;;) {
      j = (j + 1) % LIVE_SLOTS;
      if (live[j].p == NULL) return;
      size_t home = live_slot(live[j].p);
      /* j's entry may move to i unless its home lies cyclically in (i, j] */
      if (i <= j ? (i < home && home <= j) : (i < home || home <= j)) continue;
      break;
    }
    live[i] = live[j];
    i = j;
  }
}

static void live_remove(void* p) {
  live_lock_take();
  size_t i = live_slot(p);
  for (size_t k = 0; k < LIVE_SLOTS && live[i].p != NULL; ++k, i = (i + 1) % LIVE_SLOTS) {
    if (live[i].p == p) {
      live_remove_at(i);
      break;
    }
  }
  live_lock_give();
}

static void forkchild_child(void) {
  in_child = 1;
  /* The child's only thread: a lock another thread held at the fork is free. */
  atomic_flag_clear_explicit(&live_lock, memory_order_relaxed);
}

__attribute__((constructor)) static void forkchild_init(void) {
  main_thread = pthread_self();
  pthread_atfork(NULL, NULL, forkchild_child);
}

static void* forkchild_malloc(size_t n) {
  if (in_child && ++child_calls % 64 == 0) {
    /* A block of at least n bytes another worker thread had live at the fork. */
    for (size_t k = 0; k < LIVE_SLOTS; ++k) {
      size_t i = (child_scan + k) % LIVE_SLOTS;
      struct live e = live[i];
      if (e.p == NULL || e.size < n || pthread_equal(e.owner, pthread_self()) ||
          pthread_equal(e.owner, main_thread))
        continue;
      child_scan = i + 1;
      live_remove_at(i);
      if (fake_add(e.p, NULL, n)) return e.p;
      break;
    }
  }
  void* p = __libc_malloc(n);
  if (p != NULL && !in_child) live_add(p, n);
  return p;
}

static int forkchild_on_free(void* p) {
  if (p != NULL && !in_child) live_remove(p);
  return 0; /* glibc frees it */
}
