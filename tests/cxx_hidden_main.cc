// magslab's C++ API across a module boundary (tests/cxx_hidden.h): the heap's
// pmr resource of a library built with -fvisibility=hidden compares equal to
// the program's, and a std::pmr container moves between them without a copy;
// an ObjectCache made in that library and used here rethrows what T() threw
// (until stop 43 each module had its own resource singleton, which compared
// unequal, and its own slot for the exception, so acquire() threw
// std::bad_alloc). Prints "OK" on success.
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "cxx_hidden.h"

int main() {
  int bad = 0;
  std::pmr::memory_resource* mine = magslab::pmr::resource();
  std::pmr::memory_resource* theirs = lib_resource();
  if (mine == theirs) std::printf("note: one resource object (the library shares it)\n");
  if (!(*mine == *theirs) || !(*theirs == *mine)) {
    std::printf("the library's heap resource compares unequal to the program's\n");
    bad = 1;
  }
  std::pmr::vector<int> a({1, 2, 3}, theirs);
  const int* data = a.data();
  std::pmr::vector<int> b(std::move(a), mine);  // equal resources: the buffer moves
  if (b.data() != data) {
    std::printf("a pmr vector moved between the resources was copied\n");
    bad = 1;
  }
  std::pmr::string s("a string long enough to be on the heap, not inline", theirs);
  s.append(" and some more");  // reallocated through the library's resource
  std::pmr::string t(s, mine);
  if (t != s) bad = 1;

  magslab::ObjectCache<Fragile>* cache = lib_make_cache();
  lib_set_fail(true);
  try {
    Fragile* f = cache->acquire();
    std::printf("acquire() returned %p though T() throws\n", static_cast<void*>(f));
    cache->release(f);
    bad = 1;
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()) != "Fragile() failed") {
      std::printf("acquire() threw std::runtime_error(\"%s\")\n", e.what());
      bad = 1;
    }
  } catch (const std::bad_alloc&) {
    std::printf("acquire() threw std::bad_alloc, not what T() threw\n");
    bad = 1;
  }
  if (cache->try_acquire() != nullptr) {
    std::printf("try_acquire() returned an object though T() throws\n");
    bad = 1;
  }
  lib_set_fail(false);
  Fragile* g = cache->acquire();  // works again, and no stale exception is thrown
  cache->release(g);
  delete cache;
  if (!bad) std::printf("OK\n");
  return bad;
}
