// chunks/page_heap: free runs in size bins, coalescing, lazy purging, chunk
// mapping and cache.
#include "chunks/page_heap.h"

#include <cerrno>
#include <cstring>
#include <new>

#include "chunks/decay_event.h"
#include "chunks/meta_arena.h"
#include "platform/check.h"
#include "platform/numa.h"
#include "platform/platform.h"

namespace magslab {

struct FreeRun {
  ChunkMeta* chunk;
  uint32_t page;
  uint32_t npages;
  bool dirty;         // may hold resident pages with old contents (not purged yet)
  uint64_t dirty_at;  // dirty runs: when last inserted (freed, split, merged)
  FreeRun* next;      // bin list, or the recycle list
  FreeRun* prev;
  FreeRun* dnext;  // dirty list, newest first (by dirty_at; purged from the oldest end)
  FreeRun* dprev;
};

namespace heap {

Lock g_lock;

namespace {

// Bins: runs of 1..128 pages have a bin each (exact fit); longer runs share a
// bin per power of two: [129,256) [256,512) [512,1024) [1024]. A bitmap marks
// the non-empty bins.
constexpr unsigned kExactBins = 128;
constexpr unsigned kNumBins = kExactBins + 4;
static_assert(kPagesPerChunk == 1024);

unsigned bin_of(size_t npages) {
  if (npages <= kExactBins) return static_cast<unsigned>(npages - 1);
  unsigned lg = 63u - static_cast<unsigned>(__builtin_clzll(npages));  // 7..10
  return kExactBins + (lg - 7);
}

// All under g_lock.
// One per NUMA node pool (platform/numa.h): the chunks of the node and their
// free runs. A run belongs to the heap of its chunk's node (ChunkMeta::node),
// so a free finds its heap from the chunk, whichever thread frees it. With
// one node only g_heaps[0] is used: the single heap of a NUMA-unaware build.
struct NodeHeap {
  FreeRun* bins[kNumBins];
  uint64_t nonempty[(kNumBins + 63) / 64];
  ChunkMeta* chunks;   // the node's normal chunks
  size_t chunk_count;  // of them
  size_t free_pages;   // pages in free runs, dirty or not
  size_t free_chunks;  // chunks that are one free run
};
NodeHeap g_heaps[numa::kMaxNodes];
// The dirty list spans the nodes: purging goes by age and the budget is the
// process's, wherever the pages are.
FreeRun* g_dirty_head = nullptr;
FreeRun* g_dirty_tail = nullptr;
size_t g_dirty_pages = 0;       // pages in dirty free runs (an upper bound of what is resident)
FreeRun* g_run_pool = nullptr;  // recycled FreeRun records
ChunkMeta* g_chunk_pool = nullptr;

NodeHeap& heap_of(const ChunkMeta* c) { return g_heaps[c->node]; }

// A chunk's free_run[] entry is a free run's record (at its first and last
// page), nullptr, or — its low bit set — a run waiting for a record (at its
// first page only; "Runs freed while..." below): its length and dirty flag.
constexpr uintptr_t kWaitingBit = 1, kWaitingDirty = 2;
constexpr unsigned kWaitingShift = 2;
bool is_waiting(const FreeRun* e) { return (reinterpret_cast<uintptr_t>(e) & kWaitingBit) != 0; }
// The free run whose first or last page is `page`, or nullptr.
FreeRun* run_at(const ChunkMeta* c, uint32_t page) {
  FreeRun* e = c->free_run[page];
  return is_waiting(e) ? nullptr : e;
}
// platform::now_ns() at the entry of the current operation under g_lock: the
// dirty_at of what it inserts. Never decreases (the clock is monotonic), so the
// dirty list, built by pushing at the head, stays sorted by dirty_at.
uint64_t g_stamp = 0;

void stamp_now() {
  uint64_t t = platform::now_ns();
  if (t > g_stamp) g_stamp = t;
}

// Debug preset: the page-heap counts (g_lock held). Per node, every chunk's
// free pages add up to the node's free_pages, no chunk has more free pages than pages, dirty pages
// are free pages, and the fully free chunks are counted right. O(chunks).
void check_counts() {
  if constexpr (kDebugChecks) {
    size_t all_free = 0;
    for (unsigned n = 0; n < numa::kMaxNodes; ++n) {
      const NodeHeap& h = g_heaps[n];
      size_t free_pages = 0, full = 0, chunks = 0;
      for (ChunkMeta* c = h.chunks; c != nullptr; c = c->next) {
        MAGSLAB_CHECK(c->free_pages <= kPagesPerChunk,
                      "page heap: a chunk with too many free pages");
        MAGSLAB_CHECK(c->node == n, "page heap: a chunk in another node's list");
        free_pages += c->free_pages;
        ++chunks;
        FreeRun* r = run_at(c, 0);
        if (r != nullptr && r->page == 0 && r->npages == kPagesPerChunk) ++full;
      }
      MAGSLAB_CHECK(chunks == h.chunk_count, "page heap: chunk count");
      MAGSLAB_CHECK(free_pages == h.free_pages, "page heap: free pages of the chunks != total");
      MAGSLAB_CHECK(full == h.free_chunks, "page heap: fully free chunk count");
      all_free += h.free_pages;
    }
    MAGSLAB_CHECK(g_dirty_pages <= all_free, "page heap: more dirty than free pages");
  }
}

FreeRun* new_run_record() {
  if (g_run_pool != nullptr) {
    FreeRun* r = g_run_pool;
    g_run_pool = r->next;
    return r;
  }
  return static_cast<FreeRun*>(meta::alloc(sizeof(FreeRun)));
}

void recycle(FreeRun* r) {
  r->next = g_run_pool;
  g_run_pool = r;
}

// Make r findable: its bin, its boundary tags, the dirty list, the counters.
void insert(FreeRun* r) {
  NodeHeap& h = heap_of(r->chunk);
  unsigned b = bin_of(r->npages);
  r->prev = nullptr;
  r->next = h.bins[b];
  if (r->next != nullptr) r->next->prev = r;
  h.bins[b] = r;
  h.nonempty[b / 64] |= uint64_t{1} << (b % 64);
  r->chunk->free_run[r->page] = r;
  r->chunk->free_run[r->page + r->npages - 1] = r;
  if (r->dirty) {
    r->dirty_at = g_stamp;
    r->dprev = nullptr;
    r->dnext = g_dirty_head;
    if (g_dirty_head != nullptr)
      g_dirty_head->dprev = r;
    else
      g_dirty_tail = r;
    g_dirty_head = r;
    g_dirty_pages += r->npages;
  }
  if (r->npages == kPagesPerChunk) ++h.free_chunks;
}

// The inverse of insert(); the pages stay counted as free (NodeHeap::free_pages).
void remove(FreeRun* r) {
  NodeHeap& h = heap_of(r->chunk);
  unsigned b = bin_of(r->npages);
  if (r->prev != nullptr)
    r->prev->next = r->next;
  else
    h.bins[b] = r->next;
  if (r->next != nullptr) r->next->prev = r->prev;
  if (h.bins[b] == nullptr) h.nonempty[b / 64] &= ~(uint64_t{1} << (b % 64));
  r->chunk->free_run[r->page] = nullptr;
  r->chunk->free_run[r->page + r->npages - 1] = nullptr;
  if (r->dirty) {
    if (r->dprev != nullptr)
      r->dprev->dnext = r->dnext;
    else
      g_dirty_head = r->dnext;
    if (r->dnext != nullptr)
      r->dnext->dprev = r->dprev;
    else
      g_dirty_tail = r->dprev;
    g_dirty_pages -= r->npages;
  }
  if (r->npages == kPagesPerChunk) --h.free_chunks;
}

// Insert a free run [page, page+npages) of `chunk`; false only if no record.
bool add_free(ChunkMeta* chunk, uint32_t page, uint32_t npages, bool dirty) {
  FreeRun* r = new_run_record();
  if (r == nullptr) return false;
  r->chunk = chunk;
  r->page = page;
  r->npages = npages;
  r->dirty = dirty;
  insert(r);
  return true;
}

bool map_chunk(unsigned node) {
  void* mem = platform::map_aligned(kChunkSize, kChunkSize);
  if (mem == nullptr) return false;
  // Before any page is touched, so every page faults in on the node. Refused:
  // the chunk is used all the same (first touch decides where it lives).
  numa::bind(mem, kChunkSize, node);
  ChunkMeta* m = g_chunk_pool;
  if (m != nullptr) {
    g_chunk_pool = m->next;
  } else {
    m = static_cast<ChunkMeta*>(meta::alloc(sizeof(ChunkMeta)));
    void* tables = meta::alloc_pages(ChunkMeta::kTablesBytes);
    if (m == nullptr || tables == nullptr) {  // (a bounded leak of metadata)
      platform::unmap(mem, kChunkSize);
      return false;
    }
    new (m) ChunkMeta();
    m->free_run = static_cast<FreeRun**>(tables);
    m->tag = reinterpret_cast<uint8_t*>(m->free_run + kPagesPerChunk);
  }
  m->set_base(reinterpret_cast<uintptr_t>(mem));
  m->free_pages = kPagesPerChunk;
  m->node = node;  // before add_free: the run goes to this node's bins
  // tag[] and free_run[] are all zero/null, and so are the page map's slab
  // entries: fresh memory, or reset by the time a chunk is recycled (every page
  // was free then, and unmap_chunk() cleared the tags).
  if (!pagemap::set(m->base(), m) || !add_free(m, 0, kPagesPerChunk, /*dirty=*/false)) {
    pagemap::clear(m->base());
    platform::unmap(mem, kChunkSize);
    m->next = g_chunk_pool;
    g_chunk_pool = m;
    return false;
  }
  NodeHeap& h = g_heaps[node];
  m->prev = nullptr;
  m->next = h.chunks;
  if (h.chunks != nullptr) h.chunks->prev = m;
  h.chunks = m;
  ++h.chunk_count;
  h.free_pages += kPagesPerChunk;
  return true;
}

// Decommit [addr, addr+bytes); if the OS refuses, zero the pages instead, so a
// purged run always reads as zero. Purges call it without g_lock (a system call);
// unmap_chunk() with it, for a pooled descriptor's tables. Returns whether the
// OS took the pages (zeroed, they stay resident: not given back).
bool decommit(void* addr, size_t bytes) {
  if (platform::decommit(addr, bytes)) return true;
  memset(addr, 0, bytes);
  return false;
}

// Chunks unmap_chunk() took out of the heap whose munmap waits until the
// lock is let go (drain_unmaps): a resident 4 MiB chunk takes 1-3 ms to
// unmap, and every slab carve and page run of every other thread waited for
// it (stop 54's bug hunt). Their page-map entries and descriptors are gone
// already; the range stays mapped, unused, until then (no mapping can come
// there meanwhile). Under g_lock; the count is also read without it, as a
// hint (relaxed: a stale 0 leaves the unmap to the next drain; a thread reads
// its own entries' count exactly). Full: unmapped at once, as before.
constexpr size_t kMaxPendingUnmaps = 16;
uintptr_t g_pending_unmaps[kMaxPendingUnmaps];
std::atomic<size_t> g_npending_unmaps{0};

void unmap_chunk(ChunkMeta* m) {
  NodeHeap& h = heap_of(m);
  FreeRun* r = m->free_run[0];
  remove(r);
  recycle(r);
  if (m->prev != nullptr)
    m->prev->next = m->next;
  else
    h.chunks = m->next;
  if (m->next != nullptr) m->next->prev = m->prev;
  pagemap::clear(m->base());
  pagemap::release_slot_pages(m->base());  // before the range can be mapped again
  if (const size_t n = g_npending_unmaps.load(std::memory_order_relaxed); n < kMaxPendingUnmaps) {
    g_pending_unmaps[n] = m->base();
    g_npending_unmaps.store(n + 1, std::memory_order_relaxed);
  } else {
    platform::unmap(reinterpret_cast<void*>(m->base()), kChunkSize);
  }
  // Pooled, the descriptor keeps its tables (free_run[] all null now: the
  // chunk was one free run, removed) but not their pages: they go back, the
  // tags the pages' last owners left with them, and read as zero when the
  // descriptor is recycled. Refused: zeroed here instead.
  decommit(m->free_run, align_up(ChunkMeta::kTablesBytes, kPageSize));
  m->next = g_chunk_pool;
  g_chunk_pool = m;
  --h.chunk_count;
  h.free_pages -= kPagesPerChunk;
}

// First run of heap h that fits `need` pages, or nullptr.
FreeRun* find(const NodeHeap& h, size_t need) {
  unsigned b = bin_of(need);
  if (b >= kExactBins) {
    for (FreeRun* r = h.bins[b]; r != nullptr; r = r->next)
      if (r->npages >= need) return r;
    ++b;
  }
  // Every run in a higher bin is longer than `need`.
  for (unsigned w = b / 64; w < std::size(h.nonempty); ++w) {
    uint64_t bits = h.nonempty[w];
    if (w == b / 64) bits &= ~uint64_t{0} << (b % 64);
    if (bits != 0) return h.bins[w * 64 + static_cast<unsigned>(__builtin_ctzll(bits))];
  }
  return nullptr;
}

// Insert r (pages already counted free), merging it with free neighbours.
// A merged run is dirty if any part was. Unmaps the chunk if it became a
// fully free chunk beyond the cache.
void coalesce_insert(FreeRun* r) {
  ChunkMeta* chunk = r->chunk;
  if (r->page > 0) {
    FreeRun* left = run_at(chunk, r->page - 1);
    if (left != nullptr && left->page + left->npages == r->page) {
      remove(left);
      r->page = left->page;
      r->npages += left->npages;
      r->dirty = r->dirty || left->dirty;
      recycle(left);
    }
  }
  if (r->page + r->npages < kPagesPerChunk) {
    FreeRun* right = run_at(chunk, r->page + r->npages);
    if (right != nullptr && right->page == r->page + r->npages) {
      remove(right);
      r->npages += right->npages;
      r->dirty = r->dirty || right->dirty;
      recycle(right);
    }
  }
  insert(r);
  NodeHeap& h = heap_of(chunk);
  // Fully free chunks beyond the cache (each node keeps its own): unmap purged
  // ones first, then r if it is one, and keep the other warm (dirty) ones for
  // reuse. The last bin holds exactly the fully free chunks. Down to the limit
  // at any free, not one chunk when r completes one: a free_chunks lowered at
  // run time applies at the next free of pages (docs/options.md); until now the
  // chunks above it stayed mapped until magslab_trim (a bug hunt).
  bool r_mapped = true;
  while (h.free_chunks > free_chunks_kept()) {
    FreeRun* victim = nullptr;
    for (FreeRun* c = h.bins[kNumBins - 1]; c != nullptr; c = c->next)
      if (!c->dirty) {
        victim = c;
        break;
      }
    if (victim == nullptr)
      victim = r_mapped && r->npages == kPagesPerChunk ? r : h.bins[kNumBins - 1];
    if (victim == r) r_mapped = false;  // r is not read again: its record is recycled
    unmap_chunk(victim->chunk);
  }
}

// A free run of h for npages aligned to align_pages pages (slack: align_pages
// - 1, or 0): one of npages + slack, else one that fits aligned as it is.
FreeRun* find_fit(const NodeHeap& h, size_t npages, size_t slack, size_t align_pages) {
  FreeRun* r = find(h, npages + slack);
  if (r != nullptr || slack == 0) return r;
  // An exactly-fitting run may already be aligned.
  for (unsigned b = bin_of(npages); b < kNumBins; ++b)
    for (FreeRun* c = h.bins[b]; c != nullptr; c = c->next) {
      uint32_t start = static_cast<uint32_t>(align_up(c->page, align_pages));
      if (start + npages <= c->page + c->npages) return c;
    }
  return nullptr;
}

// The freed run [page, page + npages) of `chunk`, counted free and made
// findable: with a record of its own, or, when the metadata arena has none to
// give, with a free neighbour's, grown over it (coalesce_insert then merges
// the other side). false: neither — an isolated run while metadata is
// refused; nothing changed.
bool insert_freed(ChunkMeta* chunk, uint32_t page, uint32_t npages, bool dirty) {
  const uint32_t freed = npages;
  FreeRun* rec = new_run_record();
  if (rec == nullptr) {
    FreeRun* left = page > 0 ? run_at(chunk, page - 1) : nullptr;
    FreeRun* right = page + npages < kPagesPerChunk ? run_at(chunk, page + npages) : nullptr;
    if (left != nullptr && left->page + left->npages == page) {
      rec = left;
      page = left->page;
    } else if (right != nullptr && right->page == page + npages) {
      rec = right;
    } else {
      return false;
    }
    remove(rec);  // its pages stay counted free
    npages += rec->npages;
    dirty = dirty || rec->dirty;
  }
  chunk->free_pages += freed;
  heap_of(chunk).free_pages += freed;
  rec->chunk = chunk;
  rec->page = page;
  rec->npages = npages;
  rec->dirty = dirty;
  coalesce_insert(rec);
  return true;
}

// Runs freed while the metadata arena could give no record and no free
// neighbour could lend one (an address-space limit, RLIMIT_AS, reached: a
// bug hunt at stop 48 freed 163,840 runs there and found all 1.25 GiB of
// them kept for good, mapped and committed, after the limit was lifted).
// Such a run waits, counted in use: marked in its chunk's free_run[] table at
// its first page (is_waiting), its chunk on a list of chunks with waiting
// runs, and goes in as a free run once a record can be had — at the next
// free, allocation or release of free chunks. Nothing is written into the
// run's own pages (a program writing to a block it freed must not reach the
// heap's lists through them), and a chunk with a waiting run is not fully
// free, so it is not unmapped.
ChunkMeta* g_waiting_chunks = nullptr;

// The first page of chunk c at or after `from` where a run waits, or kPagesPerChunk.
uint32_t next_waiting(const ChunkMeta* c, uint32_t from) {
  for (uint32_t p = from; p < kPagesPerChunk; ++p)
    if (is_waiting(c->free_run[p])) return p;
  return kPagesPerChunk;
}

void add_waiting(ChunkMeta* chunk, uint32_t page, uint32_t npages, bool dirty) {
  // (Already listed if another of its runs waits: looked for before marking this one.)
  const bool listed = next_waiting(chunk, 0) != kPagesPerChunk;
  chunk->free_run[page] = reinterpret_cast<FreeRun*>((uintptr_t{npages} << kWaitingShift) |
                                                     (dirty ? kWaitingDirty : 0) | kWaitingBit);
  if (!listed) {
    chunk->waiting_next = g_waiting_chunks;
    g_waiting_chunks = chunk;
  }
}

// Insert the waiting runs until one still finds no record. Every call that
// fails costs the arena one refused mapping, and keeps errno: the refusal is
// no answer to the caller's own operation.
void drain_waiting() {
  const int saved = errno;
  while (ChunkMeta* c = g_waiting_chunks) {
    const uint32_t page = next_waiting(c, 0);
    const auto w = reinterpret_cast<uintptr_t>(c->free_run[page]);
    c->free_run[page] = nullptr;
    // Its last waiting run: off the list first (the insert may unmap the chunk).
    const bool last = next_waiting(c, page + 1) == kPagesPerChunk;
    if (last) g_waiting_chunks = c->waiting_next;
    const bool dirty = (w & kWaitingDirty) != 0;
    if (!insert_freed(c, page, static_cast<uint32_t>(w >> kWaitingShift), dirty)) {
      c->free_run[page] = reinterpret_cast<FreeRun*>(w);
      if (last) g_waiting_chunks = c;  // (c->waiting_next unchanged)
      break;
    }
    if (dirty) decay_event::note();
  }
  errno = saved;
}

}  // namespace

bool alloc_locked(size_t npages, size_t align_pages, Run* out, bool* zeroed, unsigned node) {
  if (npages == 0 || npages > kPagesPerChunk) return false;
  size_t slack = align_pages > 1 ? align_pages - 1 : 0;
  if (npages + slack > kPagesPerChunk) return false;  // callers map such blocks on their own
  if (node >= numa::kMaxNodes) node = 0;
  NodeHeap& h = g_heaps[node];
  stamp_now();
  if (MAGSLAB_UNLIKELY(g_waiting_chunks != nullptr)) drain_waiting();
  FreeRun* r = find_fit(h, npages, slack, align_pages);
  if (r == nullptr && map_chunk(node)) r = find(h, npages + slack);
  // The OS refused this node a chunk: a free run of another node's chunks
  // rather than none (its memory is farther, which costs locality, not
  // correctness: the run goes back to its chunk's heap, and a slab carved
  // from it stays in the class lists of the node it was carved for, slab.cc).
  // Until stop 39 the allocation failed while another node's heap had free
  // pages (found by a bug-hunt helper).
  for (unsigned o = 0; r == nullptr && o < numa::nodes(); ++o)
    if (o != node) r = find_fit(g_heaps[o], npages, slack, align_pages);
  if (r == nullptr) return false;
  ChunkMeta* chunk = r->chunk;
  uint32_t run_page = r->page;
  uint32_t run_len = r->npages;
  bool dirty = r->dirty;
  uint32_t start = static_cast<uint32_t>(align_up(run_page, align_pages > 0 ? align_pages : 1));
  uint32_t head = start - run_page;
  uint32_t tail = run_len - head - static_cast<uint32_t>(npages);
  remove(r);
  // Reuse the record for the head or the tail; the neighbours of a maximal free
  // run are allocated, so the remainders need no coalescing. They keep the
  // run's dirty flag (which parts were touched is not tracked).
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
    } else if (!add_free(chunk, tail_page, tail, dirty)) {
      // No memory for a record: hand the tail out too rather than leak it.
      npages += tail;
      tail = 0;
    }
  }
  if (r != nullptr) recycle(r);
  memset(chunk->tag + start, 0, npages);  // handed out: the new owner's tags
  chunk->free_pages -= static_cast<uint32_t>(npages);
  heap_of(chunk).free_pages -= npages;
  *out = Run{chunk, start, static_cast<uint32_t>(npages)};
  *zeroed = !dirty;
  check_counts();
  return true;
}

bool alloc_slab_run(size_t npages, unsigned node, Run* out) {
  bool zeroed;  // slabs do not need zeroed pages
  LockGuard g(g_lock);
  return alloc_locked(npages, 1, out, &zeroed, node);
}

void free_slab_run(ChunkMeta* chunk, uint32_t page, uint32_t npages) {
  bool over_budget;
  {
    LockGuard g(g_lock);
    over_budget = free_locked(chunk, page, npages, /*dirty=*/true);
  }
  if (over_budget) purge_excess();
}

void drain_unmaps() {
  // relaxed: see g_npending_unmaps.
  if (g_npending_unmaps.load(std::memory_order_relaxed) == 0) return;
  uintptr_t todo[kMaxPendingUnmaps];
  size_t n;
  {
    LockGuard g(g_lock);
    n = g_npending_unmaps.load(std::memory_order_relaxed);
    for (size_t i = 0; i < n; ++i) todo[i] = g_pending_unmaps[i];
    g_npending_unmaps.store(0, std::memory_order_relaxed);
  }
  for (size_t i = 0; i < n; ++i) platform::unmap(reinterpret_cast<void*>(todo[i]), kChunkSize);
}

bool free_locked(ChunkMeta* chunk, uint32_t page, uint32_t npages, bool dirty) {
  // errno kept: a refused metadata mapping is answered here, and free()
  // leaves errno alone (until stop 48 such a free set ENOMEM).
  const int saved = errno;
  stamp_now();
  if (!insert_freed(chunk, page, npages, dirty)) {
    add_waiting(chunk, page, npages, dirty);
    errno = saved;
    return false;
  }
  if (g_waiting_chunks != nullptr) drain_waiting();
  errno = saved;
  check_counts();
  if (dirty) decay_event::note();
  return g_npending_unmaps.load(std::memory_order_relaxed) != 0 ||  // purge_excess unmaps them
         g_dirty_pages > dirty_pages_max() ||
         (g_dirty_tail != nullptr && g_stamp - g_dirty_tail->dirty_at > dirty_decay_ns() &&
          !decay_event::paused());
}

bool try_grow_locked(ChunkMeta* chunk, uint32_t page, uint32_t old_n, uint32_t new_n) {
  uint32_t next = page + old_n;
  if (next >= kPagesPerChunk || page + new_n > kPagesPerChunk) return false;
  FreeRun* r = run_at(chunk, next);
  if (r == nullptr || r->page != next || r->npages < new_n - old_n) return false;
  uint32_t take = new_n - old_n;
  stamp_now();
  remove(r);
  if (r->npages > take) {
    r->page += take;
    r->npages -= take;
    insert(r);
  } else {
    recycle(r);
  }
  memset(chunk->tag + next, 0, take);
  chunk->free_pages -= take;
  heap_of(chunk).free_pages -= take;
  check_counts();
  return true;
}

namespace {

// Decommit dirty runs from the oldest end while more than keep_pages pages are
// dirty or the oldest was last touched before cutoff (0: no age limit).
size_t purge_while(size_t keep_pages, uint64_t cutoff) {
  size_t purged = 0;
  drain_unmaps();
  for (;;) {
    // Take a batch of the oldest dirty runs out of the bins, so nobody
    // allocates them while they are decommitted without the lock.
    FreeRun* batch[16];
    size_t n = 0;
    {
      LockGuard g(g_lock);
      while (n < std::size(batch) && g_dirty_tail != nullptr &&
             (g_dirty_pages > keep_pages || g_dirty_tail->dirty_at < cutoff)) {
        FreeRun* r = g_dirty_tail;
        remove(r);
        batch[n++] = r;
      }
    }
    if (n == 0) {
      drain_unmaps();  // chunks its merges left fully free beyond the limit
      return purged;
    }
    for (size_t i = 0; i < n; ++i) {
      FreeRun* r = batch[i];
      // Counted only if the OS took them (stop 54's bug hunt: magslab_trim
      // counted the runs zeroed under a filter that refuses madvise).
      if (decommit(reinterpret_cast<void*>(r->chunk->base() + (uintptr_t{r->page} << kPageShift)),
                   size_t{r->npages} << kPageShift))
        purged += size_t{r->npages} << kPageShift;
    }
    LockGuard g(g_lock);
    stamp_now();  // a purged run merged with a dirty neighbour is dirty as of now
    for (size_t i = 0; i < n; ++i) {
      batch[i]->dirty = false;
      coalesce_insert(batch[i]);
    }
  }
}

}  // namespace

size_t purge(size_t keep_pages) {
  {
    LockGuard g(g_lock);  // runs waiting for a record go in first, to be purged too
    if (g_waiting_chunks != nullptr) drain_waiting();
  }
  return purge_while(keep_pages, 0);
}

size_t purge_aged(uint64_t cutoff) {
  size_t keep;
  {
    LockGuard g(g_lock);
    keep = g_dirty_pages > dirty_pages_max() ? dirty_pages_max() / 2 : dirty_pages_max();
  }
  return purge_while(keep, cutoff);
}

void purge_excess() {
  uint64_t now = platform::now_ns();
  purge_aged(now > dirty_decay_ns() && !decay_event::paused() ? now - dirty_decay_ns() : 0);
}

size_t release_free_chunks_locked(size_t keep) {
  if (g_waiting_chunks != nullptr) drain_waiting();
  size_t released = 0;
  for (NodeHeap& h : g_heaps) {  // keep `keep` in each node, as coalesce_insert does
    ChunkMeta* c = h.chunks;
    while (c != nullptr && h.free_chunks > keep) {
      ChunkMeta* next = c->next;
      if (c->free_pages == kPagesPerChunk && run_at(c, 0) != nullptr &&
          run_at(c, 0)->npages == kPagesPerChunk) {
        unmap_chunk(c);
        released += kChunkSize;
      }
      c = next;
    }
  }
  return released;
}

Totals totals_locked() {
  Totals t{0, 0, 0, g_dirty_pages};
  for (const NodeHeap& h : g_heaps) {
    t.chunks += h.chunk_count;
    t.free_pages += h.free_pages;
    t.free_chunks += h.free_chunks;
  }
  return t;
}

size_t node_chunks_locked(unsigned node) {
  return node < numa::kMaxNodes ? g_heaps[node].chunk_count : 0;
}

namespace {
// relaxed: set once at load, before any allocation could be refused.
constinit std::atomic<void (*)()> g_reclaim{nullptr};
}  // namespace

void set_reclaim(void (*reclaim)()) { g_reclaim.store(reclaim, std::memory_order_relaxed); }

void reclaim_for_retry() {
  if (auto reclaim = g_reclaim.load(std::memory_order_relaxed)) reclaim();
}

}  // namespace heap
}  // namespace magslab
