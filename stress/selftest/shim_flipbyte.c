/* Broken shim: a stale write into a freed block that has been reused. Every
 * 2000th free of a block of 48..4096 usable bytes is not freed but held; the
 * next malloc that fits gets that block back, and a few calls later the shim
 * flips one byte in it (as an allocator writing through a stale free-list
 * pointer would). The harness must find the changed byte (exit 1). */
#define SHIM_MALLOC(n) flip_malloc(n)
#define SHIM_ON_FREE(p) flip_on_free(p)
#include <stdatomic.h>
#include <stddef.h>
static void* flip_malloc(size_t n);
static int flip_on_free(void* p);
#include "shim_common.h"

static void* _Atomic held;   /* freed, waiting to be reused */
static void* _Atomic reused; /* handed out again; flip it soon */
static _Atomic size_t reused_size;
static atomic_ulong flip_at;

static void maybe_flip(unsigned long c) {
  if (atomic_load_explicit(&reused, memory_order_relaxed) != NULL && c >= atomic_load(&flip_at)) {
    unsigned char* p = atomic_exchange(&reused, NULL);
    if (p != NULL) {
      size_t n = atomic_load(&reused_size);
      p[n / 2] ^= 0x40; /* the block is live in the program now */
    }
  }
}

static void* flip_malloc(size_t n) {
  unsigned long c = atomic_fetch_add(&shim_calls, 1);
  maybe_flip(c);
  if (n >= 16 && atomic_load_explicit(&held, memory_order_relaxed) != NULL &&
      atomic_load_explicit(&reused, memory_order_relaxed) == NULL) {
    void* h = atomic_exchange(&held, NULL);
    if (h != NULL) {
      if (glibc_usable(h) >= n) {
        atomic_store(&reused_size, n);
        atomic_store(&flip_at, c + 5);
        atomic_store(&reused, h);
        return h;
      }
      __libc_free(h);
    }
  }
  return __libc_malloc(n);
}

static int flip_on_free(void* p) {
  unsigned long c = atomic_fetch_add(&shim_calls, 1);
  maybe_flip(c);
  if (p == NULL) return 0;
  void* mine = p; /* freed before the flip: no flip into freed memory */
  if (atomic_compare_exchange_strong(&reused, &mine, NULL)) return 0;
  size_t u = glibc_usable(p);
  if (c > 1000 && c % 2000 == 0 && u >= 48 && u <= 4096) {
    void* expected = NULL;
    if (atomic_compare_exchange_strong(&held, &expected, p)) return 1; /* kept, not freed */
  }
  return 0;
}
