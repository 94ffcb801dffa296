// chunks/page_heap: free runs in size bins, coalescing, chunk mapping and cache.
#include "chunks/page_heap.h"

#include <cstring>
#include <new>

#include "chunks/meta_arena.h"
#include "platform/platform.h"

namespace magslab {

struct FreeRun {
  ChunkMeta* chunk;
  uint32_t page;
  uint32_t npages;
  FreeRun* next;  // bin list, or the recycle list
  FreeRun* prev;
};

namespace heap {

Lock g_lock;

namespace {

// Bins: runs of 1..128 pages have a bin each (exact fit); longer runs share a
// bin per power of two: [129,256) [256,512) [512,1024) [1024]. A bitmap marks
// the non-empty bins.
constexpr unsigned kExactBins = 128;
constexpr unsigned kNumBins = kExactBins + 4;  // [128,256) [256,512) [512,1024) [1024]
static_assert(kPagesPerChunk == 1024);

unsigned bin_of(size_t npages) {
  if (npages <= kExactBins) return static_cast<unsigned>(npages - 1);
  unsigned lg = 63u - static_cast<unsigned>(__builtin_clzll(npages));  // 7..10
  return kExactBins + (lg - 7);
}

FreeRun* g_bins[kNumBins];
uint64_t g_nonempty[(kNumBins + 63) / 64];
FreeRun* g_run_pool = nullptr;  // recycled FreeRun records
ChunkMeta* g_chunks = nullptr;  // all normal chunks
ChunkMeta* g_chunk_pool = nullptr;
ChunkMeta* g_huge_pool = nullptr;
size_t g_chunk_count = 0;
size_t g_free_pages = 0;
size_t g_free_chunks = 0;

FreeRun* new_run_record() {
  if (g_run_pool != nullptr) {
    FreeRun* r = g_run_pool;
    g_run_pool = r->next;
    return r;
  }
  return static_cast<FreeRun*>(meta::alloc(sizeof(FreeRun)));
}

void insert(FreeRun* r) {
  unsigned b = bin_of(r->npages);
  r->prev = nullptr;
  r->next = g_bins[b];
  if (r->next != nullptr) r->next->prev = r;
  g_bins[b] = r;
  g_nonempty[b / 64] |= uint64_t{1} << (b % 64);
  r->chunk->free_run[r->page] = r;
  r->chunk->free_run[r->page + r->npages - 1] = r;
}

void remove(FreeRun* r) {
  unsigned b = bin_of(r->npages);
  if (r->prev != nullptr) r->prev->next = r->next;
  else g_bins[b] = r->next;
  if (r->next != nullptr) r->next->prev = r->prev;
  if (g_bins[b] == nullptr) g_nonempty[b / 64] &= ~(uint64_t{1} << (b % 64));
  r->chunk->free_run[r->page] = nullptr;
  r->chunk->free_run[r->page + r->npages - 1] = nullptr;
}

// Insert a free run [page, page+npages) of `chunk`; false only if no record.
bool add_free(ChunkMeta* chunk, uint32_t page, uint32_t npages) {
  FreeRun* r = new_run_record();
  if (r == nullptr) return false;
  r->chunk = chunk;
  r->page = page;
  r->npages = npages;
  insert(r);
  return true;
}

bool map_chunk() {
  void* mem = platform::map_aligned(kChunkSize, kChunkSize);
  if (mem == nullptr) return false;
  ChunkMeta* m = g_chunk_pool;
  if (m != nullptr) {
    g_chunk_pool = m->next;
  } else {
    m = static_cast<ChunkMeta*>(meta::alloc(sizeof(ChunkMeta)));
    if (m == nullptr) {
      platform::unmap(mem, kChunkSize);
      return false;
    }
    new (m) ChunkMeta();
  }
  m->base = reinterpret_cast<uintptr_t>(mem);
  m->huge = false;
  m->free_pages = kPagesPerChunk;
  // state[] and free_run[] are all zero/null, and so are the page map's slab
  // entries: fresh memory, or reset by the time a chunk is recycled (every page
  // was free then).
  if (!pagemap::set(m->base, m) || !add_free(m, 0, kPagesPerChunk)) {
    pagemap::set(m->base, nullptr);
    platform::unmap(mem, kChunkSize);
    m->next = g_chunk_pool;
    g_chunk_pool = m;
    return false;
  }
  m->prev = nullptr;
  m->next = g_chunks;
  if (g_chunks != nullptr) g_chunks->prev = m;
  g_chunks = m;
  ++g_chunk_count;
  ++g_free_chunks;
  g_free_pages += kPagesPerChunk;
  return true;
}

void unmap_chunk(ChunkMeta* m) {
  FreeRun* r = m->free_run[0];
  remove(r);
  r->next = g_run_pool;
  g_run_pool = r;
  if (m->prev != nullptr) m->prev->next = m->next;
  else g_chunks = m->next;
  if (m->next != nullptr) m->next->prev = m->prev;
  pagemap::set(m->base, nullptr);
  platform::unmap(reinterpret_cast<void*>(m->base), kChunkSize);
  memset(m->state, 0, sizeof m->state);  // kPageFreedLarge markers
  m->next = g_chunk_pool;
  g_chunk_pool = m;
  --g_chunk_count;
  --g_free_chunks;
  g_free_pages -= kPagesPerChunk;
}

// First run that fits `need` pages, or nullptr.
FreeRun* find(size_t need) {
  unsigned b = bin_of(need);
  if (b >= kExactBins) {
    for (FreeRun* r = g_bins[b]; r != nullptr; r = r->next)
      if (r->npages >= need) return r;
    ++b;
  }
  // Every run in a higher bin is longer than `need`.
  for (unsigned w = b / 64; w < std::size(g_nonempty); ++w) {
    uint64_t bits = g_nonempty[w];
    if (w == b / 64) bits &= ~uint64_t{0} << (b % 64);
    if (bits != 0) return g_bins[w * 64 + static_cast<unsigned>(__builtin_ctzll(bits))];
  }
  return nullptr;
}

}  // namespace

bool alloc_locked(size_t npages, size_t align_pages, Run* out) {
  if (npages == 0 || npages > kPagesPerChunk) return false;
  size_t slack = align_pages > 1 ? align_pages - 1 : 0;
  if (npages + slack > kPagesPerChunk) return false;  // callers map such blocks on their own
  FreeRun* r = find(npages + slack);
  if (r == nullptr && slack != 0) {
    // An exactly-fitting run may already be aligned.
    for (unsigned b = bin_of(npages); r == nullptr && b < kNumBins; ++b)
      for (FreeRun* c = g_bins[b]; c != nullptr; c = c->next) {
        uint32_t start = static_cast<uint32_t>(align_up(c->page, align_pages));
        if (start + npages <= c->page + c->npages) {
          r = c;
          break;
        }
      }
  }
  if (r == nullptr) {
    if (!map_chunk()) return false;
    r = find(npages + slack);
    if (r == nullptr) return false;
  }
  ChunkMeta* chunk = r->chunk;
  uint32_t run_page = r->page;
  uint32_t run_len = r->npages;
  uint32_t start = static_cast<uint32_t>(align_up(run_page, align_pages > 0 ? align_pages : 1));
  uint32_t head = start - run_page;
  uint32_t tail = run_len - head - static_cast<uint32_t>(npages);
  if (run_len == kPagesPerChunk) --g_free_chunks;
  remove(r);
  // Reuse the record for the head or the tail; the neighbours of a maximal free
  // run are allocated, so the remainders need no coalescing.
  if (head != 0) {
    r->page = run_page;
    r->npages = head;
    insert(r);
    r = nullptr;
  }
  if (tail != 0) {
    uint32_t tail_page = start + static_cast<uint32_t>(npages);
    if (r != nullptr) {
      r->page = tail_page;
      r->npages = tail;
      insert(r);
      r = nullptr;
    } else if (!add_free(chunk, tail_page, tail)) {
      // No memory for a record: hand the tail out too rather than leak it.
      npages += tail;
      tail = 0;
    }
  }
  if (r != nullptr) {
    r->next = g_run_pool;
    g_run_pool = r;
  }
  chunk->free_pages -= static_cast<uint32_t>(npages);
  g_free_pages -= npages;
  *out = Run{chunk, start, static_cast<uint32_t>(npages)};
  return true;
}

void free_locked(ChunkMeta* chunk, uint32_t page, uint32_t npages) {
  chunk->free_pages += npages;
  g_free_pages += npages;
  uint32_t start = page;
  uint32_t len = npages;
  FreeRun* rec = nullptr;
  if (start > 0) {
    FreeRun* left = chunk->free_run[start - 1];
    if (left != nullptr && left->page + left->npages == start) {
      remove(left);
      start = left->page;
      len += left->npages;
      rec = left;
    }
  }
  if (start + len < kPagesPerChunk) {
    FreeRun* right = chunk->free_run[start + len];
    if (right != nullptr && right->page == start + len) {
      remove(right);
      len += right->npages;
      if (rec == nullptr) {
        rec = right;
      } else {
        right->next = g_run_pool;
        g_run_pool = right;
      }
    }
  }
  if (rec == nullptr) rec = new_run_record();
  if (rec == nullptr) {
    // Out of metadata memory: the pages stay allocated (a leak of address
    // space, not of correctness) rather than corrupt the bins.
    chunk->free_pages -= npages;
    g_free_pages -= npages;
    return;
  }
  rec->chunk = chunk;
  rec->page = start;
  rec->npages = len;
  insert(rec);
  if (len == kPagesPerChunk) {
    ++g_free_chunks;
    if (g_free_chunks > kFreeChunksKept) unmap_chunk(chunk);
  }
}

bool try_grow_locked(ChunkMeta* chunk, uint32_t page, uint32_t old_n, uint32_t new_n) {
  uint32_t next = page + old_n;
  if (next >= kPagesPerChunk || page + new_n > kPagesPerChunk) return false;
  FreeRun* r = chunk->free_run[next];
  if (r == nullptr || r->page != next || r->npages < new_n - old_n) return false;
  uint32_t take = new_n - old_n;
  remove(r);
  if (r->npages > take) {
    r->page += take;
    r->npages -= take;
    insert(r);
  } else {
    r->next = g_run_pool;
    g_run_pool = r;
  }
  chunk->free_pages -= take;
  g_free_pages -= take;
  return true;
}

size_t release_free_chunks_locked(size_t keep) {
  size_t released = 0;
  ChunkMeta* c = g_chunks;
  while (c != nullptr && g_free_chunks > keep) {
    ChunkMeta* next = c->next;
    if (c->free_pages == kPagesPerChunk) {
      unmap_chunk(c);
      released += kChunkSize;
    }
    c = next;
  }
  return released;
}

void decommit(void* addr, size_t bytes) {
  if (!platform::decommit(addr, bytes)) memset(addr, 0, bytes);
}

ChunkMeta* new_huge_meta_locked() {
  ChunkMeta* m = g_huge_pool;
  if (m != nullptr) {
    g_huge_pool = m->next;
    return m;
  }
  m = static_cast<ChunkMeta*>(meta::alloc(sizeof(ChunkMeta)));
  if (m != nullptr) new (m) ChunkMeta();
  return m;
}

void recycle_huge_meta_locked(ChunkMeta* m) {
  m->next = g_huge_pool;
  g_huge_pool = m;
}

Totals totals_locked() { return Totals{g_chunk_count, g_free_pages, g_free_chunks}; }

}  // namespace heap
}  // namespace magslab
