// large: page-run blocks, their cache, and huge mappings.
#include "large.h"

#include <cstring>

#include "chunks/page_heap.h"
#include "config.h"
#include "platform/platform.h"
#include "stats_internal.h"

namespace magslab::large {
namespace {

// All under heap::g_lock.
size_t g_live_blocks = 0, g_live_pages = 0, g_live_requested = 0;
size_t g_huge_blocks = 0, g_huge_bytes = 0, g_huge_requested = 0;

size_t pages_for(size_t n) { return align_up(n, kPageSize) >> kPageShift; }

void mark_live(ChunkMeta* c, uint32_t page, uint32_t npages, size_t request) {
  c->state[page] = kPageLargeStart;
  for (uint32_t i = 1; i < npages; ++i) c->state[page + i] = kPageLargeBody;
  c->large_pages[page] = npages;
  c->large_request[page] = static_cast<uint32_t>(request);
  ++g_live_blocks;
  g_live_pages += npages;
  g_live_requested += request;
}

// Register [base, base+size) (base chunk-aligned) in the page map as `m`.
bool map_huge_slots(uintptr_t base, size_t size, ChunkMeta* m) {
  for (uintptr_t a = base; a < base + size; a += kChunkSize) {
    if (!pagemap::set(a, m)) {
      for (uintptr_t b = base; b < a; b += kChunkSize) pagemap::set(b, nullptr);
      return false;
    }
  }
  return true;
}

void unmap_huge_slots(uintptr_t base, size_t size) {
  for (uintptr_t a = base; a < base + size; a += kChunkSize) pagemap::set(a, nullptr);
}

// Freed huge mappings kept for reuse, so a program that frees and allocates
// MiB-sized blocks in a loop does not pay mmap, page faults and munmap each
// time: at most kHugeCacheEntries mappings of at most kHugeCacheBlock bytes,
// kHugeCacheBytes in all; a request reuses one it fills at least 3/4 of.
// magslab_trim() unmaps them all.
constexpr size_t kHugeCacheEntries = 8;
constexpr size_t kHugeCacheBlock = size_t{16} << 20;
constexpr size_t kHugeCacheBytes = size_t{32} << 20;

struct HugeCacheEntry {
  void* base;
  size_t size;
};
HugeCacheEntry g_huge_cache[kHugeCacheEntries];  // under heap::g_lock
size_t g_huge_cache_count = 0;
size_t g_huge_cache_bytes = 0;

// A cached mapping for `size` bytes aligned to `align`, or nullptr. Locked.
HugeCacheEntry take_cached_huge_locked(size_t size, size_t align) {
  for (size_t i = 0; i < g_huge_cache_count; ++i) {
    HugeCacheEntry e = g_huge_cache[i];
    if (e.size >= size && size >= e.size - e.size / 4 &&
        reinterpret_cast<uintptr_t>(e.base) % align == 0) {
      g_huge_cache[i] = g_huge_cache[--g_huge_cache_count];
      g_huge_cache_bytes -= e.size;
      return e;
    }
  }
  return HugeCacheEntry{nullptr, 0};
}

// Keep a freed mapping if the cache has room; false: the caller unmaps it.
bool cache_huge_locked(void* base, size_t size) {
  if (size > kHugeCacheBlock || g_huge_cache_count == kHugeCacheEntries ||
      g_huge_cache_bytes + size > kHugeCacheBytes)
    return false;
  g_huge_cache[g_huge_cache_count++] = HugeCacheEntry{base, size};
  g_huge_cache_bytes += size;
  return true;
}

void* alloc_huge(size_t n, size_t align, bool* zeroed) {
  size_t size = align_up(n, kPageSize);
  size_t map_align = align > kChunkSize ? align : kChunkSize;
  HugeCacheEntry cached;
  {
    LockGuard g(heap::g_lock);
    cached = take_cached_huge_locked(size, map_align);
  }
  void* mem = cached.base;
  *zeroed = mem == nullptr;
  if (mem != nullptr) size = cached.size;
  else mem = platform::map_aligned(size, map_align);
  if (mem == nullptr) return nullptr;
  auto base = reinterpret_cast<uintptr_t>(mem);
  {
    LockGuard g(heap::g_lock);
    ChunkMeta* m = heap::new_huge_meta_locked();
    if (m != nullptr) {
      m->base = base;
      m->huge = true;
      m->huge_size = size;
      m->huge_request = n;
      if (map_huge_slots(base, size, m)) {
        ++g_huge_blocks;
        g_huge_bytes += size;
        g_huge_requested += n;
        stats::add_in_use(size);
        return mem;
      }
      heap::recycle_huge_meta_locked(m);
    }
  }
  platform::unmap(mem, size);
  return nullptr;
}

[[noreturn]] void bad_pointer(const void* p, const char* what = "invalid free of") {
  platform::fatal(what, p);
}

// Give a run back to the page heap, dirty (reused without a system call;
// purged when the heap's dirty budget is exceeded). mark_start: its first page
// was a block handed to the program, so a later free of it is reported as a
// double free. Caller holds heap::g_lock; returns whether to purge after it.
bool free_run_locked(ChunkMeta* c, uint32_t page, uint32_t npages, bool mark_start) {
  for (uint32_t i = 0; i < npages; ++i) c->state[page + i] = kPageFree;
  if (mark_start) c->state[page] = kPageFreedLarge;
  return heap::free_locked(c, page, npages, /*dirty=*/true);
}

}  // namespace

void* alloc(size_t n, size_t align, bool* zeroed) {
  size_t npages = pages_for(n);
  size_t align_pages = align > kPageSize ? align >> kPageShift : 1;
  if (n > kHugeThreshold || npages + align_pages - 1 > (kHugeThreshold >> kPageShift)) {
    return alloc_huge(n, align, zeroed);
  }
  LockGuard g(heap::g_lock);
  heap::Run run;
  if (!heap::alloc_locked(npages, align_pages, &run, zeroed)) return nullptr;
  mark_live(run.chunk, run.page, run.npages, n);
  stats::add_in_use(size_t{run.npages} << kPageShift);
  return run.addr();
}

void free(void* p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  ChunkMeta* c = pagemap::lookup(a);
  if (c == nullptr) bad_pointer(p);
  if (c->huge) {
    size_t size = 0;
    {
      LockGuard g(heap::g_lock);
      // Re-check under the lock: a racing free of the same block unmapped it.
      if (pagemap::lookup(a) != c || !c->huge || c->base != a) bad_pointer(p);
      size = c->huge_size;
      unmap_huge_slots(a, size);
      heap::recycle_huge_meta_locked(c);
      --g_huge_blocks;
      g_huge_bytes -= size;
      g_huge_requested -= c->huge_request;
      stats::sub_in_use(size);
      // Out of the page map already: a second free of p is reported.
      if (cache_huge_locked(p, size)) return;
    }
    platform::unmap(p, size);
    return;
  }
  if (a % kPageSize != 0) bad_pointer(p);
  uint32_t page = static_cast<uint32_t>((a - c->base) >> kPageShift);
  bool purge;
  {
    LockGuard g(heap::g_lock);
    uint8_t st = c->state[page];
    if (st == kPageFreedLarge) bad_pointer(p, "double free of");
    if (st != kPageLargeStart) bad_pointer(p);
    uint32_t npages = c->large_pages[page];
    --g_live_blocks;
    g_live_pages -= npages;
    g_live_requested -= c->large_request[page];
    stats::sub_in_use(size_t{npages} << kPageShift);
    purge = free_run_locked(c, page, npages, /*mark_start=*/true);
  }
  if (purge) heap::purge_excess();
}

size_t usable_size(const void* p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  ChunkMeta* c = pagemap::lookup(a);
  if (c == nullptr) bad_pointer(p, "invalid pointer passed to usable_size:");
  LockGuard g(heap::g_lock);
  if (c->huge) {
    if (c->base != a) bad_pointer(p, "invalid pointer passed to usable_size:");
    return c->huge_size;
  }
  uint32_t page = static_cast<uint32_t>((a - c->base) >> kPageShift);
  if (a % kPageSize != 0 || c->state[page] != kPageLargeStart)
    bad_pointer(p, "invalid pointer passed to usable_size:");
  return size_t{c->large_pages[page]} << kPageShift;
}

void* resize(void* p, size_t n) {
  auto a = reinterpret_cast<uintptr_t>(p);
  ChunkMeta* c = pagemap::lookup(a);
  if (c == nullptr) bad_pointer(p, "invalid realloc of");
  size_t want = align_up(n, kPageSize);
  if (c->huge) {
    if (n <= kHugeThreshold / 2) return nullptr;  // much smaller: move into a run
    size_t old;
    {
      LockGuard g(heap::g_lock);
      if (c->base != a) bad_pointer(p, "invalid realloc of");
      old = c->huge_size;
    }
    if (want == old) {
      LockGuard g(heap::g_lock);
      g_huge_requested += n;
      g_huge_requested -= c->huge_request;
      c->huge_request = n;
      return p;
    }
    void* moved = nullptr;
    if (want < old) {
      moved = platform::remap(p, old, want, nullptr);  // shrinking in place cannot fail
    } else {
      moved = platform::remap(p, old, want, nullptr);  // grow in place if the space is free
      if (moved == nullptr) {
        // Move to a fresh chunk-aligned reservation; the kernel moves the page
        // tables, no byte is copied.
        void* target = platform::map_aligned(want, kChunkSize);
        if (target == nullptr) return nullptr;
        moved = platform::remap(p, old, want, target);
        if (moved == nullptr) {
          platform::unmap(target, want);
          return nullptr;
        }
      }
    }
    if (moved == nullptr) return nullptr;
    LockGuard g(heap::g_lock);
    unmap_huge_slots(a, old);
    auto b = reinterpret_cast<uintptr_t>(moved);
    if (!map_huge_slots(b, want, c)) {
      // Cannot index the block (out of metadata memory): fail the realloc but
      // keep the old contents reachable at the new place is impossible to
      // report; abort loudly rather than lose track of the block.
      platform::fatal("out of metadata memory while moving", moved);
    }
    c->base = b;
    g_huge_bytes += want;
    g_huge_bytes -= old;
    c->huge_size = want;
    g_huge_requested += n;
    g_huge_requested -= c->huge_request;
    c->huge_request = n;
    if (want > old) stats::add_in_use(want - old);
    else stats::sub_in_use(old - want);
    return moved;
  }
  if (a % kPageSize != 0 || n > kHugeThreshold) {
    if (a % kPageSize != 0) bad_pointer(p, "invalid realloc of");
    return nullptr;
  }
  uint32_t page = static_cast<uint32_t>((a - c->base) >> kPageShift);
  uint32_t new_pages = static_cast<uint32_t>(want >> kPageShift);
  uint32_t tail_page = 0, tail_pages = 0;
  {
    LockGuard g(heap::g_lock);
    if (c->state[page] != kPageLargeStart) bad_pointer(p, "invalid realloc of");
    uint32_t old_pages = c->large_pages[page];
    if (new_pages == old_pages) {
      g_live_requested += n - c->large_request[page];
      c->large_request[page] = static_cast<uint32_t>(n);
      return p;
    }
    if (new_pages > old_pages) {
      if (!heap::try_grow_locked(c, page, old_pages, new_pages)) return nullptr;
      for (uint32_t i = old_pages; i < new_pages; ++i) c->state[page + i] = kPageLargeBody;
      stats::add_in_use(size_t{new_pages - old_pages} << kPageShift);
    } else {
      if (n <= kMaxSmallSize) return nullptr;  // a slab class fits better: move
      tail_page = page + new_pages;
      tail_pages = old_pages - new_pages;
    }
    g_live_pages += new_pages;
    g_live_pages -= old_pages;
    g_live_requested += n;
    g_live_requested -= c->large_request[page];
    c->large_pages[page] = new_pages;
    c->large_request[page] = static_cast<uint32_t>(n);
  }
  if (tail_pages != 0) {
    stats::sub_in_use(size_t{tail_pages} << kPageShift);
    bool purge;
    {
      LockGuard g(heap::g_lock);
      purge = free_run_locked(c, tail_page, tail_pages, /*mark_start=*/false);
    }
    if (purge) heap::purge_excess();
  }
  return p;
}

size_t trim() {
  size_t bytes = heap::purge(0);
  HugeCacheEntry cached[kHugeCacheEntries];
  size_t n;
  {
    LockGuard g(heap::g_lock);
    n = g_huge_cache_count;
    for (size_t i = 0; i < n; ++i) cached[i] = g_huge_cache[i];
    g_huge_cache_count = 0;
    g_huge_cache_bytes = 0;
    bytes += heap::release_free_chunks_locked(0);
  }
  for (size_t i = 0; i < n; ++i) {
    platform::unmap(cached[i].base, cached[i].size);
    bytes += cached[i].size;
  }
  return bytes;
}

Counts counts() {
  LockGuard g(heap::g_lock);
  return Counts{g_live_blocks + g_huge_blocks,
                (g_live_pages << kPageShift) + g_huge_bytes,
                g_live_requested + g_huge_requested,
                g_huge_blocks,
                g_huge_bytes,
                g_huge_cache_bytes};
}

}  // namespace magslab::large
