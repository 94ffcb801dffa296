// depot: per size class, a lock-free stack of full magazines and one of empty
// magazines (Bonwick & Adams 2001). Threads trade whole magazines here; no
// thread ever blocks another. Magazines live in the metadata arena (type-stable).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "lockfree/tagged_stack.h"
#include "size_classes.h"

namespace magslab {

// A magazine: a bounded stack of free objects of one class. Owned by one
// thread while in its cache; by nobody while in the depot.
struct Magazine {
  StackLink link;      // depot stack link; must stay first
  uint32_t count = 0;  // objects held; written by the owner with relaxed atomic_ref
                       // stores so magslab_stats may read it from another thread
  uint32_t cap = 0;    // capacity; 0 only for the shared empty sentinel
  uint32_t cls = 0;
  uint32_t pad = 0;
  uint64_t free_key = 0;  // g_free_key, copied here: free reads it from the line it
                          // already loaded (count, cap) instead of a global
  void* objs[];        // objs[0..count) are free objects of class cls
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

namespace depot {

// A full (non-empty) magazine, or nullptr.
Magazine* pop_full(unsigned cls);
// Take m (count > 0). false if the depot already holds its limit for the class;
// the caller then flushes m to the slabs.
bool push_full(unsigned cls, Magazine* m);
// An empty magazine: from the depot, else newly made. nullptr when out of memory.
Magazine* get_empty(unsigned cls);
void push_empty(unsigned cls, Magazine* m);

// Objects held in full magazines of the depot (exact at quiescence).
size_t cached_objects(unsigned cls);
// Flush every full magazine of every class to the slabs; returns objects moved.
size_t drain();

}  // namespace depot
}  // namespace magslab
