// large/large: blocks no size class serves. Above kHugeThreshold (the largest
// class) each block is a mapping of its own, moved by mremap on realloc rather
// than copied. Up to it, what comes here is aligned beyond a page: a page run
// inside a chunk (freed runs coalesce and stay committed, within the page
// heap's bounded dirty budget, for reuse).
#pragma once

#include <cstddef>
#include <cstdint>

#include "chunks/chunk_map.h"

namespace magslab::large {

// A block of at least n bytes aligned to `align` (a power of two; any value up
// to the page size costs nothing). *zeroed tells whether it is known to read
// as zero. nullptr (errno untouched) when the OS refuses memory.
void* alloc(size_t n, size_t align, bool* zeroed);

// p is not in a slab. Frees it, or aborts with one line naming p if it is not
// a block magslab handed out (or is already free).
void free(void* p);

// Usable bytes of a large or huge block; aborts if p is not one.
size_t usable_size(const void* p);

// Resize in place when possible (shrink, or grow into the free pages after a
// run, or mremap a huge block, moving it without copying). Returns the block
// (possibly moved, for huge ones) or nullptr if the caller must move it.
void* resize(void* p, size_t n);

// Purge every dirty free run and unmap every free chunk; returns bytes given back.
size_t trim();

struct Counts {
  size_t live_blocks, live_bytes, live_requested;
  size_t huge_blocks, huge_bytes;
  size_t huge_cached_bytes;  // freed huge mappings kept for reuse (still mapped)
};
Counts counts();

}  // namespace magslab::large
