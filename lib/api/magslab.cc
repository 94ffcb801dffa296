// api/magslab: the C entry points. malloc and free are a class lookup and a magazine
// pop/push (thread_cache.h); everything else is out of line.
#include "magslab/magslab.h"

#include <errno.h>

#include <cstring>

#include "api/check.h"
#include "api/report.h"
#include "chunks/chunk_map.h"
#include "large/large.h"
#include "platform/platform.h"
#include "small/decay.h"
#include "small/depot.h"
#include "small/requested.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "small/thread_cache.h"

using namespace magslab;

namespace magslab {
void register_fork_handlers();  // api/fork.cc
}

namespace {

// Runs when the library is loaded (before main for a linked or preloaded
// library). Nothing else needs a constructor: all state is constant-initialised.
// Calling into api/report.cc from here also pulls it (and its exit report)
// into programs that link the static library.
[[gnu::constructor]] void on_load() {
  register_fork_handlers();
  decay::set_hook(&large::decay);
  report::load_options();
}

void* fail(int err) {
  errno = err;
  return nullptr;
}

// Exact mode: p's entry in its slab's side array.
inline uint32_t& requested_slot(void* p) {
  return requested::slot(pagemap::lookup_slab(reinterpret_cast<uintptr_t>(p)), p);
}

// Exact mode (requested.h): record n as the size asked for p, a slab object
// just handed out (nullptr: nothing to record).
[[maybe_unused]] MAGSLAB_NOINLINE void note_alloc(void* p, size_t n) {
  if (p == nullptr) return;
  requested_slot(p) = static_cast<uint32_t>(n);
  requested::note(static_cast<int64_t>(n));
}

// An object of class cls for a request of n bytes (n fits the class).
inline void* alloc_small(unsigned cls, size_t n) {
  void* p = cache::alloc(cls);
  if constexpr (kExactRequested) note_alloc(p, n);
  return p;
}

// Free p, an object of a slab whose page word is w (checked: valid_word()).
inline void free_small(void* p, uint64_t w) {
  if constexpr (kExactRequested) {
    // Read before the free: once freed, another thread may hand p out again.
    uint32_t n = requested_slot(p);
    cache::free(p, w);
    requested::note(-static_cast<int64_t>(n));  // after: a first free creates the cache
  } else {
    cache::free(p, w);
  }
}

MAGSLAB_NOINLINE void* malloc_big(size_t n) {
  if (n <= kMaxClassSize) return alloc_small(detail::compute_class(n), n);
  if (n > kMaxRequest) return fail(ENOMEM);
  bool zeroed;
  void* p = large::alloc(n, 1, &zeroed);
  return p != nullptr ? p : fail(ENOMEM);
}

// p is not the start of an object of a slab of class cls (or, for
// kWrongSizedFree, the size does not fit its class).
[[noreturn]] MAGSLAB_COLD void invalid(const void* p, Misuse kind, unsigned cls) {
  platform::misuse(kind, p, BlockInfo::small(cls, kClasses[cls].size));
}

// The page word (slab.h) of p's page, after checking that p is the start of an
// object of its slab; 0 if p is in no slab at all. Aborts on interior or
// misaligned pointers. One load from the page map; the slab's record is not read.
inline uint64_t checked_word(const void* p, Misuse kind) {
  auto a = reinterpret_cast<uintptr_t>(p);
  uint64_t w = pagemap::lookup_word(a);
  if (MAGSLAB_UNLIKELY(!valid_word(w, a))) {  // also for w == 0: in no slab
    if (w != 0) invalid(p, kind, word_class(w));
    return 0;
  }
  return w;
}

MAGSLAB_NOINLINE void free_not_in_slab(void* p) {
  if (p == nullptr) return;
  large::free(p);
}

// p is not an object start of a slab: in none (w == 0: large, NULL or foreign),
// or an interior or misaligned pointer into the slab of page word w.
void free_not_valid(void* p, uint64_t w, Misuse kind) {
  if (w != 0) invalid(p, kind, word_class(w));
  free_not_in_slab(p);
}

// The release malloc and free: the C entry points inline them, check mode
// calls them through raw::alloc and raw::free (api/check.h).
[[gnu::always_inline]] inline void* malloc_release(size_t n) {
  if (MAGSLAB_LIKELY(n <= kLookupMax)) {
    void* p = cache::alloc_at(cache::kSmallPairOffsets[(n + 7) >> 3]);
    if constexpr (kExactRequested) note_alloc(p, n);
    return p;
  }
  return malloc_big(n);
}

[[gnu::always_inline]] inline void free_release(void* p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  uint64_t w = pagemap::lookup_word(a);
  if (MAGSLAB_UNLIKELY(!valid_word(w, a))) return free_not_valid(p, w, Misuse::kInvalidFree);
  free_small(p, w);
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
  void* p = large::alloc(n == 0 ? 1 : n, align, &zeroed);
  return p != nullptr ? p : fail(ENOMEM);
}

}  // namespace

void* raw::alloc(size_t n, size_t align) { return alloc_aligned(align, n); }
void raw::free(void* p) { free_release(p); }

extern "C" {

void* magslab_malloc(size_t n) {
  // Check mode: the caller's address names the allocation site in the leak report.
  if constexpr (kCheckMode) return check::malloc(n, __builtin_return_address(0));
  return malloc_release(n);
}

void magslab_free(void* p) {
  if constexpr (kCheckMode) return check::free(p);
  free_release(p);
}

void magslab_free_sized(void* p, size_t size) {
  if constexpr (kCheckMode) return check::free_sized(p, size);
  uint64_t w = checked_word(p, Misuse::kInvalidFree);
  if (MAGSLAB_UNLIKELY(w == 0)) return free_not_in_slab(p);
  unsigned cls = word_class(w);
  if (MAGSLAB_UNLIKELY(size > kClasses[cls].size)) invalid(p, Misuse::kWrongSizedFree, cls);
  free_small(p, w);
}

void* magslab_calloc(size_t count, size_t size) {
  if constexpr (kCheckMode) return check::calloc(count, size, __builtin_return_address(0));
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail(ENOMEM);
  // Up to the largest class, from the magazines and cleared here: a block
  // reused from a cache is dirty anyway, and a steady calloc/free then takes
  // no lock. Above, the page heap or the OS knows which pages read as zero.
  if (total <= kMaxClassSize) {
    void* p = magslab_malloc(total);
    if (p != nullptr) memset(p, 0, total);
    return p;
  }
  if (total > kMaxRequest) return fail(ENOMEM);
  bool zeroed;
  void* p = large::alloc(total, 1, &zeroed);
  if (p == nullptr) return fail(ENOMEM);
  if (!zeroed) memset(p, 0, total);  // fresh pages (never touched, or decommitted) are zero
  return p;
}

void* magslab_realloc(void* p, size_t n) {
  if constexpr (kCheckMode) return check::realloc(p, n, __builtin_return_address(0));
  if (p == nullptr) return magslab_malloc(n);
  if (n == 0) {  // glibc: free and return NULL
    magslab_free(p);
    return nullptr;
  }
  if (n > kMaxRequest) return fail(ENOMEM);
  size_t old_usable;
  if (uint64_t w = checked_word(p, Misuse::kInvalidRealloc)) {
    unsigned cls = word_class(w);
    old_usable = kClasses[cls].size;
    // Keep the block if n still fits and would not fit a class half the size.
    if (n <= old_usable && (n > old_usable / 2 || cls == 0)) {
      if constexpr (kExactRequested) {
        uint32_t& r = requested_slot(p);
        requested::note(static_cast<int64_t>(n) - r);
        r = static_cast<uint32_t>(n);
      }
      return p;
    }
  } else {
    if (void* q = large::resize(p, n)) return q;
    old_usable = large::usable_size(p);
  }
  void* q = magslab_malloc(n);
  if (q == nullptr) return nullptr;  // errno is ENOMEM; p is untouched
  memcpy(q, p, n < old_usable ? n : old_usable);
  magslab_free(p);
  return q;
}

void* magslab_aligned_alloc(size_t alignment, size_t size) {
  if (!is_pow2(alignment)) return fail(EINVAL);
  if constexpr (kCheckMode) return check::aligned(alignment, size, __builtin_return_address(0));
  return alloc_aligned(alignment, size);
}

int magslab_posix_memalign(void** memptr, size_t alignment, size_t size) {
  if (!is_pow2(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  int saved = errno;
  void* p;
  if constexpr (kCheckMode)
    p = check::aligned(alignment, size, __builtin_return_address(0));
  else
    p = alloc_aligned(alignment, size);
  errno = saved;
  if (p == nullptr) return ENOMEM;
  *memptr = p;
  return 0;
}

size_t magslab_usable_size(const void* p) {
  if constexpr (kCheckMode) return check::usable_size(p);
  if (p == nullptr) return 0;
  if (uint64_t w = checked_word(p, Misuse::kInvalidUsableSize)) return kClasses[word_class(w)].size;
  return large::usable_size(p);
}

size_t magslab_trim(void) {
  if constexpr (kCheckMode) check::drain();
  cache::flush_current();
  depot::drain();
  size_t bytes = slab::trim();
  bytes += large::trim();
  return bytes;
}

size_t magslab_trim_all(void) {
  cache::request_flush_all();
  size_t bytes = magslab_trim();
  // Pages of unused slab records too, whatever their age (and any empty slab
  // cached since the trim above).
  bool pending = false;
  bytes += slab::decay(UINT64_MAX, UINT64_MAX, &pending);
  return bytes;
}

void magslab_thread_idle(void) { cache::retire_current(); }

}  // extern "C"
