// small/slab: carving slabs from the page heap, refilling and flushing magazines.
#include "small/slab.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "base/lock.h"
#include "chunks/meta_arena.h"
#include "chunks/page_heap.h"
#include "platform/check.h"
#include "platform/platform.h"
#include "stats/counters.h"
#include "stats/events.h"

namespace magslab::slab {
namespace {

struct alignas(kCacheLine) SlabClass {
  Lock lock;
  Slab* partial = nullptr;  // slabs with 0 < nfree < objects (and a fresh one)
  Slab* empty = nullptr;    // one fully free slab kept committed, to absorb churn
  size_t carved = 0;        // objects out of slabs: handed out or in magazines
  size_t slabs = 0;         // slabs with objects out (partial or full); `empty` is not counted
};

SlabClass g_classes[kNumClasses];
TaggedStack g_slab_pool;  // unused Slab records (type-stable)

Slab* slab_of(const SlabClass&, uintptr_t p) { return pagemap::lookup_slab(p); }

void partial_push(SlabClass& sc, Slab* s) {
  s->prev = nullptr;
  s->next = sc.partial;
  if (s->next != nullptr) s->next->prev = s;
  sc.partial = s;
  s->in_partial = true;
}

void partial_remove(SlabClass& sc, Slab* s) {
  if (s->prev != nullptr)
    s->prev->next = s->next;
  else
    sc.partial = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
  s->in_partial = false;
}

Slab* new_slab_record() {
  if (StackLink* l = g_slab_pool.pop())
    return reinterpret_cast<Slab*>(reinterpret_cast<char*>(l) - offsetof(Slab, recycle));
  void* mem = meta::alloc(sizeof(Slab));
  return mem == nullptr ? nullptr : new (mem) Slab();
}

// Carve a new slab of class cls; caller holds the class lock.
Slab* carve(unsigned cls) {
  const ClassInfo& ci = kClasses[cls];
  Slab* s = new_slab_record();
  if (s == nullptr) return nullptr;
  if constexpr (kExactRequested) {
    if (s->requested == nullptr) {
      s->requested = static_cast<uint32_t*>(meta::alloc(kMaxSlabObjects * sizeof(uint32_t)));
      if (s->requested == nullptr) {
        g_slab_pool.push(&s->recycle);
        return nullptr;
      }
    }
  }
  heap::Run run;
  if (!heap::alloc_slab_run(ci.slab_pages, &run)) {
    g_slab_pool.push(&s->recycle);
    return nullptr;
  }
  s->start = reinterpret_cast<uintptr_t>(run.addr());
  s->cls = cls;
  s->magic = ci.magic;
  s->limit = offset_limit(ci);
  s->nfree = ci.objects;
  s->hint = 0;
  s->chunk = run.chunk;
  s->first_page = run.page;
  s->next = s->prev = nullptr;
  s->in_partial = false;
  uint32_t words = (ci.objects + 63) / 64;
  for (uint32_t w = 0; w < words; ++w) s->free_bits[w] = ~uint64_t{0};
  if (ci.objects % 64 != 0) s->free_bits[words - 1] = (uint64_t{1} << (ci.objects % 64)) - 1;
  // The fields above are visible to a free that finds the slab (release stores).
  pagemap::set_slab(s->start, ci.slab_pages, s);
  stats::count(cls, stats::kSlabCarved);
  return s;
}

// Unpublish a fully free slab; caller holds the class lock. The pages are given
// back by give_back() after the lock is dropped (it may purge: system calls).
void unpublish(Slab* s) {
  // A later free of an object of this slab finds no slab and is reported.
  pagemap::set_slab(s->start, kClasses[s->cls].slab_pages, nullptr);
}

// The pages go back dirty (no system call here); the page heap purges them
// when its dirty budget is exceeded.
void give_back(Slab* s) {
  ChunkMeta* chunk = s->chunk;
  uint32_t first_page = s->first_page, npages = kClasses[s->cls].slab_pages;
  stats::count(s->cls, stats::kSlabReturned);
  g_slab_pool.push(&s->recycle);
  heap::free_slab_run(chunk, first_page, npages);
}

// Debug preset: the slab and class equations after a slab changed (class lock
// held): nfree is the number of set bits, no bit past the last object, the
// slab is on the partial list exactly when some but not all of its objects
// are out, and the class has no more objects out than its slabs hold.
void check_slab(const SlabClass& sc, const Slab* s, const ClassInfo& ci) {
  if constexpr (kDebugChecks) {
    uint32_t words = (ci.objects + 63) / 64, bits = 0;
    for (uint32_t w = 0; w < words; ++w)
      bits += static_cast<uint32_t>(__builtin_popcountll(s->free_bits[w]));
    MAGSLAB_CHECK(bits == s->nfree, "slab: nfree differs from its free bitmap");
    MAGSLAB_CHECK(ci.objects % 64 == 0 || (s->free_bits[words - 1] >> (ci.objects % 64)) == 0,
                  "slab: a free bit past the last object");
    MAGSLAB_CHECK(s == sc.empty || s->in_partial == (s->nfree > 0 && s->nfree < ci.objects),
                  "slab: on the partial list exactly when partly used");
    MAGSLAB_CHECK(sc.carved <= sc.slabs * size_t{ci.objects},
                  "class: more objects out than its slabs hold");
    MAGSLAB_CHECK(sc.slabs != 0 || sc.carved == 0, "class: objects out but no slab in use");
  }
}

}  // namespace

uint32_t refill(unsigned cls, void** out, uint32_t n, const void* owner) {
  const ClassInfo& ci = kClasses[cls];
  SlabClass& sc = g_classes[cls];
  uint32_t got = 0;
  {
    LockGuard g(sc.lock);
    while (got < n) {
      Slab* s = sc.partial;
      if (s == nullptr) {
        s = sc.empty;
        if (s != nullptr) {
          sc.empty = nullptr;  // the cached empty slab is carved again
        } else {
          s = carve(cls);
          if (s == nullptr) break;
        }
        ++sc.slabs;
        partial_push(sc, s);
      }
      // relaxed: a routing hint (slab.h); stored only on a change, so that the
      // line free reads stays clean.
      if (s->owner.load(std::memory_order_relaxed) != owner)
        s->owner.store(owner, std::memory_order_relaxed);
      uint32_t words = (ci.objects + 63) / 64;
      for (uint32_t w = s->hint; w < words && got < n; ++w) {
        uint64_t bits = s->free_bits[w];
        while (bits != 0 && got < n) {
          uint32_t b = static_cast<uint32_t>(__builtin_ctzll(bits));
          bits &= bits - 1;
          out[got++] = reinterpret_cast<void*>(s->start + (uintptr_t{w} * 64 + b) * ci.size);
          --s->nfree;
          ++sc.carved;  // per object, as in release()
        }
        s->free_bits[w] = bits;
        if (bits == 0) s->hint = w + 1;
      }
      if (s->nfree == 0) partial_remove(sc, s);
      check_slab(sc, s, ci);
    }
  }
  std::reverse(out, out + got);
  stats::count(cls, stats::kSlabRefill);
  stats::add_in_use(static_cast<size_t>(got) * ci.size);
  return got;
}

void release(unsigned cls, void* const* objs, uint32_t n) {
  const ClassInfo& ci = kClasses[cls];
  SlabClass& sc = g_classes[cls];
  Slab* to_give_back[8];
  uint32_t ngive = 0;
  {
    LockGuard g(sc.lock);
    for (uint32_t i = 0; i < n; ++i) {
      auto p = reinterpret_cast<uintptr_t>(objs[i]);
      Slab* s = slab_of(sc, p);
      if (s == nullptr) platform::misuse(Misuse::kInvalidFree, objs[i]);
      if (s->cls != cls)  // a magazine of class cls held it: the heap is corrupt
        platform::misuse(
            Misuse::kInvalidFree, objs[i],
            BlockInfo::small(s->cls, kClasses[s->cls].size, "in a magazine of another class"));
      uint32_t idx = static_cast<uint32_t>((p - s->start) / ci.size);
      uint64_t bit = uint64_t{1} << (idx % 64);
      if (s->free_bits[idx / 64] & bit)
        platform::misuse(Misuse::kDoubleFree, objs[i],
                         BlockInfo::small(cls, ci.size, "already free in its slab"));
      s->free_bits[idx / 64] |= bit;
      if (idx / 64 < s->hint) s->hint = idx / 64;
      ++s->nfree;
      --sc.carved;  // per object: the class equation holds whenever the lock is free
      if (s->nfree == 1 && !s->in_partial) partial_push(sc, s);
      if (s->nfree == ci.objects) {
        partial_remove(sc, s);
        --sc.slabs;
        if (sc.empty == nullptr) {
          sc.empty = s;
        } else {
          unpublish(s);
          if (ngive == std::size(to_give_back)) {
            // Rare (a magazine emptied many slabs at once): give back inline.
            sc.lock.unlock();
            for (uint32_t k = 0; k < ngive; ++k) give_back(to_give_back[k]);
            sc.lock.lock();
            ngive = 0;
          }
          to_give_back[ngive++] = s;
        }
      }
      if (s->nfree != ci.objects || sc.empty == s) check_slab(sc, s, ci);
    }
  }
  for (uint32_t k = 0; k < ngive; ++k) give_back(to_give_back[k]);
  stats::count(cls, stats::kSlabRelease);
  stats::sub_in_use(static_cast<size_t>(n) * ci.size);
}

bool is_free_in_slab(unsigned cls, void* p) {
  const ClassInfo& ci = kClasses[cls];
  SlabClass& sc = g_classes[cls];
  LockGuard g(sc.lock);
  auto a = reinterpret_cast<uintptr_t>(p);
  Slab* s = slab_of(sc, a);
  if (s == nullptr || s->cls != cls) return false;
  uint32_t idx = static_cast<uint32_t>((a - s->start) / ci.size);
  return (s->free_bits[idx / 64] >> (idx % 64)) & 1;
}

size_t trim() {
  size_t bytes = 0;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    SlabClass& sc = g_classes[c];
    Slab* s = nullptr;
    {
      LockGuard g(sc.lock);
      s = sc.empty;
      sc.empty = nullptr;
      if (s != nullptr) unpublish(s);
    }
    if (s != nullptr) {
      give_back(s);
      bytes += kClasses[c].slab_pages * kPageSize;
    }
  }
  return bytes;
}

void lock_all_for_fork() {
  for (SlabClass& sc : g_classes) sc.lock.lock();
}

void unlock_all_after_fork() {
  for (unsigned c = kNumClasses; c-- > 0;) g_classes[c].lock.unlock();
}

ClassCounts counts(unsigned cls) {
  SlabClass& sc = g_classes[cls];
  LockGuard g(sc.lock);
  return ClassCounts{sc.carved, sc.slabs + (sc.empty != nullptr ? 1 : 0),
                     sc.empty != nullptr ? 1u : 0u};
}

}  // namespace magslab::slab
