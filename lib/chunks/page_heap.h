// chunks/page_heap: runs of pages inside 4 MiB chunks — the backing store of
// slabs and of large blocks. Free runs coalesce with free neighbours and are
// found through size-binned lists. A freed run stays committed ("dirty") so
// that the next allocation reuses it without a system call or page faults.
// Dirty runs decay: one untouched for dirty_decay_ns() is decommitted (purged) by
// the next decay pass (small/decay.h: the background thread, or the slow paths
// of a single-threaded program), so a workload swinging within that time never
// refaults while idle memory still goes back. dirty_pages_max() (an option) bounds them in
// between; magslab_trim() purges them all. A chunk that becomes entirely free
// is kept in a small cache (free_chunks_kept(), an option) and unmapped beyond it.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "base/lock.h"
#include "chunks/chunk_map.h"
#include "platform/options.h"

namespace magslab::heap {

// Fully free chunks kept mapped (purged ones are unmapped first) so that a steady workload does
// not map and unmap a chunk on every swing (option free_chunks, default 2).
inline size_t free_chunks_kept() { return opt::get(opt::kFreeChunks); }
// Dirty free pages allowed at any time whatever their age (option dirty_max,
// default 64 MiB); past it a purge goes down to half. Only a backstop: decay
// normally purges first.
inline size_t dirty_pages_max() { return opt::get(opt::kDirtyMax) >> kPageShift; }
// A dirty run not touched for this long is purged by the next decay pass
// (option decay_ms, default 500 ms).
inline uint64_t dirty_decay_ns() { return opt::get(opt::kDecayMs) * 1000000; }

// Protects everything in this layer, and the page-run bookkeeping of the
// large layer above it (which must agree with the chunks' descriptors).
extern Lock g_lock;

struct Run {
  ChunkMeta* chunk;
  uint32_t page;
  uint32_t npages;
  void* addr() const {
    return reinterpret_cast<void*>(chunk->base() + (uintptr_t{page} << kPageShift));
  }
};

// NUMA (platform/numa.h): each node pool has its own chunks and free runs.
// An allocation names the node it wants; a chunk is mapped for that node and
// its memory bound to it. A run goes back to the heap of its chunk's node
// (ChunkMeta::node), whoever frees it. Fully free chunks are kept per node
// (free_chunks_kept() each); the dirty list and its budget are the process's.
// One lock for all nodes: the heap is behind the slab classes and the depot,
// which are per node, so it is taken once per slab, not per object.

// Runs for slabs (small/slab.cc), with the lock taken here. alloc_slab_run:
// false when the OS refuses memory. free_slab_run: the pages go back dirty and
// are purged (after the lock is dropped) if the dirty budget is exceeded.
// Slabs leave the owner tags of their pages (ChunkMeta::tag) at 0.
bool alloc_slab_run(size_t npages, unsigned node, Run* out);
void free_slab_run(ChunkMeta* chunk, uint32_t page, uint32_t npages);

// The *_locked functions need g_lock held.

// A run of `npages` whose address is a multiple of align_pages pages (a power of
// two), its owner tags 0, from node pool `node`'s chunks. *zeroed: whether its
// pages are known to read as zero (never touched, or purged). false when the
// OS refuses memory.
bool alloc_locked(size_t npages, size_t align_pages, Run* out, bool* zeroed, unsigned node = 0);
// Give back a run. dirty: its pages may be resident (false only if the caller
// decommitted them or never touched them). Its owner tags stay as they are.
// Needs no memory: when the metadata arena can give no record, a free
// neighbour lends its own, or the run waits (counted in use) until one can be
// had (page_heap.cc, "Runs freed while..."). errno stays as it was.
// Returns true when the dirty budget is exceeded or the oldest dirty run is due
// for decay: the caller should then call purge_excess() after dropping the lock.
bool free_locked(ChunkMeta* chunk, uint32_t page, uint32_t npages, bool dirty);
// Extend the run [page, page+old_n) to new_n pages if the pages after it are
// free (the added pages' owner tags 0).
bool try_grow_locked(ChunkMeta* chunk, uint32_t page, uint32_t old_n, uint32_t new_n);
// Unmap fully free chunks beyond `keep` in each node; returns bytes unmapped.
// Their munmap comes at the next drain_unmaps(), after the lock.
size_t release_free_chunks_locked(size_t keep);
// Without g_lock: unmap the chunks that were taken out of the heap under it
// (release_free_chunks_locked, and a free of pages past free_chunks, whose
// free_locked() then returns true: purge_excess() drains, as every purge does).
void drain_unmaps();
// Decommit the oldest dirty runs until at most keep_pages pages are dirty.
// Call without g_lock (it takes it, and makes the system calls without it).
// Returns bytes decommitted.
size_t purge(size_t keep_pages);
// Decommit the dirty runs untouched since before `cutoff` (platform::now_ns()
// time) and, past the budget, the oldest down to half of it. Without g_lock.
size_t purge_aged(uint64_t cutoff);
// After free_locked() returned true: purge_aged(now - dirty_decay_ns()).
void purge_excess();

struct Totals {
  size_t chunks;       // normal chunks mapped
  size_t free_pages;   // pages in free runs, dirty or purged
  size_t free_chunks;  // chunks entirely free
  size_t dirty_pages;  // free pages not purged yet (committed, reusable)
};
// Summed over the nodes.
Totals totals_locked();
// Chunks mapped for node pool `node` (tests, stats).
size_t node_chunks_locked(unsigned node);

// An allocation the OS refused memory for (a mapping: the address space may
// be full of magslab's own cached mappings, RLIMIT_AS) gives back what holds
// address space and is tried once more: the slab and large layers wrap their
// allocations in or_after_reclaim() with no lock held, and the reclaim runs
// what the layer above set once at load (api: cached empty slabs, free
// chunks, huge mappings); nothing before. Never from a fast path.
void set_reclaim(void (*reclaim)());
void reclaim_for_retry();
// attempt() (a pointer, nullptr: refused), and if refused, once more after
// reclaim_for_retry(); errno as it was before whenever one succeeds.
template <class Attempt>
void* or_after_reclaim(Attempt attempt) {
  const int saved = errno;
  // A first attempt may succeed after a refusal inside it (a refill that got
  // some objects before a new slab's chunk was refused): errno as before too.
  if (void* p = attempt()) {
    errno = saved;
    return p;
  }
  reclaim_for_retry();
  void* p = attempt();
  if (p != nullptr) errno = saved;
  return p;
}

}  // namespace magslab::heap
