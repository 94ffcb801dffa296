/* Broken shim: every 500th aligned request with alignment >= 32 returns a
 * pointer 16 bytes past an aligned one (misaligned for the request). The fake
 * pointer is recorded, so free/realloc/usable_size stay sound. The harness
 * must report the misalignment (exit 1). */
#define SHIM_ALIGNED(a, n) misalign_aligned(a, n)
#include <stddef.h>
static void* misalign_aligned(size_t a, size_t n);
#include "shim_common.h"

static void* misalign_aligned(size_t a, size_t n) {
  unsigned long c = atomic_fetch_add(&shim_calls, 1);
  if (a >= 32 && c % 500 == 0) {
    char* real = __libc_memalign(a, n + a);
    if (real == NULL) return NULL;
    if (fake_add(real + 16, real, n)) return real + 16;
    return real;
  }
  return __libc_memalign(a, n);
}
