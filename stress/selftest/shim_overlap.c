/* Broken shim: now and then malloc returns a block overlapping one it handed
 * out just before. Every 3000th malloc of 16..4096 bytes allocates a double
 * block, returns its first half, and hands its middle to the next malloc call
 * (any thread). Both are fake (never passed to glibc's free: a small leak), so the shim
 * itself stays sound; the harness must report the overlap (exit 1). */
#define SHIM_MALLOC(n) overlap_malloc(n)
#include <stddef.h>
static void* overlap_malloc(size_t n);
#include "shim_common.h"

static void* _Atomic pending;
static size_t pending_size;

static void* overlap_malloc(size_t n) {
  void* f = atomic_exchange(&pending, NULL);
  if (f != NULL) {
    if (n <= pending_size && fake_add(f, NULL, n)) return f;
  }
  unsigned long c = atomic_fetch_add(&shim_calls, 1);
  if (c > 1000 && c % 3000 == 0 && n >= 16 && n <= 4096) {
    char* real = __libc_malloc(2 * n + 64);
    if (real == NULL) return NULL;
    /* recorded with real == NULL: never given back to glibc, so the middle
     * block stays valid memory whatever the program frees first */
    if (!fake_add(real, NULL, n)) return real;
    pending_size = n + 32;
    atomic_store(&pending, (void*)(real + ((n / 2) & ~(size_t)15)));
    return real;
  }
  return __libc_malloc(n);
}
