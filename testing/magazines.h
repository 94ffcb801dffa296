// testing/magazines: a full magazine, as the depot gets them, for tests that
// drive the depot directly (tests/depot_test.cc, tests/decay_test.cc); the
// objects in a thread's stash (tests of the stash).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "small/depot.h"
#include "small/magazine.h"
#include "small/slab.h"
#include "small/thread_cache.h"

namespace mstest {

// A magazine from the depot filled from the slabs of class cls (nullptr when
// out of metadata memory).
inline magslab::Magazine* full_magazine(unsigned cls) {
  magslab::Magazine* m = magslab::depot::get_empty(cls);
  if (m == nullptr) return nullptr;
  magslab::set_mag_count(m, magslab::slab::refill(cls, m->objs, m->cap, 0));
  return m;
}

// The objects in tc's stash of class c (small/thread_cache.cc, "The stash"),
// read while neither its thread nor a decay pass changes it.
inline std::vector<void*> stash_objects(magslab::ThreadCache* tc, unsigned c) {
  std::vector<void*> v;
  v.reserve(4096);  // one allocation, of another class than the tests'
  for (magslab::Magazine* m = std::atomic_ref<magslab::Magazine*>(tc->stash[c]).load();
       m != nullptr; m = reinterpret_cast<magslab::Magazine*>(m->link.next.load()))
    v.insert(v.end(), m->objs, m->objs + m->count);
  return v;
}

// The bytes a magazine of class cls takes in the metadata arena.
inline size_t magazine_bytes(unsigned cls) {
  return (sizeof(magslab::Magazine) + magslab::kClasses[cls].mag_cap * sizeof(void*) + 63) / 64 *
         64;
}

// mags sorted by address, and the longest run of them back to back (each
// `bytes` after the one before): {index of its first in the sorted vector,
// length}. Fresh magazines are carved in a row; tests of hollowing look there.
inline std::pair<size_t, size_t> longest_run(std::vector<magslab::Magazine*>* mags, size_t bytes) {
  std::sort(mags->begin(), mags->end());
  const size_t n = mags->size();
  size_t best = 0, len = 1, best_len = 0;
  for (size_t i = 1; i <= n; ++i) {
    if (i < n && reinterpret_cast<uintptr_t>((*mags)[i]) ==
                     reinterpret_cast<uintptr_t>((*mags)[i - 1]) + bytes) {
      ++len;
      continue;
    }
    if (len > best_len) {
      best_len = len;
      best = i - len;
    }
    len = 1;
  }
  return {best, n == 0 ? 0 : best_len};
}

}  // namespace mstest
