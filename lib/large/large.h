// large/large: blocks no size class serves. Above kHugeThreshold (the largest
// class) each block is a mapping of its own, a whole number of chunks long
// (reused for any request up to that length, grown in place up to it, moved
// by mremap on realloc beyond it rather than copied). Up to it, what comes
// here is aligned beyond a page: a page run inside a chunk (freed runs
// coalesce and stay committed, within the page heap's bounded dirty budget,
// for reuse).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/misuse.h"
#include "chunks/chunk_map.h"

namespace magslab {

// large/'s record of a chunk that holds page runs (ChunkMeta::run_record),
// from the metadata arena when the chunk gets its first run, kept with the
// chunk's descriptor. An entry is meaningful at a page tagged kTagStart only
// (written with the tag). Under heap::g_lock.
struct RunRecord {
  uint32_t pages[kPagesPerChunk];    // at a block's first page: its pages
  uint32_t request[kPagesPerChunk];  // at a block's first page: bytes asked
};

namespace large {

// Owner tags (ChunkMeta::tag) of the pages of page runs. The page heap hands
// pages out tagged 0 and a free page keeps its tag until it is handed out
// again, so the first page of a freed block stays marked while it is free.
enum RunTag : uint8_t {
  kTagNone = 0,        // free, or a slab's page: nothing known
  kTagFreedStart = 1,  // free; was the first page of a large block (names a double free)
  kTagStart = 2,       // first page of a live large block
  kTagBody = 3,        // later page of a live large block
};

// A block of at least n bytes aligned to `align` (a power of two; any value up
// to the page size costs nothing). *zeroed tells whether it is known to read
// as zero. nullptr (errno untouched) when the OS refuses memory.
void* alloc(size_t n, size_t align, bool* zeroed);

// p is not in a slab. Frees it if it is a live huge block that can be parked
// (without the lock); false: nothing done (p may be anything), and the caller
// goes on to free(p).
// sized: a sized free's size (0: a free without one); a block it exceeds is
// not parked (free(p, sized) reports it).
bool free_parked(void* p, size_t sized = 0);
// p is not in a slab and free_parked(p) declined it. Frees it under the lock,
// or aborts with one line naming p if it is not a block magslab handed out
// (or is already free), or if sized (free_sized's size; 0: none) exceeds its
// usable size.
void free(void* p, size_t sized = 0);
// Check mode: p, a live huge block whose pages mprotect would not make
// accessible again (RLIMIT_DATA, strict overcommit), goes back to the OS as
// it is, its whole mapping unmapped (munmap needs no access); false: p is
// not a huge block, or the munmap was refused (vm.max_map_count: it would
// split a mapping), and p stays live and registered.
bool free_unmapping(void* p);

// Usable bytes of a large or huge block; aborts if p is not one, naming the
// misuse `what` (kInvalidFree: a freed page run's start is a double free).
// *huge (if given) tells which kind it is.
size_t usable_size(const void* p, Misuse what = Misuse::kInvalidUsableSize, bool* huge = nullptr);

// Resize in place when possible (shrink, or grow into the free pages after a
// run, or mremap a huge block, moving it without copying). Returns the block
// (possibly moved, for huge ones) or nullptr if the caller must move it.
// `keep`: the caller could not move it (no memory) and n is at most its size:
// it stays where it is, shrunk (a page run) or with its pages (a huge block),
// counted as n bytes requested.
void* resize(void* p, size_t n, bool keep = false);

// Whether the n bytes at a (n at most a page) lie in memory the heap has
// mapped: in a page-heap chunk (mapped whole while the page map names it) or
// within a huge block's mapping, whose last chunk slot may be mapped only in
// part (a mapping to the page: a block above the huge cache's block size, or
// one huge for its alignment). For code that reads a header at an address
// derived from the program's pointer before it trusts it (object caches,
// pools). No lock: a free or resize of that block racing with the read is a
// race in the program.
bool extent_covers(const Extent* h, uintptr_t a, size_t n);
inline bool mapped(uintptr_t a, size_t n) {
  pagemap::Entry e = pagemap::lookup(a);
  if (e.chunk() != nullptr) return (a & (kChunkSize - 1)) + n <= kChunkSize;
  return e.extent() != nullptr && extent_covers(e.extent(), a, n);
}

// Purge every dirty free run and unmap every free chunk; returns bytes given back.
size_t trim();
// What holds address space and nothing else: parked huge blocks and the huge
// cache unmapped, entirely free chunks unmapped (no purge: decommitting gives
// back memory, not address space). For a refused mapping's retry
// (heap::reclaim_for_retry); cheap once nothing is left. Returns bytes unmapped.
size_t release_mappings();
// Decay pass (small/decay.h's hook): unmap cached huge mappings unused for
// their age limit. true: some remain cached.
bool decay(uint64_t now);

struct Counts {
  size_t live_blocks, live_bytes, live_requested;
  size_t huge_blocks, huge_bytes;  // live huge blocks and their mapped bytes
  size_t huge_cached_bytes;        // freed huge mappings kept for reuse (still mapped)
  // Every huge mapping's length (live, parked, cached), and how much of that
  // has not been touched since it was mapped or decommitted.
  size_t huge_mapped_bytes, huge_untouched_bytes;
};
// Under the page-heap lock for page runs and the large layer's own lock for
// huge blocks, one after the other: exact when no thread allocates or frees.
Counts counts();
// Tests only (nullptr otherwise): called by counts() after it reads park slot
// i (of 68: the threads' 64, then the 4 hand-over slots), with the huge lock
// held, so a test can move a parked block during the scan. It must not take
// that lock: only parks and takes (lock-free while a slot fits) are safe.
extern std::atomic<void (*)(size_t)> g_counts_scan_hook;
// Tests only (nullptr otherwise): called by a huge malloc after it saw, in
// hand-over slot i (0-3), a block its request fits and before it takes that
// slot's block, so a test can change the block in between (which another
// thread may do at any time). It may park and take huge blocks; it must
// clear itself first, or it runs again for each of those takes, and it must
// not start a thread (the malloc may be using its single-threaded steps).
extern std::atomic<void (*)(size_t)> g_hand_over_take_hook;

// fork(): the large layer's own lock (huge blocks), held across the fork;
// api/fork.cc takes it after the page-heap lock and before the metadata
// arena's.
void lock_for_fork();
void unlock_after_fork();

}  // namespace large
}  // namespace magslab
