// api/magslab: the C entry points. malloc and free are a class lookup and a magazine
// pop/push (thread_cache.h); everything else is out of line.
#include "magslab/magslab.h"

#include <errno.h>

#include <cstring>

#include "api/check.h"
#include "api/entry.h"
#include "api/report.h"
#include "chunks/chunk_map.h"
#include "chunks/page_heap.h"
#include "large/large.h"
#include "platform/platform.h"
#include "platform/valgrind.h"
#include "small/decay.h"
#include "small/depot.h"
#include "small/requested.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "small/thread_cache.h"

using namespace magslab;
using namespace magslab::api;  // the release paths (api/entry.h)

namespace magslab {
void register_fork_handlers();  // api/fork.cc
}

// Runs when the library is loaded (before main for a linked or preloaded
// library). Nothing else needs a constructor: all state is constant-initialised.
// Calling into api/report.cc from here also pulls it (and its exit report)
// into programs that link the static library.
// The loader passes (argc, argv, envp) to ELF constructors; this one runs
// before the C library's (-z initfirst: api/fork.cc), which sets `environ`.
// The options first: pthread_atfork allocates, and the first allocation's
// slow path would otherwise set this thread up before they are read.
// Once: the object form's .preinit_array entry runs it before every library's
// constructor, and the constructor then finds it done. Both run on the
// loader's thread, one after the other: a plain flag.
namespace {
bool g_loaded = false;
}  // namespace

void api::at_load(int /*argc*/, char** /*argv*/, char** envp) {
  if (g_loaded) return;
  g_loaded = true;
  report::load_options(envp);
  register_fork_handlers();
  decay::set_hook(&large::decay);
  // What a refused mapping gives back before it is tried again
  // (chunks/page_heap.h): what holds address space — cached empty slabs (their
  // chunks may become free), free chunks, parked and cached huge mappings.
  // Not magslab_trim's flush of this thread's magazines and of the depot
  // (every thread's), nor its purge: a program that keeps asking for what it
  // cannot have would drain them at each try (a review measured a failing
  // malloc at 11.7 us against 4.5 with them).
  heap::set_reclaim([] {
    slab::trim();
    large::release_mappings();
  });
}

namespace {

// A priority of its own, the first a program may use: GCC's link-time
// optimisation merges the constructors of a priority shared by two or more into
// one function that calls them with no arguments, and this one read envp as
// null (an LTO build ignored mag_max and show_stats: ctest
// options_env_preload_lto, stop 51's bug hunt). It also runs before the
// library's other constructors now, whose dlsym calls may allocate.
// Through the exported name (defined in api/report.cc, another file, so that
// no compiler binds the call here): -z initfirst runs only the last loaded
// object's constructors first, and with the override preloaded into a program
// linked with libmagslab.so that is libmagslab.so — whose calls of magslab_*
// go to the override. So the override (whose calls bind to itself:
// -Bsymbolic-functions) is set up first still, and registers its fork
// handlers before any other library's constructor runs; until stop 53 it ran
// after them, and a library's handlers could hang fork() as before stop 33
// (override.atfork_first.preload_over_libmagslab). Then this library's own
// set-up, as before: what a dlsym() on its handle reaches is still its own.
[[gnu::constructor(101)]] void on_load(int argc, char** argv, char** envp) {
  magslab_at_load_v1(argc, argv, envp);
  api::at_load(argc, argv, envp);
}

void* fail(int err) {
  errno = err;
  return nullptr;
}

// An object of class cls for a request of n bytes (n fits the class).
inline void* alloc_small(unsigned cls, size_t n) {
  void* p = cache::alloc(cls);
  if constexpr (kExactRequested) api::note_alloc(p, n);
  return p;
}

// p is not the start of an object of a slab of class cls (or, for
// kWrongSizedFree, the size does not fit its class).
[[noreturn]] MAGSLAB_COLD void invalid(const void* p, Misuse kind, unsigned cls) {
  platform::misuse(kind, p, BlockInfo::small(cls, kClasses[cls].size));
}

// p's page word is 0: p is in no slab, unless its page is a hollow page of
// one (slab::hollow), whose objects are all free: then the misuse is
// reported here. Otherwise p is for the large-block layer (or NULL).
inline void check_not_hollow(const void* p, Misuse kind) {
  if (MAGSLAB_UNLIKELY(pagemap::lookup_slab(reinterpret_cast<uintptr_t>(p)) != nullptr))
    slab::report_hollow(p, kind);
}

// The page word (slab.h) of p's page, after checking that p is the start of an
// object of its slab; 0 if p is in no slab at all. Aborts on interior or
// misaligned pointers. One load from the page map; the slab's record is not read.
inline uint64_t checked_word(const void* p, Misuse kind) {
  auto a = reinterpret_cast<uintptr_t>(p);
  uint64_t w = pagemap::lookup_word(a);
  if (MAGSLAB_UNLIKELY(!valid_word(w, a))) {  // also for w == 0: in no slab
    if (w != 0) invalid(p, kind, word_class(w));
    check_not_hollow(p, kind);
    return 0;
  }
  return w;
}

// sized: free_sized's size (0: any), at most the block's usable size.
MAGSLAB_NOINLINE void free_not_in_slab(void* p, size_t sized = 0) {
  if (p == nullptr) return;
  // A thread that uses only huge blocks or page runs makes no thread cache,
  // whose registration starts the decay thread: it is counted here (one load
  // once the thread runs; nothing in a single-threaded process, whose huge
  // blocks and page runs were fresh once: alloc_outside_classes counted it).
  if (!platform::single_threaded()) decay::on_use_outside_classes();
  // A huge block parks first: the park checks that p starts a live huge block
  // (no slab, hollow or not, is one), so the hollow-slab check, a walk of
  // another array of the page map, is for what it leaves (a 4 MiB pair: 267
  // -> 256 instructions, stop 37), and large::free for what that leaves.
  if (large::free_parked(p, sized)) return;
  check_not_hollow(p, Misuse::kInvalidFree);
  large::free(p, sized);
}

}  // namespace

// A function of its own, reached by a jump (MAGSLAB_OPAQUE): the sized free's
// fast path then needs no stack frame.
MAGSLAB_OPAQUE void api::wrong_sized_free(void* p, uint64_t w) {
  invalid(p, Misuse::kWrongSizedFree, word_class(w));
}

// The out-of-line halves of api/entry.h's release paths.
MAGSLAB_NOINLINE void* api::note_alloc(void* p, size_t n) {
  if (p != nullptr) {
    requested_slot(p) = static_cast<uint32_t>(n);
    requested::note(static_cast<int64_t>(n));
  }
  return p;
}

namespace {

// large::alloc, counting the calling thread as one that uses magslab when the
// block is fresh memory (a mapping or purged pages: a system call or page
// faults anyway): a thread that only allocates huge blocks another frees (a
// producer of buffers) makes no thread cache and frees none. In a
// single-threaded process too (unlike free_not_in_slab): the first huge block
// or page run of a thread is fresh, and a producer that made its first
// buffers before its consumer thread existed, then only took back those the
// consumer freed (park slots), was never counted, and no decay thread started
// (stop 54's bug hunt: an idle process kept 16 MiB of them cached for good).
void* alloc_outside_classes(size_t n, size_t align, bool* zeroed) {
  void* p = large::alloc(n, align, zeroed);
  if (p != nullptr && *zeroed) decay::on_use_outside_classes();
  return p;
}

}  // namespace

MAGSLAB_NOINLINE void* api::malloc_big(size_t n) {
  if (n <= kMaxClassSize) return alloc_small(class_of_big(n), n);
  if (n > kMaxRequest) return fail(ENOMEM);
  bool zeroed;
  void* p = alloc_outside_classes(n, 1, &zeroed);
  return p != nullptr ? p : fail(ENOMEM);
}

MAGSLAB_NOINLINE void api::free_not_valid(void* p, uint64_t w, Misuse kind) {
  if (w != 0) invalid(p, kind, word_class(w));
  free_not_in_slab(p);
}

MAGSLAB_NOINLINE void api::free_sized_not_valid(void* p, uint64_t w, size_t n) {
  if (w != 0) invalid(p, Misuse::kInvalidFree, word_class(w));
  free_not_in_slab(p, n);
}

namespace {

// Exact mode: p, a slab block whose requested size is recorded, now stands
// for n bytes asked (a realloc that keeps it, or gave a larger class).
[[maybe_unused]] void note_requested_again(void* p, size_t n) {
  uint32_t& r = requested_slot(p);
  requested::note(static_cast<int64_t>(n) - r);
  r = static_cast<uint32_t>(n);
}

void* alloc_aligned(size_t align, size_t n) {
  if (align <= 16) {
    // Every class above 8 B is a multiple of 16 and slabs start on a page.
    if (align == 16 && n < 16) return alloc_small(kSmallLookup[(16 + 7) >> 3], n);
    return malloc_release(n);
  }
  if (n > kMaxRequest || align > kMaxRequest) return fail(ENOMEM);
  if (align <= kPageSize) {
    unsigned c = class_for_aligned(n, align);
    if (c < kNumClasses) return alloc_small(c, n);
  }
  bool zeroed;
  void* p = alloc_outside_classes(n == 0 ? 1 : n, align, &zeroed);
  return p != nullptr ? p : fail(ENOMEM);
}

// What the entry points below run (check mode's or release's), without the
// Valgrind requests around it. site: the caller of the entry point, for check
// mode's leak report.
[[gnu::always_inline]] inline void* inner_malloc(size_t n, void* site) {
  if constexpr (kCheckMode) return check::malloc(n, site);
  (void)site;
  return malloc_release(n);
}

[[gnu::always_inline]] inline void inner_free(void* p) {
  if constexpr (kCheckMode) return check::free(p);
  free_release(p);
}

void inner_free_sized(void* p, size_t size) {
  if constexpr (kCheckMode) return check::free_sized(p, size);
  free_sized_release(p, size);
}

void* inner_aligned(size_t alignment, size_t size, void* site) {
  if constexpr (kCheckMode) return check::aligned(alignment, size, site);
  (void)site;
  return alloc_aligned(alignment, size);
}

// The usable size of p's block as magslab carved it (in check mode too, where
// the bytes past the requested size hold the canary).
size_t raw_usable_size(const void* p) {
  if (p == nullptr) return 0;
  if (uint64_t w = checked_word(p, Misuse::kInvalidUsableSize)) return kClasses[word_class(w)].size;
  return large::usable_size(p);
}

size_t inner_usable_size(const void* p) {
  if constexpr (kCheckMode) return check::usable_size(p);
  return raw_usable_size(p);
}

// Under Valgrind (platform/valgrind.h; compiled into the check variants and
// Debug builds only): each entry point runs the inner one with memcheck's
// reports off, then tells memcheck what the program now holds — the requested
// bytes as a block, the slack after them unaddressable — or no longer holds.
// Nothing here calls another entry point, so no block is announced twice.
namespace vgapi {

template <class F>
auto quiet(F f) {
  [[maybe_unused]] vg::ErrorsOff off;
  return f();
}

// memcheck's leak check counts a block reachable while any word of magslab's
// own memory points at it. The magazine slot a small block was just popped
// from still does (mag_pop leaves it): cleared here.
void forget_slot(void* p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  uint64_t w = pagemap::lookup_word(a);
  if (!valid_word(w, a) || !is_owned_cache(t_cache)) return;
  Magazine* m = cache::pair_of_word(t_cache, w).loaded;
  if (m->count < m->cap && m->objs[m->count] == p) m->objs[m->count] = nullptr;
}

// memcheck is told p now holds a block of n bytes for the program.
void announce(void* p, size_t n, bool zeroed) {
  if (kCheckMode && n == 0) {  // check mode's malloc(0): an address in no block at all
    vg::malloc_like(p, 0, zeroed);
    return;
  }
  size_t usable = quiet([&] { return raw_usable_size(p); });
  vg::malloc_like(p, n, zeroed);
  if (usable > n) vg::no_access(static_cast<char*>(p) + n, usable - n);
}

// The blocks a HiddenFromMemcheck scope keeps from memcheck (api/entry.h): a
// failed lookup allocates one or two; past kMax, blocks are announced as usual.
struct Hidden {
  static constexpr int kMax = 8;
  int depth = 0;
  int count = 0;
  struct {
    void* p = nullptr;
    size_t n = 0;
  } blocks[kMax];
};
constinit thread_local Hidden t_hidden MAGSLAB_TLS_MODEL;

void* allocated(void* p, size_t n, bool zeroed) {
  if (p == nullptr) return nullptr;
  if (!(kCheckMode && n == 0)) quiet([&] { forget_slot(p); });
  Hidden& h = t_hidden;
  if (h.depth > 0 && h.count < Hidden::kMax) {
    // Freed before, the address is unaddressable to memcheck; the loader writes its message there.
    vg::usable_unknown_block(p, n, zeroed);
    h.blocks[h.count++] = {p, n};
    return p;
  }
  announce(p, n, zeroed);
  return p;
}

// Whether p is a block a HiddenFromMemcheck scope kept from memcheck; if so,
// forgotten (it is being freed) and unaddressable again, as memcheck leaves a
// block it knew.
bool take_hidden(void* p) {
  Hidden& h = t_hidden;
  for (int i = 0; i < h.count; ++i)
    if (h.blocks[i].p == p) {
      vg::no_access(p, h.blocks[i].n);
      h.blocks[i] = h.blocks[--h.count];
      return true;
    }
  return false;
}

void* malloc(size_t n, void* site) {
  return allocated(quiet([&] { return inner_malloc(n, site); }), n, false);
}

void* aligned(size_t alignment, size_t size, void* site) {
  return allocated(quiet([&] { return inner_aligned(alignment, size, site); }), size, false);
}

// memcheck first: it names a bad or second free with where the block was
// allocated and freed; magslab then aborts with its own line.
template <class F>
void free(void* p, F inner) {
  if (p == nullptr) return;
  if (!take_hidden(p)) vg::free_like(p);
  quiet([&] {
    inner();
    return 0;
  });
}

// The requested size as memcheck knows it (0 for a block it holds freed).
size_t requested(const void* p) {
  return quiet([&] { return vg::addressable(p, inner_usable_size(p)); });
}

void* calloc(size_t count, size_t size, void* site) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail(ENOMEM);
  void* p = quiet([&] {
    void* q = inner_malloc(total, site);
    if (q != nullptr) memset(q, 0, total);
    return q;
  });
  return allocated(p, total, true);
}

// Always a new block, as memcheck's own realloc: memcheck then sees the old
// one freed and the new one's bytes past the old size undefined.
void* realloc(void* p, size_t n, void* site) {
  if (p == nullptr) return malloc(n, site);
  if (n == 0) {
    free(p, [&] { inner_free(p); });
    return nullptr;
  }
  if (n > kMaxRequest) return fail(ENOMEM);
  size_t old = requested(p);
  void* q = malloc(n, site);
  if (q == nullptr) return nullptr;
  memcpy(q, p, n < old ? n : old);
  free(p, [&] { inner_free(p); });
  return q;
}

}  // namespace vgapi

}  // namespace

void* raw::alloc(size_t n, size_t align, bool* zeroed) {
  if (zeroed == nullptr) return alloc_aligned(align, n);
  *zeroed = false;
  // Where malloc_big would go (alloc_aligned, align <= 16): the large heap,
  // which knows whether the pages are fresh (check mode's calloc).
  if (align <= 16 && n > kMaxClassSize && n <= kMaxRequest) {
    void* p = alloc_outside_classes(n, 1, zeroed);
    if (p == nullptr) *zeroed = false;
    return p;
  }
  return alloc_aligned(align, n);
}
void raw::free(void* p) { free_release(p); }

#define MAGSLAB_UNDER_VALGRIND (vg::kCompiled && MAGSLAB_UNLIKELY(vg::running()))

api::HiddenFromMemcheck::HiddenFromMemcheck() {
  if (MAGSLAB_UNDER_VALGRIND) ++vgapi::t_hidden.depth;
}

api::HiddenFromMemcheck::~HiddenFromMemcheck() {
  if (!MAGSLAB_UNDER_VALGRIND) return;
  vgapi::Hidden& h = vgapi::t_hidden;
  if (--h.depth > 0) return;
  // Still held (none seen yet): the program may free them, so memcheck learns of them now,
  // their contents defined (the loader wrote them; announced as undefined, ld.so's later reads
  // of them were reported: a review, stop 40).
  for (int i = 0; i < h.count; ++i) vgapi::announce(h.blocks[i].p, h.blocks[i].n, true);
  h.count = 0;
}

// The bodies of the allocating entry points, for a caller named by `site`
// (check mode's leak report; Valgrind's records): the entry points pass their
// return address, the override's replacements their own (api::*_from), so that
// the site is the program's call also where the compiler makes no tail call (a
// Debug build).
namespace magslab::api {

[[gnu::always_inline]] inline void* malloc_at(size_t n, void* site) {
  return MAGSLAB_UNDER_VALGRIND ? vgapi::malloc(n, site) : inner_malloc(n, site);
}

[[gnu::always_inline]] inline void* aligned_at(size_t alignment, size_t size, void* site) {
  if (!is_pow2(alignment)) return fail(EINVAL);
  if (MAGSLAB_UNDER_VALGRIND) return vgapi::aligned(alignment, size, site);
  return inner_aligned(alignment, size, site);
}

[[gnu::always_inline]] inline void* calloc_at(size_t count, size_t size, void* site) {
  if (MAGSLAB_UNDER_VALGRIND) return vgapi::calloc(count, size, site);
  if constexpr (kCheckMode) return check::calloc(count, size, site);
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail(ENOMEM);
  // Up to the largest class, from the magazines and cleared here: a block
  // reused from a cache is dirty anyway, and a steady calloc/free then takes
  // no lock. Above, the page heap or the OS knows which pages read as zero.
  if (total <= kMaxClassSize) {
    void* p = malloc_release(total);
    if (p != nullptr) memset(p, 0, total);
    return p;
  }
  if (total > kMaxRequest) return fail(ENOMEM);
  bool zeroed;
  void* p = alloc_outside_classes(total, 1, &zeroed);
  if (p == nullptr) return fail(ENOMEM);
  if (!zeroed) memset(p, 0, total);  // fresh pages (never touched, or decommitted) are zero
  return p;
}

[[gnu::always_inline]] inline void* realloc_at(void* p, size_t n, void* site) {
  if (MAGSLAB_UNDER_VALGRIND) return vgapi::realloc(p, n, site);
  if constexpr (kCheckMode) return check::realloc(p, n, site);
  if (p == nullptr) return malloc_release(n);
  if (n == 0) {  // glibc: free and return NULL
    free_release(p);
    return nullptr;
  }
  if (n > kMaxRequest) return fail(ENOMEM);
  size_t old_usable;
  const uint64_t w = checked_word(p, Misuse::kInvalidRealloc);
  if (w != 0) {
    unsigned cls = word_class(w);
    old_usable = kClasses[cls].size;
    // Keep the block if n still fits and would not fit a class half the size.
    if (n <= old_usable && (n > old_usable / 2 || cls == 0)) {
      if constexpr (kExactRequested) note_requested_again(p, n);
      return p;
    }
  } else {
    if (void* q = large::resize(p, n)) return q;
    old_usable = large::usable_size(p);
  }
  const int saved = errno;  // a failure below must not outlive a realloc that succeeds
  void* q = nullptr;
  // A block of a class below 64 KiB (classes an eighth apart) that grows
  // past it moves to one at least a quarter larger, not to the next: a buffer
  // grown by small appends then moves half as often, and leaves blocks in
  // half as many classes — each of which its thread's magazines keep (the
  // realloc workload's peak RSS at 16 threads 82-93 -> 69-77 MiB,
  // docs/benchmarks.md, stop 38). The price: up to ~40 % more than asked
  // for such a block. From 64 KiB on the classes are a quarter apart already.
  if (n > old_usable && old_usable < kMaxSmallSize && old_usable + old_usable / 4 > n) {
    q = malloc_release(old_usable + old_usable / 4);
    if (q == nullptr) errno = saved;
    if constexpr (kExactRequested) {
      if (q != nullptr) note_requested_again(q, n);  // the program asked for n
    }
  }
  if (q == nullptr) q = malloc_release(n);
  if (q == nullptr) {
    if (n > old_usable) return nullptr;  // errno is ENOMEM; p is untouched
    // A shrink with no memory for the move keeps the block, as glibc's does
    // (C allows a failure, but programs rarely check a shrink; until stop 43
    // this returned NULL: tests/realloc_shrink_oom_main.c).
    if (w != 0) {
      if constexpr (kExactRequested) note_requested_again(p, n);
    } else {
      // A run gives its tail back; both count n requested. (It cannot refuse.)
      if (void* r = large::resize(p, n, /*keep=*/true)) p = r;
    }
    errno = saved;
    return p;
  }
  memcpy(q, p, n < old_usable ? n : old_usable);
  free_release(p);
  return q;
}

[[gnu::always_inline]] inline int posix_memalign_at(void** memptr, size_t alignment, size_t size,
                                                    void* site) {
  if (!is_pow2(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  int saved = errno;
  void* p = aligned_at(alignment, size, site);
  errno = saved;
  if (p == nullptr) return ENOMEM;
  *memptr = p;
  return 0;
}

}  // namespace magslab::api

namespace {

// magslab_trim's work after check mode's drain, with decay passes held off
// (the caller's decay::NoPassScope): a pass that had taken a magazine from the
// depot, an inbox or a stash, or a block from a park slot, before the trim
// looked there, and gave it back after the trim had emptied the slabs'
// caches, left an emptied slab cached (or a huge mapping in the cache) after
// the trim returned. The drain stays outside: its frees may reach free's slow
// path, which runs a pass itself when there is no background thread.
size_t trim_without_passes() {
  magslab::cache::flush_current();
  magslab::depot::drain();
  size_t bytes = magslab::slab::trim();
  bytes += magslab::large::trim();
  return bytes;
}

}  // namespace

extern "C" {

// Each entry point: under Valgrind (never in release builds: vg::kCompiled),
// the vgapi wrapper; else check mode's or release's code, inline
// (MAGSLAB_UNDER_VALGRIND: above).

void* magslab_malloc(size_t n) {
  // Check mode: the caller's address names the allocation site in the leak report.
  return magslab::api::malloc_at(n, __builtin_return_address(0));
}

void magslab_free(void* p) {
  if (MAGSLAB_UNDER_VALGRIND) return vgapi::free(p, [&] { inner_free(p); });
  inner_free(p);
}

void magslab_free_sized(void* p, size_t size) {
  if (MAGSLAB_UNDER_VALGRIND) return vgapi::free(p, [&] { inner_free_sized(p, size); });
  inner_free_sized(p, size);
}

void* magslab_calloc(size_t count, size_t size) {
  return magslab::api::calloc_at(count, size, __builtin_return_address(0));
}

void* magslab_realloc(void* p, size_t n) {
  return magslab::api::realloc_at(p, n, __builtin_return_address(0));
}

void* magslab_aligned_alloc(size_t alignment, size_t size) {
  return magslab::api::aligned_at(alignment, size, __builtin_return_address(0));
}

int magslab_posix_memalign(void** memptr, size_t alignment, size_t size) {
  return magslab::api::posix_memalign_at(memptr, alignment, size, __builtin_return_address(0));
}

size_t magslab_usable_size(const void* p) {
  // Under Valgrind, the requested size (what memcheck lets the program touch).
  if (MAGSLAB_UNDER_VALGRIND) return p == nullptr ? 0 : vgapi::requested(p);
  return inner_usable_size(p);
}

size_t magslab_trim(void) {
  [[maybe_unused]] vg::ErrorsOff quiet;  // check mode's drain reads freed objects
  if constexpr (kCheckMode) check::drain();
  decay::NoPassScope no_pass;  // what a pass holds meanwhile is not left behind
  return trim_without_passes();
}

size_t magslab_trim_all(void) {
  [[maybe_unused]] vg::ErrorsOff quiet;  // as magslab_trim
  if constexpr (kCheckMode) check::drain();
  // No pass meanwhile (as magslab_stats): one that took a magazine out of the
  // depot, or an idle thread's inbox, stash or previous slot, before this
  // trim looked, and gave it back to its slabs after, left a slab cached
  // (with passes back to back, 1 to 3 trims in 150 left a slab of a class
  // that only an idle thread had used: a flake for InboxRecycledMt's
  // slabs == 0). The pass lock comes before the registry's and the class
  // locks, as in a pass.
  decay::NoPassScope no_pass;
  cache::request_flush_all();
  cache::take_previous_all();  // idle threads' previous magazines too, now
  size_t bytes = trim_without_passes();
  // Pages of unused slab records too, whatever their age (and any empty slab
  // cached since the trim above).
  bool pending = false;
  bytes += slab::decay(UINT64_MAX, UINT64_MAX, &pending);
  // And the pages of slabs in use that only free objects overlap, and of
  // empty magazines.
  bytes += slab::hollow();
  bytes += depot::hollow_empty();
  return bytes;
}

void magslab_thread_idle(void) { cache::retire_current(); }

}  // extern "C"

namespace magslab::api {

// malloc_or's slow paths, out of line so that its fast path keeps no frame.
MAGSLAB_NOINLINE void* small_slow_or(unsigned cls, size_t n, void* (*fail)(size_t)) {
  void* p = cache::alloc_slow(cls);
  return p != nullptr ? p : fail(n);
}
MAGSLAB_NOINLINE void* big_or(size_t n, void* (*fail)(size_t)) {
  void* p = malloc_big(n);
  return p != nullptr ? p : fail(n);
}

void* calloc_from(size_t count, size_t size, void* site) { return calloc_at(count, size, site); }
void* realloc_from(void* p, size_t n, void* site) { return realloc_at(p, n, site); }
int posix_memalign_from(void** out, size_t alignment, size_t size, void* site) {
  return posix_memalign_at(out, alignment, size, site);
}

void* malloc_from(size_t n, void* site) { return malloc_at(n, site); }
void* aligned_from(size_t alignment, size_t size, void* site) {
  return aligned_at(alignment, size, site);
}

}  // namespace magslab::api
