// testing/magazines: a full magazine, as the depot gets them, for tests that
// drive the depot directly (tests/depot_test.cc, tests/decay_test.cc).
#pragma once
#include "small/depot.h"
#include "small/magazine.h"
#include "small/slab.h"

namespace mstest {

// A magazine from the depot filled from the slabs of class cls (nullptr when
// out of metadata memory).
inline magslab::Magazine* full_magazine(unsigned cls) {
  magslab::Magazine* m = magslab::depot::get_empty(cls);
  if (m == nullptr) return nullptr;
  magslab::set_mag_count(m, magslab::slab::refill(cls, m->objs, m->cap, 0));
  return m;
}

}  // namespace mstest
