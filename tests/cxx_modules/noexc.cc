// A module built with -fno-exceptions (tests/cxx_modules/cxx_modules.h) that
// uses a cache another module made.
#include "cxx_modules.h"

CXX_MODULE_API bool noexc_try_acquire(magslab::ObjectCache<Fragile>* c) {
  Fragile* f = c->try_acquire();
  if (f != nullptr) c->release(f);
  return f != nullptr;
}
