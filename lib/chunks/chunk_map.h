// chunks/chunk_map: chunk descriptors and the page map, a two-level radix over
// chunk numbers that classifies any address in O(1) — ours (which chunk, which
// slab or run) or foreign — without reading memory at that address.
#pragma once

#include <atomic>
#include <cstdint>

#include "config.h"

namespace magslab {

struct Slab;
struct FreeRun;

// What a page of a normal chunk holds. Written under the page-heap lock.
enum PageState : uint8_t {
  kPageFree = 0,        // in a free run (decommitted)
  kPageFreedLarge = 1,  // free; was the first page of a large block (names a double free)
  kPageSlab = 2,        // part of a slab (see ChunkMeta::slab)
  kPageLargeStart = 3,  // first page of a live large block
  kPageLargeBody = 4,   // later page of a live large block
  kPageLargeCached = 5, // first page of a large block in the large-run cache
};

// Descriptor of a 4 MiB chunk (or of one huge mapping), kept in the metadata
// arena, never inside the chunk: a foreign pointer in an unmapped part of the
// address space is classified without touching it.
struct alignas(kCacheLine) ChunkMeta {
  uintptr_t base = 0;
  bool huge = false;
  // Huge mappings: mapped bytes and the bytes requested.
  size_t huge_size = 0;
  size_t huge_request = 0;
  ChunkMeta* next = nullptr;  // list of normal chunks / recycled descriptors
  ChunkMeta* prev = nullptr;
  uint32_t free_pages = 0;    // pages in free runs (under the heap lock)

  // Read without a lock by the free fast path: the slab owning each page, or
  // nullptr. Stored with release after the slab is set up; loaded with acquire.
  std::atomic<Slab*> slab[kPagesPerChunk];
  // Under the heap lock:
  uint8_t state[kPagesPerChunk];
  uint32_t large_pages[kPagesPerChunk];    // at a large block's first page: its pages
  uint32_t large_request[kPagesPerChunk];  // at a large block's first page: bytes asked
  FreeRun* free_run[kPagesPerChunk];       // at the first and last page of a free run
};

namespace pagemap {

inline constexpr unsigned kLeafBits = 12;
inline constexpr unsigned kRootBits = kAddressBits - kChunkShift - kLeafBits;
static_assert(kRootBits == 13);

struct Leaf {
  std::atomic<ChunkMeta*> entry[size_t{1} << kLeafBits];
};

// The root is in .bss (64 KiB of zero pages until used): no initialisation,
// so lookups work before any constructor and before the first allocation.
extern std::atomic<Leaf*> g_root[size_t{1} << kRootBits];

// The descriptor of the chunk holding `addr`, or nullptr for foreign addresses.
inline ChunkMeta* lookup(uintptr_t addr) {
  if (MAGSLAB_UNLIKELY(addr >> kAddressBits)) return nullptr;
  // acquire: pairs with the release in set(); the leaf's contents are visible.
  Leaf* leaf = g_root[addr >> (kChunkShift + kLeafBits)].load(std::memory_order_acquire);
  if (MAGSLAB_UNLIKELY(leaf == nullptr)) return nullptr;
  // acquire: pairs with the release in set(); the descriptor is initialised.
  return leaf->entry[(addr >> kChunkShift) & ((size_t{1} << kLeafBits) - 1)].load(
      std::memory_order_acquire);
}

inline Slab* lookup_slab(uintptr_t addr) {
  ChunkMeta* m = lookup(addr);
  if (MAGSLAB_UNLIKELY(m == nullptr)) return nullptr;
  // acquire: pairs with the release when the slab was carved; its fields are set.
  return m->slab[(addr >> kPageShift) & (kPagesPerChunk - 1)].load(std::memory_order_acquire);
}

// Map the chunk-sized slot at `chunk_addr` to `meta` (nullptr to clear).
// Callers hold the page-heap lock. false when a leaf cannot be allocated.
bool set(uintptr_t chunk_addr, ChunkMeta* meta);

}  // namespace pagemap
}  // namespace magslab
