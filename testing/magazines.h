// testing/magazines: a full magazine, as the depot gets them, for tests that
// drive the depot directly (tests/depot_test.cc, tests/decay_test.cc); the
// objects in a thread's stash (tests of the stash).
#pragma once
#include <atomic>
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

}  // namespace mstest
