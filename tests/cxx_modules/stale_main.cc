// T()'s exception when nobody waits for it (tests/cxx_modules/cxx_modules.h):
// a module built with -fno-exceptions calls try_acquire(), or a C caller calls
// magslab_cache_alloc() on an ObjectCache's handle, while T() throws. The
// exception must not stay in the library's slot, where a later acquire() that
// fails for want of memory rethrew it instead of std::bad_alloc (a review of
// stop 47's first version; the slot was left holding it). Prints "OK".
#include <sys/resource.h>

#include <cstdio>
#include <new>

#include "cxx_modules.h"

namespace {

int bad = 0;

void slot_empty(const char* after) {
  if (magslab::detail::magslab_cxx_ctor_error_v1 != nullptr) {
    std::printf("an exception is left in the slot after %s\n", after);
    bad = 1;
  }
}

struct Big {
  char bytes[256 << 20];
};

}  // namespace

int main() {
  magslab::ObjectCache<Fragile>* fragile = hidden_make_cache();
  hidden_set_fail(true);
  if (noexc_try_acquire(fragile)) std::printf("try_acquire() succeeded though T() throws\n");
  slot_empty("a -fno-exceptions module's try_acquire()");
  if (magslab_cache_alloc(fragile->native_handle()) != nullptr) bad = 1;
  slot_empty("a C caller's magslab_cache_alloc()");
  hidden_set_fail(false);
  delete fragile;

  // An acquire() that fails without a T() throwing: std::bad_alloc.
  magslab::ObjectCache<Big> big("big");
  struct rlimit rl = {64u << 20, 64u << 20};  // below what is mapped already: no mapping more
  if (setrlimit(RLIMIT_AS, &rl) != 0) return 2;
  try {
    Big* b = big.acquire();
    std::printf("acquire() of 256 MiB succeeded under a 64 MiB address-space limit\n");
    big.release(b);
    bad = 1;
  } catch (const std::bad_alloc&) {
  } catch (const std::exception& e) {
    std::printf("acquire() threw '%s', not std::bad_alloc\n", e.what());
    bad = 1;
  }
  slot_empty("a failed acquire()");
  if (!bad) std::printf("OK\n");
  return bad;
}
