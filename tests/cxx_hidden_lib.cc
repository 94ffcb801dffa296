// A shared library built with -fvisibility=hidden (tests/cxx_hidden.h).
#include "cxx_hidden.h"

CXX_HIDDEN_API std::pmr::memory_resource* lib_resource() { return magslab::pmr::resource(); }
CXX_HIDDEN_API magslab::ObjectCache<Fragile>* lib_make_cache() {
  return new magslab::ObjectCache<Fragile>("hidden");
}
CXX_HIDDEN_API void lib_set_fail(bool fail) { Fragile::fail = fail; }
