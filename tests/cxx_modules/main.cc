// magslab's C++ API across module boundaries (tests/cxx_modules/cxx_modules.h).
// The heap's pmr resource of a library built with -fvisibility=hidden or linked
// -Bsymbolic compares equal to the program's, so a std::pmr container moves
// between them without a copy; one of a library with a heap of its own
// (libmagslab.a, symbols hidden) and one whose class has no RTTI compare
// unequal, without a crash. An ObjectCache made in such a library and used
// here rethrows what T() threw. Until stop 47 each module had its own resource
// singleton, which compared unequal (a container swapped across was undefined
// behaviour), and its own slot for T()'s exception, so acquire() threw
// std::bad_alloc. Prints "OK" on success.
#include <cstdio>
#include <cstdlib>
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "cxx_modules.h"

namespace {

int bad = 0;

// Made before main(), destroyed at exit after the program's first
// resource() call's registration object: the resources of one heap must
// still compare equal there (until a review of stop 47 the program's class
// was removed at the start of exit(), and a std::list::splice across aborted).
struct AtExit {
  std::pmr::memory_resource* theirs = nullptr;
  ~AtExit() {
    if (theirs == nullptr) return;
    std::pmr::memory_resource* mine = magslab::pmr::resource();
    if (!(*mine == *theirs) || !(*theirs == *mine)) {
      std::printf("at exit: the library's heap resource and the program's compare unequal\n");
      std::fflush(stdout);
      std::_Exit(1);
    }
    std::pmr::list<int> a({1, 2}, mine), b({3}, theirs);
    a.splice(a.end(), b);  // libstdc++ aborts when the allocators differ
    b.splice(b.end(), a);
    if (b.size() != 3) std::_Exit(1);
  }
} g_at_exit;

void fail(const char* module, const char* what) {
  std::printf("%s: %s\n", module, what);
  bad = 1;
}

void same_heap(const char* m, std::pmr::memory_resource* theirs,
               std::pmr::vector<int>* (*make)(int), void (*drop)(std::pmr::vector<int>*)) {
  std::pmr::memory_resource* mine = magslab::pmr::resource();
  if (!(*mine == *theirs)) fail(m, "the program's heap resource compares unequal to the library's");
  if (!(*theirs == *mine)) fail(m, "the library's heap resource compares unequal to the program's");
  std::pmr::vector<int>* v = make(1000);
  const int* data = v->data();
  std::pmr::vector<int> here(std::move(*v), mine);  // equal resources: the buffer moves
  if (here.data() != data) fail(m, "a pmr vector moved from the library's resource was copied");
  std::pmr::vector<int> other(3, 7, mine);
  v->swap(other);  // undefined unless the allocators compare equal
  if (v->size() != 3 || other.size() != 0) fail(m, "swap");
  drop(v);
  std::pmr::string s("a string long enough to be on the heap, not inline", theirs);
  s.append(" and some more");  // reallocated through the library's resource
  std::pmr::string t(std::move(s), mine);
  if (t != "a string long enough to be on the heap, not inline and some more") fail(m, "string");
}

void cache_rethrows(const char* m, magslab::ObjectCache<Fragile>* cache, void (*set_fail)(bool)) {
  set_fail(true);
  try {
    Fragile* f = cache->acquire();
    std::printf("%s: acquire() returned %p though T() throws\n", m, static_cast<void*>(f));
    cache->release(f);
    bad = 1;
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()) != "Fragile() failed")
      fail(m, "acquire() threw another runtime_error");
  } catch (const std::bad_alloc&) {
    fail(m, "acquire() threw std::bad_alloc, not what T() threw");
  }
  if (cache->try_acquire() != nullptr)
    fail(m, "try_acquire() returned an object though T() throws");
  set_fail(false);
  try {
    Fragile* g = cache->acquire();  // works again, and no stale exception is thrown
    cache->release(g);
  } catch (...) {
    fail(m, "acquire() threw after T() stopped throwing");
  }
  delete cache;
}

void unequal(const char* m, std::pmr::memory_resource* theirs) {
  std::pmr::memory_resource* mine = magslab::pmr::resource();
  if (*mine == *theirs || *theirs == *mine)
    fail(m, "compares equal to the program's heap resource");
}

}  // namespace

int main() {
  // The libraries' resources were made by their static constructors.
  if (hidden_resource_at_load() != hidden_resource() ||
      bsymbolic_resource_at_load() != bsymbolic_resource() ||
      isolated_resource_at_load() != isolated_resource())
    fail("libraries", "resource() at load and later differ");
  same_heap("hidden", hidden_resource(), hidden_vector, hidden_delete_vector);
  same_heap("bsymbolic", bsymbolic_resource(), bsymbolic_vector, bsymbolic_delete_vector);
  cache_rethrows("hidden", hidden_make_cache(), hidden_set_fail);
  cache_rethrows("bsymbolic", bsymbolic_make_cache(), bsymbolic_set_fail);

  // A heap of its own: unequal, so a move copies into the program's heap.
  unequal("isolated", isolated_resource());
  std::pmr::vector<int>* v = isolated_vector(1000);
  std::pmr::vector<int> here(std::move(*v), magslab::pmr::resource());
  if (here.size() != 1000 || here[999] != 999) fail("isolated", "moved vector");
  isolated_delete_vector(v);  // its buffer goes back to the library's heap
  if (*hidden_resource() == *isolated_resource()) fail("isolated", "equal to hidden's");

  unequal("nortti", nortti_resource());
  if (!(*nortti_resource() == *nortti_resource())) fail("nortti", "unequal to itself");

  g_at_exit.theirs = hidden_resource();
  if (!bad) std::printf("OK\n");
  return bad;
}
