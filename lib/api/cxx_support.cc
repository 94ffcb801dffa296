// api/cxx_support: what magslab.hpp keeps in the library because it must be
// one per heap, not one per module. A shared library built with
// -fvisibility=hidden or linked -Bsymbolic has its own copies of the header's
// inline functions and variables (until stop 47: its own resource() singleton,
// which compared unequal to the program's, and its own slot for T()'s
// exception, so an ObjectCache it made threw std::bad_alloc in the program).
// Plain C types only: the library links no C++ runtime (docs/cpp.md).
#include <atomic>
#include <cstddef>
#include <cstdlib>

#include "base/config.h"
#include "magslab/magslab.h"
#include "magslab/magslab.hpp"

// The exception T() threw while an ObjectCache populated a slab on this thread,
// for the acquire() that waits for it (magslab.hpp, detail::alloc_catching): a
// std::exception_ptr constructed in place, the marker 1 while a call waits and
// none came, nullptr when nobody waits. constinit, and initial-exec but in
// libmagslab.so (MAGSLAB_TLS_MODEL, as t_cache).
constinit __thread void* magslab::detail::magslab_cxx_ctor_error_v1 MAGSLAB_TLS_MODEL = nullptr;

namespace {

// The classes of the magslab::pmr::resource() objects over this heap, one per
// module that includes magslab.hpp and is loaded now (magslab.hpp,
// HeapResource::do_is_equal): their vtable addresses. A module registers its
// class at its first resource() call and takes it back when it is unloaded
// (a static object's destructor; not at exit: g_exiting below), so the slot
// of a module gone is free again, and no class loaded later at its address
// (over another heap, by dlmopen) matches what it left. constinit: a module's static constructor
// may register before this library's own initialisers ran (the override,
// preloaded, is initialised after the libraries of the program: only one
// object can be -z initfirst), and nothing must clear the table then.
//
// Lock-free, every access one word: a slot goes from nullptr to a class by
// compare-exchange (add), back by compare-exchange (remove), and is otherwise
// only read; a reader compares one word with the class it looks for, so a slot
// reused meanwhile (nullptr -> A -> nullptr -> B) misleads nobody (no ABA).
// relaxed throughout: whoever compares with an object got it from its
// module's resource(), whose static initialisation (a guard with
// acquire/release) came after its registration, so coherence shows that
// registration (and g_used's raise) to the reader; nothing else is published.
constexpr size_t kResourceClasses = 128;
constinit std::atomic<const void*> g_classes[kResourceClasses] = {};
// One past the highest slot ever used: readers scan below it.
constinit std::atomic<size_t> g_used{0};

// Set when the process exits: classes are no longer removed then. A module's
// class is removed by a static object's destructor made at its first
// resource() call — in main(), usually — which exit() runs before the
// destructors of every static object made earlier, in the program or any
// library: those then found the resources of one heap unequal, and a
// std::list::splice between them aborted in libstdc++ (a review of stop 47).
// Each add (of the first kExitHandlers) registers note_exit with atexit()
// after the caller's registration object, so at exit it runs first; as the
// library's own handler (its __dso_handle; libmagslab.so is never unloaded:
// -z nodelete) it does not run at a plugin's dlclose, where the plugin's
// class must go.
// relaxed: a flag read by the same exiting thread, or racing an exit anyway.
constinit std::atomic<bool> g_exiting{false};
void note_exit() { g_exiting.store(true, std::memory_order_relaxed); }
// Handlers registered so far: at most kExitHandlers, as glibc never frees an
// atexit entry (a plugin loaded and unloaded a million times grew its list by
// 33 MB: a review). Past them a module's class is removed at exit again, as
// before: only a program that loaded more than 64 distinct classes sees that.
// relaxed: a count, read as a bound.
constexpr unsigned kExitHandlers = 64;
constinit std::atomic<unsigned> g_exit_handlers{0};

}  // namespace

extern "C" MAGSLAB_API int magslab_resource_class_known(const void* vtable) {
  if (vtable == nullptr) return 0;                          // (free slots hold nullptr)
  const size_t n = g_used.load(std::memory_order_relaxed);  // relaxed: see above
  for (size_t i = 0; i < n; ++i)
    if (g_classes[i].load(std::memory_order_relaxed) == vtable) return 1;  // relaxed: see above
  return 0;
}

extern "C" MAGSLAB_API void magslab_resource_class_add(const void* vtable) {
  if (vtable == nullptr || magslab_resource_class_known(vtable)) return;
  for (size_t i = 0; i < kResourceClasses; ++i) {
    const void* none = nullptr;
    // relaxed: see above.
    if (g_classes[i].compare_exchange_strong(none, vtable, std::memory_order_relaxed)) {
      size_t used = g_used.load(std::memory_order_relaxed);  // relaxed: see above
      while (used <= i && !g_used.compare_exchange_weak(used, i + 1, std::memory_order_relaxed)) {
      }
      // (If it fails, or past kExitHandlers, classes are removed at exit, as before.)
      if (g_exit_handlers.fetch_add(1, std::memory_order_relaxed) < kExitHandlers)
        atexit(note_exit);
      return;
    }
  }
}

extern "C" MAGSLAB_API void magslab_resource_class_remove(const void* vtable) {
  if (vtable == nullptr || g_exiting.load(std::memory_order_relaxed)) return;  // relaxed: see there
  // Every copy: two racing adds of one class may both have found it unknown.
  const size_t n = g_used.load(std::memory_order_relaxed);  // relaxed: see above
  for (size_t i = 0; i < n; ++i) {
    const void* v = vtable;
    g_classes[i].compare_exchange_strong(v, nullptr, std::memory_order_relaxed);  // relaxed: above
  }
}
