// chunks/chunk_map: page-map updates.
#include "chunks/chunk_map.h"

#include "chunks/meta_arena.h"

namespace magslab::pagemap {

std::atomic<Leaf*> g_root[size_t{1} << kRootBits];

bool set(uintptr_t chunk_addr, ChunkMeta* meta) {
  if (chunk_addr >> kAddressBits) return meta == nullptr;
  auto& slot = g_root[chunk_addr >> (kChunkShift + kLeafBits)];
  // relaxed: leaves are only created under the page-heap lock, which we hold.
  Leaf* leaf = slot.load(std::memory_order_relaxed);
  if (leaf == nullptr) {
    if (meta == nullptr) return true;
    leaf = static_cast<Leaf*>(meta::alloc(sizeof(Leaf)));
    if (leaf == nullptr) return false;
    // release: a lookup that sees the leaf sees it zeroed (it is fresh memory).
    slot.store(leaf, std::memory_order_release);
  }
  // release: the descriptor's fields are written before it becomes visible.
  leaf->entry[(chunk_addr >> kChunkShift) & ((size_t{1} << kLeafBits) - 1)].store(
      meta, std::memory_order_release);
  return true;
}

}  // namespace magslab::pagemap
