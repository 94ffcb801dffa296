// Shared by tests/cxx_hidden_lib.cc (a shared library built with
// -fvisibility=hidden) and tests/cxx_hidden_main.cc (the program using it):
// magslab's C++ header used on both sides of a module boundary where each
// module keeps its own copy of the header's inline functions and variables.
#pragma once

#include <memory_resource>
#include <stdexcept>

#include "magslab/magslab.hpp"

// Its constructor throws while `fail` is set.
struct Fragile {
  static inline bool fail = false;
  Fragile() {
    if (fail) throw std::runtime_error("Fragile() failed");
  }
  long v = 0;
};

#define CXX_HIDDEN_API extern "C" __attribute__((visibility("default")))
// The library's magslab::pmr::resource().
CXX_HIDDEN_API std::pmr::memory_resource* lib_resource();
// An ObjectCache<Fragile> made in the library; lib_set_fail sets Fragile::fail
// there (each module has its own copy of the inline variable as well).
CXX_HIDDEN_API magslab::ObjectCache<Fragile>* lib_make_cache();
CXX_HIDDEN_API void lib_set_fail(bool fail);
