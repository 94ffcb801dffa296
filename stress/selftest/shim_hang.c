/* Broken shim: from its 20,000th call on, malloc never returns (a deadlock
 * in the allocator). The harness's threads cannot see it; its watchdog must
 * end the run with one FAILURE line (exit 1) once the workload is past its
 * time by --watchdog seconds, instead of waiting for ever (review, stop 32). */
#define SHIM_MALLOC(n) hang_malloc(n)
#include <stddef.h>
#include <unistd.h>
static void* hang_malloc(size_t n);
#include "shim_common.h"

static void* hang_malloc(size_t n) {
  if (atomic_fetch_add(&shim_calls, 1) >= 20000)
    for (;;) pause();
  return __libc_malloc(n);
}
