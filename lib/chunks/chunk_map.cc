// chunks/chunk_map: page-map updates.
#include "chunks/chunk_map.h"

#include "chunks/meta_arena.h"
#include "platform/platform.h"

namespace magslab::pagemap {

std::atomic<Leaf*> g_root[size_t{1} << kRootBits];

bool set(uintptr_t chunk_addr, ChunkMeta* meta) {
  if (chunk_addr >> kAddressBits) return meta == nullptr;
  auto& slot = g_root[chunk_addr >> (kChunkShift + kLeafBits)];
  // relaxed: leaves are only created under the page-heap lock, which we hold.
  Leaf* leaf = slot.load(std::memory_order_relaxed);
  if (leaf == nullptr) {
    if (meta == nullptr) return true;
    // Straight from the OS (32 MiB of lazily committed address space), never
    // unmapped. Counted in the metadata statistic.
    leaf = static_cast<Leaf*>(platform::map_sparse(sizeof(Leaf)));
    if (leaf == nullptr) return false;
    meta::note_mapped(sizeof(Leaf));
    // release: a lookup that sees the leaf sees it zeroed (it is fresh memory).
    slot.store(leaf, std::memory_order_release);
  }
  // release: the descriptor's fields are written before it becomes visible.
  leaf->entry[(chunk_addr >> kChunkShift) & ((size_t{1} << kLeafBits) - 1)].store(
      meta, std::memory_order_release);
  return true;
}

void set_slab(uintptr_t first_page_addr, uint32_t npages, Slab* s) {
  Leaf* leaf = leaf_of(first_page_addr);
  size_t i = (first_page_addr >> kPageShift) & ((size_t{1} << kLeafPageBits) - 1);
  for (uint32_t k = 0; k < npages; ++k)
    // release: a free that finds the slab here sees its fields (set before).
    leaf->page[i + k].store(s, std::memory_order_release);
}

}  // namespace magslab::pagemap
