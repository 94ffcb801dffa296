// api/cxx_support: what magslab.hpp keeps in the library because it must be
// one per heap, not one per module. A shared library built with
// -fvisibility=hidden or linked -Bsymbolic has its own copies of the header's
// inline functions and variables (until stop 47: its own resource() singleton,
// which compared unequal to the program's, and its own slot for T()'s
// exception, so an ObjectCache it made threw std::bad_alloc in the program).
// Plain C types only: the library links no C++ runtime (docs/cpp.md).
#include <atomic>
#include <cstddef>
#include <cstring>

#include "base/config.h"
#include "magslab/magslab.h"
#include "magslab/magslab.hpp"

// The exception T() threw while an ObjectCache populated a slab on this thread
// (magslab.hpp, detail::set_ctor_error): a std::exception_ptr constructed in
// place, or nullptr. constinit, and initial-exec but in libmagslab.so
// (MAGSLAB_TLS_MODEL, as t_cache).
constinit __thread void* magslab::detail::magslab_cxx_ctor_error_v1 MAGSLAB_TLS_MODEL = nullptr;

namespace {

// The classes of every module's magslab::pmr::resource() object over this heap
// (magslab.hpp, HeapResource::do_is_equal). Append-only and lock-free, so a
// fork or a signal never finds it locked: an entry is claimed with a
// fetch_add, filled, and published by the release store of its vtable, which
// readers load with acquire before they read the words. Entries are never
// removed, so there is no ABA; a module unloaded leaves its entry, and a class
// loaded later at that address matches it only if its first five vtable
// entries (its destructors and do_allocate, do_deallocate, do_is_equal) are
// the same functions at the same addresses as well: the same class.
constexpr size_t kResourceClasses = 64;
constexpr size_t kVtableWords = 5;

struct ResourceClass {
  std::atomic<const void*> vtable{nullptr};
  const void* words[kVtableWords];
};
ResourceClass g_classes[kResourceClasses];
// Entries claimed (may pass kResourceClasses: those claims found no room).
// relaxed would do for the claim itself; readers bound their scan by it and
// check each entry's vtable with acquire.
std::atomic<size_t> g_claimed{0};

bool same_class(const ResourceClass& c, const void* vtable) {
  // acquire: pairs with the release store in magslab_resource_class_add; the words are filled.
  return c.vtable.load(std::memory_order_acquire) == vtable &&
         std::memcmp(c.words, vtable, sizeof c.words) == 0;
}

}  // namespace

extern "C" MAGSLAB_API int magslab_resource_class_known(const void* vtable) {
  // relaxed: a bound; each entry is checked with acquire (same_class).
  const size_t n = g_claimed.load(std::memory_order_relaxed);
  for (size_t i = 0; i < n && i < kResourceClasses; ++i)
    if (same_class(g_classes[i], vtable)) return 1;
  return 0;
}

extern "C" MAGSLAB_API void magslab_resource_class_add(const void* vtable) {
  if (vtable == nullptr || magslab_resource_class_known(vtable)) return;
  // relaxed: the claim orders nothing; the entry is published by its vtable's store.
  const size_t i = g_claimed.fetch_add(1, std::memory_order_relaxed);
  if (i >= kResourceClasses) return;
  std::memcpy(g_classes[i].words, vtable, sizeof g_classes[i].words);
  // release: the words above are visible to whoever sees the vtable.
  g_classes[i].vtable.store(vtable, std::memory_order_release);
}
