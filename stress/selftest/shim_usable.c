/* Broken shim: malloc_usable_size reports 64 bytes more than glibc's usable
 * size, reaching into whatever follows the block (review, stop 32: the
 * harness only checked usable >= requested, so this passed). The harness
 * indexes blocks up to their usable size and must report the overlap with
 * the next live block (exit 1). The shim's own blocks stay sound. */
#define SHIM_USABLE(p, usable) ((p) != NULL ? (usable) + 64 : 0)
#include "shim_common.h"
