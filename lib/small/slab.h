// small/slab: a run of pages of one class, carved into objects, with its own free
// bitmap. Per class, a lock protects the slabs' bookkeeping; it is taken once
// per magazine (refill or flush), never per object on the fast path.
//
// Invariant, per class c (under the class lock):
//   objects in live slabs == free in slabs + carved_objects
//   carved_objects == handed out to the program + held in magazines
// An object is in exactly one place: handed out, in a magazine, or free in
// its slab (its bit set in free_bits).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "chunks/chunk_map.h"
#include "ds/tagged_stack.h"
#include "small/size_classes.h"

namespace magslab {

struct RecordPage;  // slab.cc

struct alignas(kCacheLine) Slab {
  // First line: read by the free fast path and never written while the slab
  // is carved (owner only when another thread refills from it), so frees on
  // other cores keep it shared instead of losing it to every refill and
  // release — those write the second line. Set before the slab is published
  // in the page map's per-page slab entries (pagemap::set_slab, release).
  uintptr_t start = 0;  // address of object 0 (the first page)
  uint64_t magic = 0;   // kClasses[cls].magic, here to stay on one cache line
  uint64_t bound = 0;   // see valid_offset(); 0 (a record never used, or given back
                        // to the OS and read as zero) rejects every offset
  // The thread cache that last refilled a magazine from this slab. Only a hint
  // for where free() puts an object (thread_cache.h: own objects go to the
  // loaded magazine, others' to the remote one); correctness never depends on
  // it. relaxed: a stale value only routes one free differently. Stored only
  // when it changes (slab.cc), so a thread refilling from its own slab does
  // not dirty this line.
  std::atomic<const void*> owner{nullptr};
  uint32_t cls = 0;
  uint32_t first_page = 0;  // constant while carved, like chunk
  ChunkMeta* chunk = nullptr;
  // The NUMA node pool (platform/numa.h) of its chunk, whose class lists hold
  // it: chunk->node, here on the line free and release already read.
  // Constant while carved.
  uint32_t node = 0;
  // Exact mode only (kExactRequested): the size requested for object i, written
  // by whoever takes the object out of a magazine for the program and read by
  // its free (the program's hand-over of the pointer orders the two). Mapped
  // once per record (kMaxSlabObjects entries; pages are touched as used) and
  // kept when the record is recycled. nullptr otherwise.
  uint32_t* requested = nullptr;

  // Second line on: under the class lock.
  alignas(kCacheLine) uint32_t nfree = 0;  // bits set in free_bits
  uint32_t hint = 0;                       // no free bits in words below this one
  Slab* next = nullptr;                    // partial list of the class
  Slab* prev = nullptr;
  bool in_partial = false;
  RecordPage* home = nullptr;                // the record page holding this record (slab.cc)
  uint64_t free_bits[kMaxSlabObjects / 64];  // bit i set: object i is free in the slab
};
static_assert(offsetof(Slab, nfree) == kCacheLine, "free's fields fill the first line alone");
static_assert(sizeof(Slab) == 256, "16 records per page of records (slab.cc)");

// Is `off` (address − start, for an address in one of the slab's pages) the
// start of one of its objects? One multiply and one compare:
//  * off % size == 0  <=>  off * magic mod 2^64 < magic   (off < 2^32;
//    magic = ceil(2^64 / size), Lemire et al. 2019);
//  * for off = k * size, off * magic mod 2^64 == k * e, with
//    e = size * magic mod 2^64, which is ≥ 1 unless size is a power of two;
//    so bound = (objects − 1) * e + 1 also rejects k ≥ objects (the slab's tail).
//    Power-of-two classes have no tail (static_assert in size_classes.h), so
//    their bound is magic.
// A zeroed record (bound 0) rejects everything: a free racing with the release
// of its slab's record page is reported, never taken for an object.
inline uint64_t offset_bound(const ClassInfo& ci) {
  uint64_t e = uint64_t{ci.size} * ci.magic;
  uint64_t tail = uint64_t{ci.slab_pages} * kPageSize - uint64_t{ci.objects} * ci.size;
  return tail == 0 ? ci.magic : uint64_t{ci.objects - 1} * e + 1;
}
inline bool valid_offset(const Slab* s, uintptr_t off) { return off * s->magic < s->bound; }

namespace slab {

// NUMA (platform/numa.h): the class lists (partial slabs, the cached empty
// slab, the counts) and their locks are kept per node pool; a slab belongs
// to the node of its chunk (Slab::node). With one node only node 0's exist.

// Take up to n objects of class cls out of node `node`'s slabs into out[0..);
// returns how many (0 only when the OS refuses memory). out is filled so that
// popping from the end hands objects out in increasing address order. Each
// slab taken from records `owner` (the refilling thread's cache) as its owner.
uint32_t refill(unsigned cls, void** out, uint32_t n, const void* owner, unsigned node = 0);

// Return n objects of class cls to their slabs, each to its own node's lists
// whoever calls. Aborts with "magslab: double free of 0x…" if one is already
// free in its slab.
void release(unsigned cls, void* const* objs, uint32_t n);

// The node all n objects (n > 0, valid objects of this allocator) belong to,
// or -1 if they belong to several (or one is not a slab object).
int home_node(void* const* objs, uint32_t n);

// True if p (a valid object address of class cls) is free in its slab.
bool is_free_in_slab(unsigned cls, void* p);

// Give back the cached empty slab of every class and node (to the page heap,
// dirty); returns its bytes.
size_t trim();
// Decay (small/decay.h): give back each class's cached empty slab that has
// been cached since before `cutoff`, and decommit the pages of Slab records
// unused since before `record_cutoff`. Returns bytes given back; *pending is
// set when something cached may decay later.
size_t decay(uint64_t cutoff, uint64_t record_cutoff, bool* pending);

// fork(): take / release every class lock of every node pool (node by node,
// in class order), whether the pool is in use or not.
void lock_all_for_fork();
void unlock_all_after_fork();

// Pages of Slab records (slab.cc), by state.
struct RecordCounts {
  size_t used_pages;    // holding at least one record in use
  size_t idle_pages;    // every record unused, still committed (decay decommits them)
  size_t purged_pages;  // every record unused, decommitted (or never touched)
};
RecordCounts record_counts();

struct ClassCounts {
  size_t carved_objects;
  size_t slabs;
  size_t empty_cached_slabs;
};
// Summed over the nodes.
ClassCounts counts(unsigned cls);
// Of node `node` alone.
ClassCounts counts_on(unsigned cls, unsigned node);

}  // namespace slab
}  // namespace magslab
