// override/new_delete: every C++ operator new/delete form over the magslab API.
// new loops on the new_handler and throws std::bad_alloc when there is none;
// the nothrow forms return nullptr.
//
// No link-time dependency on the C++ runtime: the library is built without
// exceptions and linked as C, so a C program that preloads it does not load
// libstdc++, libm and libgcc_s (1.1 MiB of RSS for `sort` or `ls`). What only
// the runtime can do — read the new_handler, throw std::bad_alloc, catch what
// a handler throws in a nothrow new — is looked up in it with dlsym, once at
// load (the program's libstdc++ is mapped before any constructor runs) and
// again on an out-of-memory path if it was loaded later (dlopen), in the
// global scope or, failing that, in a runtime loaded only in a plugin's local
// scope (loaded_runtime). Without a runtime there is no handler; a throwing
// new that cannot throw aborts with one line.
#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "api/entry.h"
#include "magslab/magslab.h"

namespace {

using GetHandler = std::new_handler (*)();
using Thrower = void (*)();
using NothrowNew = void* (*)(std::size_t, const std::nothrow_t&);
using NothrowAlignedNew = void* (*)(std::size_t, std::align_val_t, const std::nothrow_t&);

}  // namespace

#if MAGSLAB_OVERRIDE_OBJECTS
// The object form (magslab::override_static) is linked into the executable,
// and so may be a C++ runtime linked statically (-static, -static-libstdc++):
// the executable's dynamic symbol table has none of the runtime's symbols, and
// dlsym finds nothing. Weak references bind to that runtime when the link has
// it (a program that sets a handler links get_new_handler with it; any use of
// std::string or a container links __throw_bad_alloc), and are null in a C
// program, where the dlsym lookups below still run. Without them a failing new
// in such a program aborted ('no C++ runtime to throw') where glibc's threw
// std::bad_alloc, and never called the new_handler (stop 51's bug hunt).
extern "C" {
std::new_handler magslab_linked_get_new_handler() noexcept __asm__("_ZSt15get_new_handlerv")
    __attribute__((weak));
void magslab_linked_throw_bad_alloc() __asm__("_ZSt17__throw_bad_allocv") __attribute__((weak));
// A program that catches std::bad_alloc but uses no container may link no
// __throw_bad_alloc: the exception is then made as the Itanium C++ ABI lays it
// out (a vtable pointer), from the pieces its catch clause and the runtime's
// terminate handling link in.
void* magslab_linked_allocate_exception(std::size_t) __asm__("__cxa_allocate_exception")
    __attribute__((weak));
void magslab_linked_cxa_throw(void*, void*, void (*)(void*)) __asm__("__cxa_throw")
    __attribute__((weak));
extern void* const magslab_linked_bad_alloc_vtable __asm__("_ZTVSt9bad_alloc")
    __attribute__((weak));
extern char magslab_linked_bad_alloc_typeinfo __asm__("_ZTISt9bad_alloc") __attribute__((weak));
void magslab_linked_bad_alloc_dtor(void*) __asm__("_ZNSt9bad_allocD1Ev") __attribute__((weak));
}
#define MAGSLAB_LINKED(f) (&(f))
#else
#define MAGSLAB_LINKED(f) nullptr
#endif

namespace {

// relaxed: each is a pure function of the loaded libraries; a thread that
// sees nullptr looks it up itself.
std::atomic<GetHandler> g_get_handler{MAGSLAB_LINKED(magslab_linked_get_new_handler)};
std::atomic<Thrower> g_throw_bad_alloc{MAGSLAB_LINKED(magslab_linked_throw_bad_alloc)};
std::atomic<NothrowNew> g_runtime_nothrow_new{nullptr};
std::atomic<NothrowAlignedNew> g_runtime_nothrow_aligned_new{nullptr};

// A failed dlsym or dlopen leaves its message with the calling thread,
// allocated, for dlerror(): the first dlerror() takes it, the second lets it
// go. Without this a C program under the preload (no C++ runtime: the
// lookups below fail) kept two blocks from the start (87 and 24 B), which
// check mode's leak report named at exit (stop 39).
void forget_dl_error() {
  if (dlerror() != nullptr) (void)dlerror();
}

// A C++ runtime that is loaded but not in the global scope — a C program
// that dlopen()ed a C++ plugin with RTLD_LOCAL, as Python loads extensions —
// is found by its soname (RTLD_NOLOAD: only if it is already mapped; the
// reference it takes is kept, the runtime being one this process uses).
// Without this, such a plugin's new_handler was never called and a throwing
// new aborted instead of throwing std::bad_alloc (review, stop 31).
void* loaded_runtime() {
#if MAGSLAB_OVERRIDE_OBJECTS
  // The object form may be linked with -static, where a reference to dlopen
  // links glibc's static one and its linker warning ("Using 'dlopen' in
  // statically linked applications requires at runtime the shared libraries
  // ..."): looked up instead, which a static program answers with null (it has
  // no plugins to find), a dynamic one with libc's.
  auto open = reinterpret_cast<void* (*)(const char*, int)>(dlsym(RTLD_DEFAULT, "dlopen"));
  if (open == nullptr) {
    forget_dl_error();
    return nullptr;
  }
#else
  auto* open = &dlopen;
#endif
  for (const char* so : {"libstdc++.so.6", "libc++abi.so.1", "libc++.so.1"}) {
    if (void* h = open(so, RTLD_LAZY | RTLD_NOLOAD)) return h;
    forget_dl_error();
  }
  return nullptr;
}

// `local`: also in a runtime outside the global scope (loaded_runtime). Not
// at load, where none can be yet (plugins are dlopen()ed later), so that a C
// program under the preload makes no dlopen() calls at start.
//
// The loader's blocks for a failed lookup's messages are kept from memcheck
// (api::HiddenFromMemcheck): freed at once, they are the first blocks of their
// classes the program gets, and memcheck named a read after free of the
// program's block with a message's size and stacks (a Debug CI run where the
// library's path made one of 99 bytes; tests/valgrind/memcheck_paths.sh).
template <class F>
F lookup(std::atomic<F>& slot, void* handle, const char* name, bool local = true) {
  F f = slot.load(std::memory_order_relaxed);
  if (f == nullptr) {
    magslab::api::HiddenFromMemcheck hidden;
    f = reinterpret_cast<F>(dlsym(handle, name));
    if (f == nullptr) forget_dl_error();
    if (f == nullptr && local)
      if (void* rt = loaded_runtime()) {
        f = reinterpret_cast<F>(dlsym(rt, name));
        if (f == nullptr) forget_dl_error();
      }
    slot.store(f, std::memory_order_relaxed);
  }
  return f;
}

constexpr const char kGetHandler[] = "_ZSt15get_new_handlerv";
constexpr const char kThrowBadAlloc[] = "_ZSt17__throw_bad_allocv";
constexpr const char kNothrowNew[] = "_ZnwmRKSt9nothrow_t";
constexpr const char kNothrowAlignedNew[] = "_ZnwmSt11align_val_tRKSt9nothrow_t";

GetHandler get_handler_fn() { return lookup(g_get_handler, RTLD_DEFAULT, kGetHandler); }
// The runtime's own nothrow operator new (the next definition after ours): it
// calls ::operator new — ours — inside a try block and returns nullptr for
// whatever a new_handler throws.
NothrowNew runtime_nothrow_new() { return lookup(g_runtime_nothrow_new, RTLD_NEXT, kNothrowNew); }
NothrowAlignedNew runtime_nothrow_aligned_new() {
  return lookup(g_runtime_nothrow_aligned_new, RTLD_NEXT, kNothrowAlignedNew);
}

[[gnu::constructor]] void resolve_runtime() {
  lookup(g_get_handler, RTLD_DEFAULT, kGetHandler, false);
  lookup(g_throw_bad_alloc, RTLD_DEFAULT, kThrowBadAlloc, false);
  lookup(g_runtime_nothrow_new, RTLD_NEXT, kNothrowNew, false);
  lookup(g_runtime_nothrow_aligned_new, RTLD_NEXT, kNothrowAlignedNew, false);
}

std::new_handler current_handler() {
  GetHandler get = get_handler_fn();
  return get != nullptr ? get() : nullptr;  // no C++ runtime: nobody can have set one
}

// Whether a request takes malloc's path: the default alignment or less, but
// not an explicit std::align_val_t of 16 for fewer bytes, whose malloc class
// (8 B) is only 8-aligned — that one takes the aligned path, which serves it
// from the 16-byte class and still records the size asked for (check mode's
// sized delete compares it). Plain new passes align 1.
inline bool plain_path(std::size_t n, std::size_t align) {
  return align < __STDCPP_DEFAULT_NEW_ALIGNMENT__ ||
         (align == __STDCPP_DEFAULT_NEW_ALIGNMENT__ && n >= align);
}

// site: the program's call of the operator (check mode's leak report names
// it): each exported operator passes its own return address, as these calls
// are not jumps and magslab_malloc's would be an address in this library.
void* alloc(std::size_t n, std::size_t align, void* site) {
  return plain_path(n, align) ? magslab::api::malloc_from(n, site)
                              : magslab::api::aligned_from(align, n, site);
}

[[noreturn]] void throw_bad_alloc() {
  if (Thrower t = lookup(g_throw_bad_alloc, RTLD_DEFAULT, kThrowBadAlloc)) t();
#if MAGSLAB_OVERRIDE_OBJECTS
  if (&magslab_linked_allocate_exception != nullptr && &magslab_linked_cxa_throw != nullptr &&
      &magslab_linked_bad_alloc_vtable != nullptr &&
      &magslab_linked_bad_alloc_typeinfo != nullptr && &magslab_linked_bad_alloc_dtor != nullptr) {
    static_assert(sizeof(std::bad_alloc) == sizeof(void*));
    void* e = magslab_linked_allocate_exception(sizeof(std::bad_alloc));
    // The vtable's address point: past its offset-to-top and RTTI pointer.
    *static_cast<std::uintptr_t*>(e) =
        reinterpret_cast<std::uintptr_t>(&magslab_linked_bad_alloc_vtable) + 2 * sizeof(void*);
    magslab_linked_cxa_throw(e, &magslab_linked_bad_alloc_typeinfo, magslab_linked_bad_alloc_dtor);
  }
#endif
  static const char kMsg[] = "magslab: operator new: out of memory, and no C++ runtime to throw\n";
  ssize_t ignored = write(2, kMsg, sizeof kMsg - 1);
  (void)ignored;
  abort();
}

// After an allocation failed: call the new_handler until one succeeds.
void* handler_loop(std::size_t n, std::size_t align, void* site) {
  for (;;) {
    std::new_handler h = current_handler();
    if (h == nullptr) throw_bad_alloc();
    h();  // may free memory, throw, or abort
    if (void* p = alloc(n, align, site)) return p;
  }
}

// (The first try was a jump from operator new; the site of a block the
// handler's retry makes is not recorded.)
[[maybe_unused]] void* handler_loop_default(std::size_t n) { return handler_loop(n, 1, nullptr); }

// The default alignment, the common case, is a jump to the allocation itself,
// which calls handler_loop_default only if it fails.
inline void* new_or_throw(std::size_t n, std::size_t align, void* site) {
  if constexpr (magslab::api::kInlineNew)
    if (plain_path(n, align)) return magslab::api::malloc_or_release(n, handler_loop_default);
  if (void* p = alloc(n, align, site)) return p;
  return handler_loop(n, align, site);
}

// Ours: std::nothrow itself lives in the runtime.
constexpr std::nothrow_t kNothrow{};

void* new_nothrow(std::size_t n, std::size_t align, void* site) noexcept {
  if (void* p = alloc(n, align, site)) return p;
  if (current_handler() == nullptr) return nullptr;
  // A handler may throw: let the runtime's nothrow new (which catches) run the
  // loop through our throwing new.
  if (plain_path(n, align)) {
    if (NothrowNew f = runtime_nothrow_new()) return f(n, kNothrow);
  } else if (NothrowAlignedNew f = runtime_nothrow_aligned_new()) {
    return f(n, std::align_val_t{align}, kNothrow);
  }
  for (;;) {  // no runtime's nothrow new found: a throwing handler ends the program
    std::new_handler h = current_handler();
    if (h == nullptr) return nullptr;
    h();
    if (void* p = alloc(n, align, site)) return p;
  }
}

// A program that replaces a basic form — operator new(size_t), operator
// delete(void*), their array or align_val_t kinds — expects the others to call
// it: the standard's default behaviour of the array, nothrow and sized forms
// is to call the basic one ([new.delete]), and libstdc++'s do so through the
// global scope. Ours do not (each serves from magslab itself): in such a
// program `delete p` of a complete type (a sized delete) handed the program's
// block to magslab (an invalid free: abort), new[] and nothrow new handed
// magslab's blocks to the program's delete, and a program counting its news
// and deletes counted wrong (stop 52's bug hunt). So when, at load, one of the
// basic forms in the global scope is not ours, every other form of ours passes
// its call on to the C++ runtime's own (the next definition after ours), which
// calls the basic forms through the global scope, the program's included. One
// load and branch more for these forms, none for the basic ones, nor for
// malloc and free. Not in the object form: linked into the executable, it
// defines every form there, and a program of its own ones would not link.
#if MAGSLAB_OVERRIDE_OBJECTS
constexpr bool g_chain = false;
#else
bool g_chain = false;  // set once, by a constructor, before the program runs
#endif

struct Next {
  void* (*znam)(std::size_t);
  void* (*znwm_nt)(std::size_t, const std::nothrow_t&);
  void* (*znam_nt)(std::size_t, const std::nothrow_t&);
  void* (*znam_al)(std::size_t, std::align_val_t);
  void* (*znwm_al_nt)(std::size_t, std::align_val_t, const std::nothrow_t&);
  void* (*znam_al_nt)(std::size_t, std::align_val_t, const std::nothrow_t&);
  void (*zdapv)(void*);
  void (*zdlpv_nt)(void*, const std::nothrow_t&);
  void (*zdapv_nt)(void*, const std::nothrow_t&);
  void (*zdlpv_sz)(void*, std::size_t);
  void (*zdapv_sz)(void*, std::size_t);
  void (*zdapv_al)(void*, std::align_val_t);
  void (*zdlpv_sz_al)(void*, std::size_t, std::align_val_t);
  void (*zdapv_sz_al)(void*, std::size_t, std::align_val_t);
  void (*zdlpv_al_nt)(void*, std::align_val_t, const std::nothrow_t&);
  void (*zdapv_al_nt)(void*, std::align_val_t, const std::nothrow_t&);
};
Next g_next;  // the runtime's forms, where g_chain

}  // namespace

#define MAGSLAB_EXPORT __attribute__((visibility("default")))
// A form that is not a basic one: passed on to the runtime's where g_chain.
#define MAGSLAB_CHAIN(form, ...) \
  if (MAGSLAB_UNLIKELY(g_chain)) return g_next.form(__VA_ARGS__)

MAGSLAB_EXPORT void* operator new(std::size_t n) {
  return new_or_throw(n, 1, __builtin_return_address(0));
}
MAGSLAB_EXPORT void* operator new[](std::size_t n) {
  MAGSLAB_CHAIN(znam, n);
  return new_or_throw(n, 1, __builtin_return_address(0));
}
MAGSLAB_EXPORT void* operator new(std::size_t n, const std::nothrow_t& nt) noexcept {
  MAGSLAB_CHAIN(znwm_nt, n, nt);
  return new_nothrow(n, 1, __builtin_return_address(0));
}
MAGSLAB_EXPORT void* operator new[](std::size_t n, const std::nothrow_t& nt) noexcept {
  MAGSLAB_CHAIN(znam_nt, n, nt);
  return new_nothrow(n, 1, __builtin_return_address(0));
}
MAGSLAB_EXPORT void* operator new(std::size_t n, std::align_val_t a) {
  return new_or_throw(n, static_cast<std::size_t>(a), __builtin_return_address(0));
}
MAGSLAB_EXPORT void* operator new[](std::size_t n, std::align_val_t a) {
  MAGSLAB_CHAIN(znam_al, n, a);
  return new_or_throw(n, static_cast<std::size_t>(a), __builtin_return_address(0));
}
MAGSLAB_EXPORT void* operator new(std::size_t n, std::align_val_t a,
                                  const std::nothrow_t& nt) noexcept {
  MAGSLAB_CHAIN(znwm_al_nt, n, a, nt);
  return new_nothrow(n, static_cast<std::size_t>(a), __builtin_return_address(0));
}
MAGSLAB_EXPORT void* operator new[](std::size_t n, std::align_val_t a,
                                    const std::nothrow_t& nt) noexcept {
  MAGSLAB_CHAIN(znam_al_nt, n, a, nt);
  return new_nothrow(n, static_cast<std::size_t>(a), __builtin_return_address(0));
}

// The two hot deletes run the release paths here, inline (api/entry.h), as
// override/malloc.cc's free does.
MAGSLAB_EXPORT void operator delete(void* p) noexcept {
  if constexpr (magslab::api::kInlineEntries) return magslab::api::free_release(p);
  magslab_free(p);
}
MAGSLAB_EXPORT void operator delete[](void* p) noexcept {
  MAGSLAB_CHAIN(zdapv, p);
  magslab_free(p);
}
MAGSLAB_EXPORT void operator delete(void* p, const std::nothrow_t& nt) noexcept {
  MAGSLAB_CHAIN(zdlpv_nt, p, nt);
  magslab_free(p);
}
MAGSLAB_EXPORT void operator delete[](void* p, const std::nothrow_t& nt) noexcept {
  MAGSLAB_CHAIN(zdapv_nt, p, nt);
  magslab_free(p);
}
MAGSLAB_EXPORT void operator delete(void* p, std::size_t n) noexcept {
  MAGSLAB_CHAIN(zdlpv_sz, p, n);
  if constexpr (magslab::api::kInlineEntries) return magslab::api::free_sized_release(p, n);
  magslab_free_sized(p, n);
}
MAGSLAB_EXPORT void operator delete[](void* p, std::size_t n) noexcept {
  MAGSLAB_CHAIN(zdapv_sz, p, n);
  magslab_free_sized(p, n);
}
MAGSLAB_EXPORT void operator delete(void* p, std::align_val_t) noexcept { magslab_free(p); }
MAGSLAB_EXPORT void operator delete[](void* p, std::align_val_t a) noexcept {
  MAGSLAB_CHAIN(zdapv_al, p, a);
  magslab_free(p);
}
MAGSLAB_EXPORT void operator delete(void* p, std::size_t n, std::align_val_t a) noexcept {
  MAGSLAB_CHAIN(zdlpv_sz_al, p, n, a);
  magslab_free_sized(p, n);
}
MAGSLAB_EXPORT void operator delete[](void* p, std::size_t n, std::align_val_t a) noexcept {
  MAGSLAB_CHAIN(zdapv_sz_al, p, n, a);
  magslab_free_sized(p, n);
}
MAGSLAB_EXPORT void operator delete(void* p, std::align_val_t a,
                                    const std::nothrow_t& nt) noexcept {
  MAGSLAB_CHAIN(zdlpv_al_nt, p, a, nt);
  magslab_free(p);
}
MAGSLAB_EXPORT void operator delete[](void* p, std::align_val_t a,
                                      const std::nothrow_t& nt) noexcept {
  MAGSLAB_CHAIN(zdapv_al_nt, p, a, nt);
  magslab_free(p);
}

#if !MAGSLAB_OVERRIDE_OBJECTS
namespace {

// The runtime's definition of `name`, the next after ours; nullptr if none.
template <class F>
bool next_of(F& f, const char* name) {
  magslab::api::HiddenFromMemcheck hidden;  // a failed lookup's message (lookup(), above)
  f = reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
  if (f == nullptr) forget_dl_error();
  return f != nullptr;
}

// Whether the global scope's `name` is `ours` (a lookup that fails: no other one either).
bool global_is(const char* name, void* ours) {
  magslab::api::HiddenFromMemcheck hidden;
  void* g = dlsym(RTLD_DEFAULT, name);
  if (g == nullptr) forget_dl_error();
  return g == nullptr || g == ours;
}

// At load, as resolve_runtime: the executable (and any library preloaded
// before this one) is in the global scope already, and nothing loaded later
// comes before us there. Chained only if the runtime has every form.
[[gnu::constructor]] void chain_if_replaced() {
  using New = void* (*)(std::size_t);
  using NewAl = void* (*)(std::size_t, std::align_val_t);
  using Del = void (*)(void*) noexcept;
  using DelAl = void (*)(void*, std::align_val_t) noexcept;
  bool ours =
      global_is("_Znwm", reinterpret_cast<void*>(static_cast<New>(&::operator new))) &&
      global_is("_Znam", reinterpret_cast<void*>(static_cast<New>(&::operator new[]))) &&
      global_is("_ZnwmSt11align_val_t",
                reinterpret_cast<void*>(static_cast<NewAl>(&::operator new))) &&
      global_is("_ZnamSt11align_val_t",
                reinterpret_cast<void*>(static_cast<NewAl>(&::operator new[]))) &&
      global_is("_ZdlPv", reinterpret_cast<void*>(static_cast<Del>(&::operator delete))) &&
      global_is("_ZdaPv", reinterpret_cast<void*>(static_cast<Del>(&::operator delete[]))) &&
      global_is("_ZdlPvSt11align_val_t",
                reinterpret_cast<void*>(static_cast<DelAl>(&::operator delete))) &&
      global_is("_ZdaPvSt11align_val_t",
                reinterpret_cast<void*>(static_cast<DelAl>(&::operator delete[])));
  if (ours) return;
  Next n;
  bool found = next_of(n.znam, "_Znam") && next_of(n.znwm_nt, "_ZnwmRKSt9nothrow_t") &&
               next_of(n.znam_nt, "_ZnamRKSt9nothrow_t") &&
               next_of(n.znam_al, "_ZnamSt11align_val_t") &&
               next_of(n.znwm_al_nt, "_ZnwmSt11align_val_tRKSt9nothrow_t") &&
               next_of(n.znam_al_nt, "_ZnamSt11align_val_tRKSt9nothrow_t") &&
               next_of(n.zdapv, "_ZdaPv") && next_of(n.zdlpv_nt, "_ZdlPvRKSt9nothrow_t") &&
               next_of(n.zdapv_nt, "_ZdaPvRKSt9nothrow_t") && next_of(n.zdlpv_sz, "_ZdlPvm") &&
               next_of(n.zdapv_sz, "_ZdaPvm") && next_of(n.zdapv_al, "_ZdaPvSt11align_val_t") &&
               next_of(n.zdlpv_sz_al, "_ZdlPvmSt11align_val_t") &&
               next_of(n.zdapv_sz_al, "_ZdaPvmSt11align_val_t") &&
               next_of(n.zdlpv_al_nt, "_ZdlPvSt11align_val_tRKSt9nothrow_t") &&
               next_of(n.zdapv_al_nt, "_ZdaPvSt11align_val_tRKSt9nothrow_t");
  if (!found) return;
  g_next = n;
  g_chain = true;
}

}  // namespace
#endif
