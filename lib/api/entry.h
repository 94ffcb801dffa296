// api/entry: the release malloc, free, sized free and operator new, inline.
// magslab_malloc and magslab_free (api/magslab.cc) are these; so are the
// override's malloc, free, operator new and the two hot operator deletes
// (lib/override/), which inline them instead of jumping to the magslab_*
// entry points (one instruction less per call); check mode calls them through
// raw::alloc and raw::free (api/check.h). Their slow halves are out of line,
// in api/magslab.cc.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "base/misuse.h"
#include "chunks/chunk_map.h"
#include "platform/valgrind.h"
#include "small/requested.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "small/thread_cache.h"

namespace magslab::api {

// The entry points may run these inline: not in check mode, nor in a build
// that carries Valgrind's client requests (their entry points wrap them).
inline constexpr bool kInlineEntries = !kCheckMode && !vg::kCompiled;
// Nor, for operator new, in exact mode (malloc_or_release records no size).
inline constexpr bool kInlineNew = kInlineEntries && !kExactRequested;

// magslab_malloc, magslab_aligned_alloc, magslab_calloc, magslab_realloc and
// magslab_posix_memalign for a caller that names the allocation site itself
// (check mode's leak report): the override's replacements pass their own
// return address (lib/override/), which is the program's call whether or not
// the compiler turns theirs into a jump.
void* malloc_from(size_t n, void* site);
void* aligned_from(size_t alignment, size_t size, void* site);
void* calloc_from(size_t count, size_t size, void* site);
void* realloc_from(void* p, size_t n, void* site);
int posix_memalign_from(void** out, size_t alignment, size_t size, void* site);

// The library's set-up at load (api/magslab.cc): the options, the fork
// handlers, the hooks. Its constructor calls it, and so does the override's
// object form from the executable's .preinit_array (lib/override/malloc.cc);
// the first call does it, the other nothing. Arguments as the loader passes
// them to both.
void at_load(int argc, char** argv, char** envp);

// While an instance lives, the blocks this thread allocates are kept from
// memcheck until they are freed or the outermost instance ends (then it is
// told of those still held): the override's runtime lookups (dlsym, dlopen),
// which fail in a C program and leave glibc's messages allocated and freed in
// magslab's heap. memcheck keeps what it knows of a freed block by address and
// magslab hands the address out again at once, so told of them, memcheck named
// the program's first blocks of those classes with the messages' sizes and
// stacks. Nothing unless running under memcheck (vg::running()).
class HiddenFromMemcheck {
 public:
  HiddenFromMemcheck();
  ~HiddenFromMemcheck();
  HiddenFromMemcheck(const HiddenFromMemcheck&) = delete;
  HiddenFromMemcheck& operator=(const HiddenFromMemcheck&) = delete;
};

// A request of n bytes above the lookup table (kLookupMax): a larger class, a
// large block, or nullptr with errno = ENOMEM.
void* malloc_big(size_t n);
// Exact mode (requested.h): record n as the size asked for p, a slab object
// just handed out (nullptr: nothing to record). Returns p.
void* note_alloc(void* p, size_t n);
// p is not an object start of a slab: in none (w == 0: large, NULL or
// foreign), or an interior or misaligned pointer into the slab of page word
// w (reported as `kind`, and the process ends).
void free_not_valid(void* p, uint64_t w, Misuse kind);
// free_sized's free_not_valid (kInvalidFree): a large or huge block is freed
// only when n is at most its usable size, else reported as a wrong size.
void free_sized_not_valid(void* p, uint64_t w, size_t n);

// A sized free of p, a valid object of a slab whose page word is w, naming
// more bytes than its class holds: reported, and the process ends.
void wrong_sized_free(void* p, uint64_t w);
// malloc_or_release's slow halves: a block of class cls (n bytes asked) from
// the slow path, or of n bytes above the lookup table; fail(n) if none.
void* small_slow_or(unsigned cls, size_t n, void* (*fail)(size_t));
void* big_or(size_t n, void* (*fail)(size_t));

// Exact mode: p's entry in its slab's side array.
inline uint32_t& requested_slot(void* p) {
  return requested::slot(pagemap::lookup_slab(reinterpret_cast<uintptr_t>(p)), p);
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

[[gnu::always_inline]] inline void* malloc_release(size_t n) {
  if (MAGSLAB_LIKELY(n <= kLookupMax)) {
    size_t i = (n + 7) >> 3;
    // The slow path looks the class up again from i (still in its register)
    // rather than keep the Pair's offset alive across the count's load.
    void* p = cache::alloc_at(cache::kSmallPairOffsets[i],
                              [i](unsigned) { return cache::alloc_slow(kSmallLookup[i]); });
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

// free_sized and operator delete(p, n): as free_release, and n must fit p's
// class, or a large or huge block's usable size.
[[gnu::always_inline]] inline void free_sized_release(void* p, size_t n) {
  auto a = reinterpret_cast<uintptr_t>(p);
  uint64_t w = pagemap::lookup_word(a);
  if (MAGSLAB_UNLIKELY(!valid_word(w, a))) return free_sized_not_valid(p, w, n);
  // The class size from the offset check's line, not kClasses (another line).
  if (MAGSLAB_UNLIKELY(n > word_size(w))) return wrong_sized_free(p, w);
  free_small(p, w);
}

// operator new, where kInlineNew: malloc_release, except that a failure ends in fail(n) (the
// new_handler loop, which returns a block or does not return) instead of
// nullptr. Both failures are out of line, so the fast path keeps no frame.
[[gnu::always_inline]] inline void* malloc_or_release(size_t n, void* (*fail)(size_t)) {
  if (MAGSLAB_LIKELY(n <= kLookupMax)) {
    size_t i = (n + 7) >> 3;  // the class again from i on a miss, as in malloc_release
    return cache::alloc_at(cache::kSmallPairOffsets[i],
                           [&](unsigned) { return small_slow_or(kSmallLookup[i], n, fail); });
  }
  return big_or(n, fail);
}

}  // namespace magslab::api
