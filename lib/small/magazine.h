// small/magazine: a magazine — a bounded stack of free objects of one class
// (Bonwick & Adams 2001) — and everything about it in one place: the struct,
// the shared empty sentinel, the free key written into freed objects, the
// count accessors other threads may use, and the fast path's pop and push.
// Magazines live in the metadata arena (type-stable); the depot (depot.h)
// trades them between threads, the thread cache (thread_cache.h) owns them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "ds/tagged_stack.h"
#include "platform/check.h"

namespace magslab {

// A magazine: a bounded stack of free objects of one class. Owned by one
// thread while in its cache; by nobody while in the depot.
struct Magazine {
  StackLink link;      // depot stack link; must stay first
  uint32_t count = 0;  // objects held; written by the owner with relaxed atomic_ref
                       // stores so magslab_stats may read it from another thread
  uint32_t cap = 0;    // capacity; 0 only for the shared empty sentinel. At most
                       // slots: the owning thread may set it lower (thread_cache.cc,
                       // "Magazine limits"); free's fast path misses at count == cap.
  uint16_t cls = 0;
  uint16_t slots = 0;     // objs[]'s length, fixed when the magazine is made (depot.cc)
  uint32_t pad = 0;       // depot::hollow_empty() keeps the node here while it owns the
                          // magazine; a thread's stash, the list's length at its head
  uint64_t free_key = 0;  // g_free_key, copied here: free reads it from the line it
                          // already loaded (count, cap) instead of a global
  void* objs[];           // objs[0..count) are free objects of class cls
};
static_assert(offsetof(Magazine, link) == 0);

// Written into the first word of every object on free and cleared on alloc; a
// freed object whose first word already holds it is checked for a double free
// (slow path). Copied into every magazine (Magazine::free_key).
// relaxed: set once, before this thread's first free (cache creation).
extern std::atomic<uint64_t> g_free_key;

// The shared, permanently empty magazine that every cache slot starts with:
// count == cap == 0, so both alloc (count == 0) and free (count == cap) miss
// into the slow path. Nobody ever writes to it.
extern Magazine g_empty_magazine;

// Another thread (magslab_stats) may read a cached magazine's count: all writes
// and foreign reads go through relaxed atomic_ref, which compiles to plain moves.
inline uint32_t mag_count(Magazine* m) {
  return std::atomic_ref<uint32_t>(m->count).load(std::memory_order_relaxed);
}
inline void set_mag_count(Magazine* m, uint32_t n) {
  std::atomic_ref<uint32_t>(m->count).store(n, std::memory_order_relaxed);
}

// Take the top object of m, which holds n > 0 objects. Clears the free key: a
// block freed again without being written must not look like a double free
// (that would send every such free to the search).
inline void* mag_pop(Magazine* m, uint32_t n) {
  MAGSLAB_CHECK(n > 0 && n <= m->cap && n == m->count, "magazine: pop outside its bounds");
  --n;
  set_mag_count(m, n);
  void* p = m->objs[n];
  *static_cast<uint64_t*>(p) = 0;
  return p;
}

// Put p (a validated object whose first word the caller checked against the
// key) on m, which holds n < cap objects; the key marks p as freed.
inline void mag_push(Magazine* m, uint32_t n, void* p) {
  MAGSLAB_CHECK(n < m->cap && n == m->count, "magazine: push outside its bounds");
  *static_cast<uint64_t*>(p) = m->free_key;
  m->objs[n] = p;
  set_mag_count(m, n + 1);
}

}  // namespace magslab
