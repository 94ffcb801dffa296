// Shared by the three libraries built from tests/cxx_modules/lib.cc and the
// program tests/cxx_modules/main.cc: magslab's C++ header used on both sides of
// a module boundary where each module keeps its own copy of the header's inline
// functions and variables. The libraries (CMakeLists.txt):
//   hidden     built with -fvisibility=hidden, linked with libmagslab.so
//   bsymbolic  linked -Bsymbolic, with libmagslab.so
//   isolated   libmagslab.a linked in, its symbols hidden (--exclude-libs):
//              a heap of its own
// and tests/cxx_modules/noexc.cc, built with -fno-exceptions, which
// tests/cxx_modules/stale_main.cc links.
#pragma once

#include <cstdlib>
#include <memory_resource>
#include <stdexcept>

#include "magslab/magslab.hpp"

// Its constructor throws while `fail` is set (each module has its own copy of
// the inline variable: set it through the module that made the cache).
struct Fragile {
  static inline bool fail = false;
  Fragile() {
#if defined(__cpp_exceptions)
    if (fail) throw std::runtime_error("Fragile() failed");
#else
    if (fail) std::abort();  // not reached: the caches are made by modules with exceptions
#endif
  }
  long v = 0;
};

#define CXX_MODULE_API extern "C" __attribute__((visibility("default")))
// m_resource(): the library's magslab::pmr::resource(); m_make_cache(): an
// ObjectCache<Fragile> made in the library; m_set_fail: Fragile::fail there;
// m_vector(n): a std::pmr::vector<int> of n elements the library filled
// through its resource; m_resource_at_load(): resource() as a static
// constructor of the library had it.
#define CXX_MODULE_DECLARE(m)                                      \
  CXX_MODULE_API std::pmr::memory_resource* m##_resource();        \
  CXX_MODULE_API magslab::ObjectCache<Fragile>* m##_make_cache();  \
  CXX_MODULE_API void m##_set_fail(bool fail);                     \
  CXX_MODULE_API std::pmr::vector<int>* m##_vector(int n);         \
  CXX_MODULE_API void m##_delete_vector(std::pmr::vector<int>* v); \
  CXX_MODULE_API std::pmr::memory_resource* m##_resource_at_load();
CXX_MODULE_DECLARE(hidden)
CXX_MODULE_DECLARE(bsymbolic)
CXX_MODULE_DECLARE(isolated)

// tests/cxx_modules/nortti.cc, compiled -fno-rtti: a resource of the
// program's own whose class has no type information.
std::pmr::memory_resource* nortti_resource();

// tests/cxx_modules/noexc.cc (-fno-exceptions): c->try_acquire() there.
CXX_MODULE_API bool noexc_try_acquire(magslab::ObjectCache<Fragile>* c);
