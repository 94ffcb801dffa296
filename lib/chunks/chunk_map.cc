// chunks/chunk_map: page-map updates.
#include "chunks/chunk_map.h"

#include "chunks/meta_arena.h"
#include "platform/check.h"
#include "platform/platform.h"

namespace magslab::pagemap {

std::atomic<Leaf*> g_root[size_t{1} << kRootBits];

namespace {

// The leaf covering addr, created if need be. Slots of one leaf may be
// written under different locks (a chunk's under the page-heap lock, an
// extent's under its owner's), so a new leaf is installed with a CAS.
Leaf* leaf_for(uintptr_t addr) {
  auto& slot = g_root[addr >> (kChunkShift + kLeafBits)];
  // acquire: a leaf another thread installed is seen zeroed.
  Leaf* leaf = slot.load(std::memory_order_acquire);
  if (leaf != nullptr) return leaf;
  // Straight from the OS (4 MiB of lazily committed address space), never
  // unmapped once installed. Counted in the metadata statistic.
  auto* fresh = static_cast<Leaf*>(platform::map_sparse(sizeof(Leaf)));
  if (fresh == nullptr) return nullptr;
  // release: a lookup that sees the leaf sees it zeroed (it is fresh memory);
  // acquire on failure: as the load above, for the leaf that won.
  if (slot.compare_exchange_strong(leaf, fresh, std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
    meta::note_mapped(sizeof(Leaf));
    return fresh;
  }
  platform::unmap_sparse(fresh, sizeof(Leaf));  // another thread installed one first
  return leaf;
}

}  // namespace

bool prepare(uintptr_t from, uintptr_t to) {
  if (to > (uintptr_t{1} << kAddressBits)) return false;
  constexpr uintptr_t kLeafSpan = uintptr_t{1} << (kChunkShift + kLeafBits);
  for (uintptr_t a = from & ~(kLeafSpan - 1); a < to; a += kLeafSpan)
    if (leaf_for(a) == nullptr) return false;
  return true;
}

namespace {

// Store an entry word for the slot of chunk_addr (0: clear it).
bool store(uintptr_t chunk_addr, uintptr_t word) {
  if (chunk_addr >> kAddressBits) return word == 0;
  Leaf* leaf;
  if (word == 0) {
    // acquire: as in leaf_for(); no leaf means the slot is already clear.
    leaf = g_root[chunk_addr >> (kChunkShift + kLeafBits)].load(std::memory_order_acquire);
    if (leaf == nullptr) return true;
  } else {
    leaf = leaf_for(chunk_addr);
    if (leaf == nullptr) return false;
  }
  // release: the descriptor's fields are written before it becomes visible.
  leaf->entry[(chunk_addr >> kChunkShift) & ((size_t{1} << kLeafBits) - 1)].store(
      word, std::memory_order_release);
  return true;
}

}  // namespace

bool set(uintptr_t chunk_addr, ChunkMeta* chunk) {
  auto word = reinterpret_cast<uintptr_t>(chunk);
  MAGSLAB_CHECK(word != 0 && (word & Entry::kExtentBit) == 0, "page map: bad chunk descriptor");
  return store(chunk_addr, word);
}

bool set(uintptr_t chunk_addr, Extent* extent) {
  auto word = reinterpret_cast<uintptr_t>(extent);
  MAGSLAB_CHECK(word != 0 && (word & Entry::kExtentBit) == 0, "page map: bad extent descriptor");
  return store(chunk_addr, word | Entry::kExtentBit);
}

void clear(uintptr_t chunk_addr) { store(chunk_addr, 0); }

void release_slot_pages(uintptr_t chunk_addr) {
  static_assert(kPagesPerChunk * sizeof(uint64_t) % kPageSize == 0 &&
                    kPagesPerChunk * sizeof(Slab*) % kPageSize == 0,
                "a chunk slot's words and slab pointers are whole pages of the leaf");
  if (chunk_addr >> kAddressBits) return;
  Leaf* leaf = leaf_of(chunk_addr);
  if (leaf == nullptr) return;
  // A multiple of kPagesPerChunk (chunk slots are chunk-aligned), so both
  // ranges start on a page boundary of the (page-aligned) leaf.
  size_t i = (chunk_addr >> kPageShift) & ((size_t{1} << kLeafPageBits) - 1);
  // Refused: the words stay resident, and zero, as they were.
  platform::decommit(&leaf->word[i], kPagesPerChunk * sizeof(uint64_t));
  platform::decommit(&leaf->page[i], kPagesPerChunk * sizeof(Slab*));
}

void set_slab_words(uintptr_t first_page_addr, uint32_t npages, uint64_t word) {
  MAGSLAB_CHECK(npages <= kMaxSlabPages, "page map: slab too long");
  Leaf* leaf = leaf_of(first_page_addr);
  size_t i = (first_page_addr >> kPageShift) & ((size_t{1} << kLeafPageBits) - 1);
  for (uint32_t k = 0; k < npages; ++k)
    // release: a free that finds this word and then the page's slab (slow
    // paths) sees the slab entered, and its fields set, before.
    leaf->word[i + k].store(word, std::memory_order_release);
}

void set_slab(uintptr_t first_page_addr, uint32_t npages, Slab* s, uint64_t word) {
  MAGSLAB_CHECK((s == nullptr) == (word == 0), "page map: a slab needs a word, and only a slab");
  Leaf* leaf = leaf_of(first_page_addr);
  size_t i = (first_page_addr >> kPageShift) & ((size_t{1} << kLeafPageBits) - 1);
  // Cleared words first (a free then no longer takes the page for a slab's),
  // set words last (after the slab is entered).
  if (s == nullptr) set_slab_words(first_page_addr, npages, 0);
  for (uint32_t k = 0; k < npages; ++k)
    // release: a slow path that finds the slab here sees its fields (set before).
    leaf->page[i + k].store(s, std::memory_order_release);
  if (s != nullptr) set_slab_words(first_page_addr, npages, word);
}

}  // namespace magslab::pagemap
