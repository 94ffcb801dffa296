// One of the libraries of tests/cxx_modules/cxx_modules.h; CXX_MODULE names it.
#include "cxx_modules.h"

#define CXX_CAT2(a, b) a##b
#define CXX_CAT(a, b) CXX_CAT2(a, b)
#define FN(name) CXX_CAT(CXX_MODULE, name)

CXX_MODULE_API std::pmr::memory_resource* FN(_resource)() { return magslab::pmr::resource(); }
CXX_MODULE_API magslab::ObjectCache<Fragile>* FN(_make_cache)() {
  return new magslab::ObjectCache<Fragile>("cxx_modules");
}
CXX_MODULE_API void FN(_set_fail)(bool fail) { Fragile::fail = fail; }
CXX_MODULE_API std::pmr::vector<int>* FN(_vector)(int n) {
  auto* v = new std::pmr::vector<int>(magslab::pmr::resource());
  for (int i = 0; i < n; ++i) v->push_back(i);
  return v;
}
CXX_MODULE_API void FN(_delete_vector)(std::pmr::vector<int>* v) { delete v; }

// The library's resource is made (and its class registered) by a static
// constructor, before the heap of a preloaded override ran its own.
static std::pmr::memory_resource* const g_made_at_load = magslab::pmr::resource();
CXX_MODULE_API std::pmr::memory_resource* FN(_resource_at_load)() { return g_made_at_load; }
