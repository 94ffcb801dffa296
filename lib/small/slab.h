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

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "base/misuse.h"
#include "chunks/chunk_map.h"
#include "ds/tagged_stack.h"
#include "platform/valgrind.h"
#include "small/size_classes.h"

namespace magslab {

struct RecordPage;  // slab.cc

// Slab::list: the list of its class a slab is on.
enum SlabList : uint8_t { kListNone, kListShared, kListKept };

struct alignas(kCacheLine) Slab {
  // First line: constant while the slab is carved; set before the slab is
  // entered in the page map (pagemap::set_slab). Free does not read the record
  // at all (its page word says what it needs, below); slow paths do.
  // Address of object 0 (the first page), as vg::hide() stores it: start().
  uintptr_t hidden_start = 0;
  uint32_t cls = 0;
  uint32_t first_page = 0;  // constant while carved, like chunk
  ChunkMeta* chunk = nullptr;
  // The NUMA node pool (platform/numa.h) whose class lists hold it, here on
  // the line release already reads: the one it was carved for, which is its
  // chunk's (chunk->node) unless the OS refused that node a chunk (slab.cc,
  // carve). Constant while carved.
  uint32_t node = 0;
  // Exact mode only (kExactRequested): the size requested for object i, written
  // by whoever takes the object out of a magazine for the program and read by
  // its free (the program's hand-over of the pointer orders the two).
  // kMaxSlabObjects entries in its record page's side block (slab.cc; set
  // whenever the record is taken, decommitted with the page). Check mode
  // keeps each object's state here instead (lib/api/check.cc; cleared when
  // the slab is carved). nullptr otherwise.
  uint32_t* requested = nullptr;

  // Second line on: under the class lock.
  alignas(kCacheLine) uint32_t nfree = 0;  // bits set in free_bits
  uint32_t hint = 0;                       // no free bits in words below this one
  Slab* next = nullptr;                    // the list of the class it is on (`list`)
  Slab* prev = nullptr;
  // Which list of its class the slab is on (SlabList): none (full, or the
  // cached empty one), the shared partial list, or the list of partial slabs
  // kept for its owner (slab.cc, SlabClass::kept; the bucket follows from `owner`).
  uint8_t list = 0;
  // Pages of this slab that slab::hollow() decommitted and that no object
  // handed out since has touched: their page words are 0 (below). 0 while
  // the slab is unpublished.
  uint16_t hollow = 0;
  // The owner tag of the thread cache that last refilled a magazine from this
  // slab, also in the slab's page words (slab_word()), rewritten when it changes.
  uint64_t owner = 0;
  RecordPage* home = nullptr;                // the record page holding this record (slab.cc)
  uint64_t free_bits[kMaxSlabObjects / 64];  // bit i set: object i is free in the slab

  uintptr_t start() const { return vg::unhide(hidden_start); }
  void set_start(uintptr_t a) { hidden_start = vg::hide(a); }
};
static_assert(offsetof(Slab, nfree) == kCacheLine, "the constant fields fill the first line alone");
static_assert(sizeof(Slab) == 256, "16 records per page of records (slab.cc)");

// The page word of a slab's pages (pagemap::lookup_word), the same in every
// page of the slab (except hollow pages: 0, slab::hollow()): everything free
// needs, in one load, so that it never reads the slab's record. Laid out so
// that free decodes it with an add, a shift and masks:
//   bits  0..19  minus the slab's start, modulo 2^20 (kWordBaseMask), so that
//                (a + word) & kWordBaseMask is the offset of address a from the
//                slab's object 0 for any a in the slab (at most kMaxSlabPages
//                pages, 2^20 bytes): one add and one mask
//   bits 20..26  class + 1 (0: the page is in no slab), so that word_slot(word)
//                is 32 × (class + 1): the byte offset of the class's entry in
//                kOffsetChecks and of its Pair in a ThreadCache
//   bits 27..63  owner tag: ThreadCache::owner_tag of the thread that last
//                refilled a magazine from the slab (Slab::owner), 0 for none.
//                Only a hint for where free() puts an object (thread_cache.h: own
//                objects go to the loaded magazine, others' to the remote one);
//                correctness never depends on it.
// Written under the class lock when the slab is entered, when its owner
// changes, and (cleared) when it goes back; read by free with one acquire load.
inline constexpr uint64_t kWordBaseMask = (uint64_t{1} << 20) - 1;
inline constexpr unsigned kWordClassShift = 20;
inline constexpr unsigned kWordSlotScale = 5;  // log2 of 32, the size of a slot (entry, Pair)
inline constexpr uint64_t kWordSlotMask = uint64_t{127} << kWordSlotScale;
inline constexpr unsigned kOwnerTagShift = 27;
inline constexpr uint64_t kOwnerTagMask = ~((uint64_t{1} << kOwnerTagShift) - 1);
static_assert(kNumClasses + 1 <= 128, "class + 1 fits the word's 7 bits");
static_assert(uint64_t{pagemap::kMaxSlabPages} * kPageSize == kWordBaseMask + 1,
              "an offset in a slab fits the word's low bits");
static_assert(kWordClassShift + 7 == kOwnerTagShift, "the class sits between base and owner");

// The n-th owner tag (n ≥ 1; 37 bits: never wraps in practice, and a repeat
// would only route some frees differently).
inline uint64_t owner_tag(uint64_t n) { return n << kOwnerTagShift; }
// The word of the pages of a slab of class cls starting at `start`.
inline uint64_t slab_word(unsigned cls, uint64_t owner, uintptr_t start) {
  return owner | uint64_t{cls + 1} << kWordClassShift | ((uint64_t{0} - start) & kWordBaseMask);
}
// 32 × (class + 1), or 0 for w == 0.
inline uint64_t word_slot(uint64_t w) {
  return (w >> (kWordClassShift - kWordSlotScale)) & kWordSlotMask;
}
inline unsigned word_class(uint64_t w) {
  return static_cast<unsigned>(word_slot(w) >> kWordSlotScale) - 1;
}
inline uint64_t word_owner(uint64_t w) { return w & kOwnerTagMask; }
// Offset of address a from its slab's object 0, for a in a page with word w.
inline uint64_t word_offset(uint64_t w, uintptr_t a) { return (a + w) & kWordBaseMask; }

// Is `off` (from object 0 of a slab of class cls, for an address in one of the
// slab's pages) the start of one of its objects? One multiply and one compare:
//  * off % size == 0  <=>  off * magic mod 2^64 < magic   (off < 2^32;
//    magic = ceil(2^64 / size), Lemire et al. 2019);
//  * for off = k * size, off * magic mod 2^64 == k * e, with
//    e = size * magic mod 2^64, which is ≥ 1 unless size is a power of two;
//    so bound = (objects − 1) * e + 1 also rejects k ≥ objects (the slab's tail).
//    Power-of-two classes have no tail (static_assert in size_classes.h), so
//    their bound is magic.
// 32 bytes an entry, indexed by class + 1 (word_slot(word) is the byte
// offset); entry 0, for a page in no slab, has bound 0 and rejects everything.
// The class's object size rides along, for the sized free's check: it is on
// the line the offset check has just read.
struct alignas(32) OffsetCheck {
  uint64_t magic;
  uint64_t bound;
  uint64_t size;
};
constexpr OffsetCheck offset_check(const ClassInfo& ci) {
  uint64_t e = uint64_t{ci.size} * ci.magic;
  uint64_t tail = uint64_t{ci.slab_pages} * kPageSize - uint64_t{ci.objects} * ci.size;
  return {ci.magic, tail == 0 ? ci.magic : uint64_t{ci.objects - 1} * e + 1, ci.size};
}
inline constexpr std::array<OffsetCheck, kNumClasses + 1> kOffsetChecks = [] {
  std::array<OffsetCheck, kNumClasses + 1> t{};
  t[0] = {0, 0, 0};
  for (unsigned c = 0; c < kNumClasses; ++c) t[c + 1] = offset_check(kClasses[c]);
  return t;
}();
static_assert(
    [] {
      for (const ClassInfo& ci : kClasses)
        if (ci.slab_pages > pagemap::kMaxSlabPages) return false;
      return true;
    }(),
    "a slab's page index fits its page words");

inline const OffsetCheck& word_check(uint64_t w) {
  return *reinterpret_cast<const OffsetCheck*>(reinterpret_cast<const char*>(kOffsetChecks.data()) +
                                               word_slot(w));
}
// Is a (an address in a page whose word is w) the start of an object of the
// page's slab? False for every address of a page in no slab (w == 0).
inline bool valid_word(uint64_t w, uintptr_t a) {
  const OffsetCheck& oc = word_check(w);
  return word_offset(w, a) * oc.magic < oc.bound;
}
// The object size of the class of a page with word w (0 for a page in no slab).
inline uint64_t word_size(uint64_t w) { return word_check(w).size; }

namespace slab {

// NUMA (platform/numa.h): the class lists (partial slabs, the cached empty
// slab, the counts) and their locks are kept per node pool; a slab belongs
// to the node of its chunk (Slab::node). With one node only node 0's exist.

// Take up to n objects of class cls out of node `node`'s slabs into out[0..);
// returns how many (0 only when the OS refuses memory). out is filled so that
// popping from the end hands objects out in increasing address order. Each
// slab taken from records `owner` (the refilling thread cache's owner tag, or
// 0) as its owner. `keep`: a slab the refill leaves partly free is kept for
// `owner`'s next refills (slab.cc, "Partial slabs kept for their owner");
// else it goes on the shared list.
uint32_t refill(unsigned cls, void** out, uint32_t n, uint64_t owner, unsigned node = 0,
                bool keep = false);

// Of the slabs of objs[0..n) (objects of class cls in the caller's magazine,
// so their slabs stay in use), give those of NUMA node `node` (the caller's)
// whose owner tag gone(tag) says no running thread holds to `owner`: their
// page words then send the caller's frees of their objects to its loaded
// magazine (thread_cache.h), and its mallocs hand them out, so another node's
// slabs are left alone. Each slab under its class lock, rechecked there (a
// refill may have taken it first). Returns the slabs adopted.
uint32_t adopt(unsigned cls, void* const* objs, uint32_t n, uint64_t owner, unsigned node,
               bool (*gone)(uint64_t tag));

// Return n objects of class cls to their slabs, each to its own node's lists
// whoever calls. Aborts with "magslab: double free of 0x…" if one is already
// free in its slab. A full slab made partial here goes on the shared list.
void release(unsigned cls, void* const* objs, uint32_t n);

// The partial slabs kept for `owner` go to the shared lists: its thread
// exited (or, in a forked child, does not exist) or will idle.
void disown(uint64_t owner);

// The node all n objects (n > 0, valid objects of this allocator) belong to,
// or -1 if they belong to several (or one is not a slab object).
int home_node(void* const* objs, uint32_t n);

// True if p (a valid object address of class cls) is free in its slab.
bool is_free_in_slab(unsigned cls, void* p);

// Give back the cached empty slab of every class and node (to the page heap,
// dirty); returns its bytes.
size_t trim();
// Decommit, in every slab in use, the pages that only free objects overlap
// (magslab_trim_all: the slabs that objects in idle threads' magazines keep
// in use). A hollow page's word becomes 0, as for a page in no slab, until a
// refill hands out an object on it: so a free of one of its objects (each is
// free in its slab: a double or invalid free) misses free's fast path and is
// reported (report_hollow), although the free key in the object's first word
// is gone. A refill that makes a page whole again writes the key back into
// the page's free objects. Runs each class's slabs under its lock, with
// madvise() calls: for an explicit trim only. Returns bytes decommitted.
size_t hollow();
// Bytes of hollow pages (decommitted by hollow(), untouched since).
size_t hollow_bytes();
// p is in a hollow page of slab s (its word is 0 and pagemap::lookup_slab
// finds s): report the misuse `kind` (a free's, a realloc's, a
// malloc_usable_size's) — for a free of an object start, a double free.
[[noreturn]] void report_hollow(const void* p, Misuse kind);
// Is a the start of one of slab s's objects? (The page word's check, from
// the record: for a hollow page.)
inline bool object_start(const Slab* s, uintptr_t a) {
  const ClassInfo& ci = kClasses[s->cls];
  uintptr_t off = a - s->start();
  return a >= s->start() && off % ci.size == 0 && off / ci.size < ci.objects;
}
// Decay (small/decay.h): give back each class's cached empty slab that has
// been cached since before `cutoff`, and decommit the pages of Slab records
// unused since before `record_cutoff`. Returns bytes given back; *pending is
// set when something cached may decay later.
size_t decay(uint64_t cutoff, uint64_t record_cutoff, bool* pending);
// The classes (of every node pool) a decay pass looks at: those whose empty
// slab slot holds one, as their marks say (slab.cc: g_has_empty).
unsigned classes_to_decay();

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
