// chunks/page_heap: runs of pages inside 4 MiB chunks — the backing store of
// slabs and of large blocks. Free runs coalesce with free neighbours, are kept
// decommitted (so they read as zero and cost no RSS), and are found through
// size-binned lists. A chunk that becomes entirely free is kept in a small
// cache (kFreeChunksKept) and unmapped beyond it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "chunks/chunk_map.h"
#include "lock.h"

namespace magslab::heap {

// Fully free chunks kept mapped (decommitted) so that a steady workload does
// not map and unmap a chunk on every swing.
inline constexpr size_t kFreeChunksKept = 2;

// Protects everything in this layer and the large/huge bookkeeping above it.
extern Lock g_lock;

struct Run {
  ChunkMeta* chunk;
  uint32_t page;
  uint32_t npages;
  void* addr() const { return reinterpret_cast<void*>(chunk->base + (uintptr_t{page} << kPageShift)); }
};

// The *_locked functions need g_lock held.

// A run of `npages` whose address is a multiple of align_pages pages (a power of
// two). Its pages read as zero. false when the OS refuses memory.
bool alloc_locked(size_t npages, size_t align_pages, Run* out);
// Give back a run whose pages the caller already decommitted (decommit()).
void free_locked(ChunkMeta* chunk, uint32_t page, uint32_t npages);
// Extend the run [page, page+old_n) to new_n pages if the pages after it are free.
bool try_grow_locked(ChunkMeta* chunk, uint32_t page, uint32_t old_n, uint32_t new_n);
// Unmap fully free chunks beyond `keep`; returns bytes unmapped.
size_t release_free_chunks_locked(size_t keep);

// Decommit [addr, addr+bytes); if the OS refuses, zero the pages instead, so a
// free run always reads as zero. Call without g_lock (it is a system call).
void decommit(void* addr, size_t bytes);

// Descriptors for huge mappings (kept apart from chunk descriptors: their page
// arrays are never touched, so they cost no RSS).
ChunkMeta* new_huge_meta_locked();
void recycle_huge_meta_locked(ChunkMeta* m);

struct Totals {
  size_t chunks;       // normal chunks mapped
  size_t free_pages;   // pages in free runs (decommitted)
  size_t free_chunks;  // chunks entirely free
};
Totals totals_locked();

}  // namespace magslab::heap
