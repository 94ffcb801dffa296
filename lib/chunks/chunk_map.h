// chunks/chunk_map: chunk descriptors and the page map, a two-level radix that
// classifies any address in O(1) — ours (which chunk, which slab or run, or a
// mapping a layer above registered) or foreign — without reading memory at
// that address.
#pragma once

#include <atomic>
#include <cstdint>
#include <iterator>

#include "base/config.h"
#include "platform/valgrind.h"

namespace magslab {

struct Slab;
struct FreeRun;
struct RunRecord;  // defined by the layer that owns page runs (large/)
// A mapping of its own that a layer above registered in the page map (large/:
// a huge block), with a descriptor of that layer's type. This layer stores
// and returns the pointer and never reads through it.
struct Extent;

// Descriptor of a 4 MiB chunk of the page heap, kept in the metadata arena,
// never inside the chunk: a foreign pointer in an unmapped part of the
// address space is classified without touching it.
struct alignas(kCacheLine) ChunkMeta {
  // The chunk's address, as vg::hide() stores it (its first page may be a
  // block): base(), set_base().
  uintptr_t hidden_base = 0;
  uintptr_t base() const { return vg::unhide(hidden_base); }
  void set_base(uintptr_t a) { hidden_base = vg::hide(a); }
  ChunkMeta* next = nullptr;  // list of chunks / recycled descriptors
  ChunkMeta* prev = nullptr;
  uint32_t free_pages = 0;  // pages in free runs (under the heap lock)
  // The NUMA node pool (platform/numa.h) whose page heap owns this chunk and
  // whose node its memory is bound to; 0 on a one-node machine. Set when the
  // chunk is mapped, constant until it is unmapped.
  uint32_t node = 0;
  // The per-chunk record of the layer that takes runs with heap::alloc_locked
  // (large/), set and read by it under the heap lock. The page heap never
  // reads it and keeps it when the descriptor is recycled for another chunk.
  RunRecord* run_record = nullptr;
  // The page heap's list of chunks holding runs that wait for a free-run
  // record (page_heap.cc, "Runs freed while..."), under the heap lock.
  ChunkMeta* waiting_next = nullptr;

  // Two per-page tables, under the heap lock. They live in pages of their own
  // (kTablesBytes, allocated with the descriptor and kept with it when it is
  // recycled), so that an unmapped chunk's descriptor waiting in the pool
  // keeps one cache line resident, not 9 KiB (page_heap.cc gives the tables'
  // pages back; they read as zero again).
  // An owner tag per page, for the owner of the page's run to classify it
  // (large/: which pages start or continue its blocks, which started a freed
  // one). The page heap never reads it. It hands pages out with tag 0 (so
  // does a new chunk), and a free page keeps the tag its last owner left —
  // through coalescing and purging — until the page is handed out again or
  // its chunk is unmapped.
  uint8_t* tag = nullptr;  // [kPagesPerChunk]
  // [kPagesPerChunk]: at the first and last page of a free run its record;
  // at the first page of a run waiting for one, a value with the low bit set
  // (page_heap.cc). Read through page_heap.cc's run_at().
  FreeRun** free_run = nullptr;
  static constexpr size_t kTablesBytes =
      kPagesPerChunk * (sizeof(FreeRun*) + sizeof(uint8_t));  // free_run[], then tag[]
};

namespace pagemap {

inline constexpr unsigned kLeafBits = 8;
inline constexpr unsigned kRootBits = kAddressBits - kChunkShift - kLeafBits;
static_assert(kRootBits == 17);

inline constexpr unsigned kLeafPageBits = kLeafBits + kChunkShift - kPageShift;  // 18

// What a chunk slot holds: nothing, the descriptor of a page-heap chunk, or
// an Extent. The low bit of the stored word tells the two apart (descriptors
// are at least 2-byte aligned; the arena's are 64), so one load decides.
class Entry {
 public:
  static constexpr uintptr_t kExtentBit = 1;
  constexpr Entry() = default;
  constexpr explicit Entry(uintptr_t word) : word_(word) {}
  bool empty() const { return word_ == 0; }
  // The chunk, or nullptr (empty, or an extent).
  ChunkMeta* chunk() const {
    return (word_ & kExtentBit) != 0 ? nullptr : reinterpret_cast<ChunkMeta*>(word_);
  }
  // The extent, or nullptr (empty, or a chunk).
  Extent* extent() const {
    return (word_ & kExtentBit) != 0 ? reinterpret_cast<Extent*>(word_ & ~kExtentBit) : nullptr;
  }

 private:
  uintptr_t word_ = 0;
};

// A leaf covers 1 GiB (2^30 bytes): an Entry per 4 MiB chunk slot and, for
// the free fast path, the owning slab of every page — so free reaches the
// slab in two dependent loads (root, leaf). 4 MiB of address space (a word
// and a slab pointer per page), mapped lazily and never unmapped; only the
// entries of chunks in use are touched (16 KiB per chunk). Untouched, but
// counted by RLIMIT_AS and RLIMIT_DATA: a program pays 4 MiB of its limit for
// each 1 GiB region its heap reaches (0.4 % of the region). Until stop 41 a
// leaf covered 16 GiB in 64 MiB, and under `ulimit -d 65536` or `ulimit -v
// 65536` the first allocation's leaf alone failed every allocation, where
// glibc needs 16 MiB of data (ctests small_limit_*); the root grew from 64 KiB
// to 1 MiB of .bss for it.
// A page's word: what free needs of the slab holding the page, in one load, so
// free never reads the slab's record. Its bits belong to the layer that carves
// slabs (small/slab.h: where the slab starts, its class and owner), which
// stores the same word in every page of a slab with set_slab() and
// set_slab_words(); 0: the page is in no slab. A slab has at most
// kMaxSlabPages pages (1 MiB: slab.h's word keeps the start modulo that).
inline constexpr uint32_t kMaxSlabPages = 256;

struct Leaf {
  // Each page's word (above), or 0. Stored with release after the page's slab
  // is set up and entered in `page` (slab.cc), loaded with acquire. First, so
  // free's index needs no offset.
  std::atomic<uint64_t> word[size_t{1} << kLeafPageBits];
  // The slab owning each page, or nullptr: for the slow paths, which need the
  // record. Stored with release after the slab is set up, loaded with acquire.
  std::atomic<Slab*> page[size_t{1} << kLeafPageBits];
  std::atomic<uintptr_t> entry[size_t{1} << kLeafBits];  // Entry words
};

// The root is in .bss (1 MiB of zero pages, one touched per 512 GiB in use): no initialisation,
// so lookups work before any constructor and before the first allocation.
extern std::atomic<Leaf*> g_root[size_t{1} << kRootBits];

inline Leaf* leaf_of(uintptr_t addr) {
  // acquire: pairs with the release in set(); the leaf's contents are visible.
  return g_root[addr >> (kChunkShift + kLeafBits)].load(std::memory_order_acquire);
}

// The chunk or extent registered for the chunk slot of `addr`; empty for
// foreign addresses.
inline Entry lookup(uintptr_t addr) {
  if (MAGSLAB_UNLIKELY(addr >> kAddressBits)) return Entry{};
  Leaf* leaf = leaf_of(addr);
  if (MAGSLAB_UNLIKELY(leaf == nullptr)) return Entry{};
  // acquire: pairs with the release in set(); the descriptor is initialised.
  return Entry{leaf->entry[(addr >> kChunkShift) & ((size_t{1} << kLeafBits) - 1)].load(
      std::memory_order_acquire)};
}

// The slab owning the page of `addr`, or nullptr (foreign, large, huge, free).
inline Slab* lookup_slab(uintptr_t addr) {
  if (MAGSLAB_UNLIKELY(addr >> kAddressBits)) return nullptr;
  Leaf* leaf = leaf_of(addr);
  if (MAGSLAB_UNLIKELY(leaf == nullptr)) return nullptr;
  // acquire: pairs with the release in set_slab(); the slab's fields are set.
  return leaf->page[(addr >> kPageShift) & ((size_t{1} << kLeafPageBits) - 1)].load(
      std::memory_order_acquire);
}

// The word of the page of `addr` (above): 0 for foreign, large, huge and free pages.
inline uint64_t lookup_word(uintptr_t addr) {
  size_t root = addr >> (kChunkShift + kLeafBits);  // past the address space: no slab
  if (MAGSLAB_UNLIKELY(root >= std::size(g_root))) return 0;
  // acquire: pairs with the release in leaf_for(); the leaf's contents are visible.
  Leaf* leaf = g_root[root].load(std::memory_order_acquire);
  if (MAGSLAB_UNLIKELY(leaf == nullptr)) return 0;
  // acquire: pairs with the release in set_slab(); a slow path that goes on to
  // lookup_slab() finds the slab that the word describes.
  return leaf->word[(addr >> kPageShift) & ((size_t{1} << kLeafPageBits) - 1)].load(
      std::memory_order_acquire);
}

// The word and the slab of the page of `addr` from one walk (check mode's
// paths, which need both): {0, nullptr} for foreign, large, huge and free
// pages; word 0 with a slab for a hollow page.
struct PageInfo {
  uint64_t word;
  Slab* slab;
};
inline PageInfo lookup_page(uintptr_t addr) {
  size_t root = addr >> (kChunkShift + kLeafBits);
  if (MAGSLAB_UNLIKELY(root >= std::size(g_root))) return {0, nullptr};
  // acquire: as in lookup_word() and lookup_slab().
  Leaf* leaf = g_root[root].load(std::memory_order_acquire);
  if (MAGSLAB_UNLIKELY(leaf == nullptr)) return {0, nullptr};
  size_t i = (addr >> kPageShift) & ((size_t{1} << kLeafPageBits) - 1);
  // acquire (both): pair with the releases in set_slab() / set_slab_words().
  return {leaf->word[i].load(std::memory_order_acquire),
          leaf->page[i].load(std::memory_order_acquire)};
}

// Map the chunk-sized slot at `chunk_addr` to a chunk or an extent (not
// nullptr), or clear it. The caller owns the slot: it has the slot's range
// mapped for that descriptor, and writes it under the lock that owns the
// descriptor (a chunk's: the page-heap lock; an extent's: its layer's). A slot
// is cleared before its range goes back to the OS, so two owners of one slot
// never overlap. set: false when a leaf cannot be allocated.
bool set(uintptr_t chunk_addr, ChunkMeta* chunk);
bool set(uintptr_t chunk_addr, Extent* extent);
void clear(uintptr_t chunk_addr);

// Give back to the OS the page words and slab pointers of the chunk slot at
// `chunk_addr` (16 KiB of the leaf per slot; they read as zero afterwards, as
// before they were first touched). For a chunk about to be unmapped: its pages
// are in no slab, so every word is already 0 and nobody stores one (words are
// stored only for pages of slabs), and a concurrent lookup reads 0 either way.
// Without this, a burst that once needed N chunks would keep 16 KiB × N of
// page map resident for good.
void release_slot_pages(uintptr_t chunk_addr);

// Make sure the leaves covering [from, to) exist, so that set() on any slot
// in that range cannot fail afterwards. Safe under any lock (leaves are
// installed with a CAS).
bool prepare(uintptr_t from, uintptr_t to);

// Record `s` as the owner of npages (<= kMaxSlabPages) pages from
// `first_page_addr`, which lie in a registered chunk (so the leaf exists), with
// `word` (nonzero) as the word of each. s == nullptr (and word 0) clears them.
void set_slab(uintptr_t first_page_addr, uint32_t npages, Slab* s, uint64_t word);
// Change the words of a slab's pages (as set_slab(), keeping the slab).
void set_slab_words(uintptr_t first_page_addr, uint32_t npages, uint64_t word);

}  // namespace pagemap
}  // namespace magslab
