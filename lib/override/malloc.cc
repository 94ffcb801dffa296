// override/malloc: the C library's allocation functions, each a line or two over
// the magslab API, with glibc's semantics. Built only into
// libmagslab-override.so (LD_PRELOAD it, or link magslab::override).
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>

#include "api/entry.h"
#include "api/report.h"
#include "base/config.h"
#include "base/format.h"
#include "magslab/magslab.h"

using namespace magslab;

#define MAGSLAB_EXPORT extern "C" __attribute__((visibility("default")))

// The two hot ones run the release paths here, inline (api/entry.h): a call
// of malloc or free is then one jump (the caller's PLT) away from them, not two.
// The others pass their return address, the program's call, as the allocation
// site (check mode's leak report), a jump or not (api/entry.h).
#define MAGSLAB_SITE __builtin_return_address(0)

MAGSLAB_EXPORT void* malloc(size_t n) {
  if constexpr (api::kInlineEntries) return api::malloc_release(n);
  return api::malloc_from(n, MAGSLAB_SITE);
}
MAGSLAB_EXPORT void free(void* p) {
  if constexpr (api::kInlineEntries) return api::free_release(p);
  magslab_free(p);
}
MAGSLAB_EXPORT void* calloc(size_t n, size_t m) { return api::calloc_from(n, m, MAGSLAB_SITE); }
MAGSLAB_EXPORT void* realloc(void* p, size_t n) { return api::realloc_from(p, n, MAGSLAB_SITE); }
// glibc's obsolete free: out of its headers since 2.26, still exported as a
// compatibility symbol (cfree@GLIBC_2.2.5), which programs and libraries
// linked against an older glibc call. An unversioned definition matches their
// versioned reference; without one, cfree of a magslab block reached glibc's
// free and aborted ("free(): invalid pointer"; stop 52's bug hunt).
MAGSLAB_EXPORT void cfree(void* p) { magslab_free(p); }
MAGSLAB_EXPORT size_t malloc_usable_size(void* p) { return magslab_usable_size(p); }
MAGSLAB_EXPORT void free_sized(void* p, size_t n) { magslab_free_sized(p, n); }
MAGSLAB_EXPORT void free_aligned_sized(void* p, size_t /*align*/, size_t n) {
  magslab_free_sized(p, n);
}

// glibc's reallocarray is its realloc, called through the global scope: a
// program with a malloc of its own (glibc's manual: malloc, free, calloc and
// realloc are the set to replace) gets its own realloc there. Ours does the
// same when, at load, the global scope's realloc is not ours (the executable
// defines one, or a library preloaded before this one): magslab's realloc of
// the program's block aborted as an invalid free, and a block it made reached
// the program's free (stop 52's bug hunt). Not in the object form, which
// defines realloc in the executable itself.
namespace {
#if MAGSLAB_OVERRIDE_OBJECTS
// The object form is in the executable, whose constructors the loader runs
// after every shared library's: a library that registers fork handlers from
// its constructor had them registered before magslab's, which -z initfirst
// prevents for the shared override (docs/override.md, "fork"), and fork()
// hung as before stop 33 (stop 53's bug hunt: override.atfork_first.static).
// The executable's .preinit_array runs before them all: the set-up runs from
// there (in a -static program too, before its constructors).
[[gnu::used, gnu::section(".preinit_array")]] void (*g_preinit)(int, char**,
                                                                char**) = &api::at_load;

constexpr void* (*g_program_realloc)(void*, size_t) = nullptr;
#else
void* (*g_program_realloc)(void*, size_t) = nullptr;  // set once, at load

[[gnu::constructor]] void find_program_realloc() {
  void* (*ours)(void*, size_t) = &realloc;
  auto global = reinterpret_cast<void* (*)(void*, size_t)>(dlsym(RTLD_DEFAULT, "realloc"));
  if (global != nullptr && global != ours) g_program_realloc = global;
}
#endif
}  // namespace

MAGSLAB_EXPORT void* reallocarray(void* p, size_t n, size_t m) {
  size_t total;
  if (__builtin_mul_overflow(n, m, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (MAGSLAB_UNLIKELY(g_program_realloc != nullptr)) return g_program_realloc(p, total);
  return api::realloc_from(p, total, MAGSLAB_SITE);
}

MAGSLAB_EXPORT int posix_memalign(void** out, size_t align, size_t n) {
  return api::posix_memalign_from(out, align, n, MAGSLAB_SITE);
}

MAGSLAB_EXPORT void* aligned_alloc(size_t align, size_t n) {
  return api::aligned_from(align, n, MAGSLAB_SITE);
}

// glibc: an alignment that is not a power of two is rounded up to one; one
// above SIZE_MAX/2 + 1 is EINVAL.
MAGSLAB_EXPORT void* memalign(size_t align, size_t n) {
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (align == 0) align = 1;
  if (!is_pow2(align)) align = size_t{1} << (64 - __builtin_clzll(align));
  return api::aligned_from(align, n, MAGSLAB_SITE);
}

MAGSLAB_EXPORT void* valloc(size_t n) { return api::aligned_from(kPageSize, n, MAGSLAB_SITE); }

MAGSLAB_EXPORT void* pvalloc(size_t n) {
  if (n > SIZE_MAX - kPageSize) {
    errno = ENOMEM;
    return nullptr;
  }
  return api::aligned_from(kPageSize, n == 0 ? kPageSize : align_up(n, kPageSize), MAGSLAB_SITE);
}

// glibc returns 1 if memory was released.
MAGSLAB_EXPORT int malloc_trim(size_t /*pad*/) { return magslab_trim_all() != 0 ? 1 : 0; }

MAGSLAB_EXPORT void malloc_stats(void) { report::print_stats(); }

// glibc's XML (malloc/malloc.c, __malloc_info), one <heap> for all of magslab:
// <sizes> lists the free objects cached per size class (from = the smallest
// request the class serves, to = its size, count and total of cached objects),
// "rest" totals them, "mmap" the huge blocks in their own mappings, "current"
// system memory is what is mapped for blocks and "max" the peak in use (magslab
// does not track the peak of its mappings). options must be 0: otherwise glibc
// 2.36 returns EINVAL (not -1); so do we, and set errno to it as well.
// Each line is formatted on the stack and written with fputs.
MAGSLAB_EXPORT int malloc_info(int options, FILE* fp) {
  if (options != 0) {
    errno = EINVAL;
    return EINVAL;
  }
  report::StatsSnapshot snap;  // not on the stack: api/report.h
  if (snap.get() == nullptr) {
    errno = ENOMEM;
    return ENOMEM;
  }
  const struct magslab_stats& st = *snap.get();
  size_t cached_count = 0, cached_total = 0;
  for (size_t c = 0; c < st.class_count; ++c) {
    cached_count += st.classes[c].cached_objects;
    cached_total += st.classes[c].cached_objects * st.classes[c].object_size;
  }
  LineBuf l;
  auto emit = [&]() {
    l.end();
    fwrite(l.data(), 1, l.size(), fp);
    l.clear();
  };
  auto totals = [&](const char* indent) {
    l.str(indent).str("<total type=\"fast\" count=\"0\" size=\"0\"/>");
    emit();
    l.str(indent).str("<total type=\"rest\" count=\"").num(cached_count);
    l.str("\" size=\"").num(cached_total).str("\"/>");
    emit();
  };
  auto system = [&](const char* indent) {
    l.str(indent).str("<system type=\"current\" size=\"").num(st.mapped_bytes).str("\"/>");
    emit();
    l.str(indent).str("<system type=\"max\" size=\"").num(st.peak_in_use_bytes).str("\"/>");
    emit();
    l.str(indent).str("<aspace type=\"total\" size=\"").num(st.mapped_bytes).str("\"/>");
    emit();
    l.str(indent).str("<aspace type=\"mprotect\" size=\"").num(st.mapped_bytes).str("\"/>");
    emit();
  };
  l.str("<malloc version=\"1\">");
  emit();
  l.str("<heap nr=\"0\">");
  emit();
  l.str("<sizes>");
  emit();
  size_t from = 1;
  for (size_t c = 0; c < st.class_count; ++c) {
    const magslab_class_stats& cs = st.classes[c];
    if (cs.cached_objects != 0) {
      l.str("  <size from=\"").num(from).str("\" to=\"").num(cs.object_size);
      l.str("\" total=\"").num(cs.cached_objects * cs.object_size);
      l.str("\" count=\"").num(cs.cached_objects).str("\"/>");
      emit();
    }
    from = cs.object_size + 1;
  }
  l.str("</sizes>");
  emit();
  totals("");
  system("");
  l.str("</heap>");
  emit();
  totals("");
  l.str("<total type=\"mmap\" count=\"").num(st.huge_live_blocks);
  l.str("\" size=\"").num(st.huge_live_bytes).str("\"/>");
  emit();
  system("");
  l.str("</malloc>");
  emit();
  return 0;
}

MAGSLAB_EXPORT struct mallinfo2 mallinfo2(void) {
  struct mallinfo2 mi;
  memset(&mi, 0, sizeof mi);
  report::StatsSnapshot snap;            // not on the stack: api/report.h
  if (snap.get() == nullptr) return mi;  // zeros: the OS refused the snapshot's memory
  const struct magslab_stats& st = *snap.get();
  mi.arena = st.mapped_bytes;      // address space mapped for blocks
  mi.ordblks = st.class_count;     // (number of size classes)
  mi.hblks = st.huge_live_blocks;  // blocks in mappings of their own
  mi.uordblks = st.live_bytes;     // bytes in blocks handed out
  mi.fordblks = st.mapped_bytes > st.live_bytes ? st.mapped_bytes - st.live_bytes : 0;
  mi.keepcost = st.cached_bytes;  // free bytes magslab_trim() could give back
  return mi;
}

// The older form (int fields; deprecated in glibc, still called): the same
// figures, clamped to INT_MAX.
MAGSLAB_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  auto clamp = [](size_t v) { return v > INT_MAX ? INT_MAX : static_cast<int>(v); };
  struct mallinfo mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = clamp(m2.arena);
  mi.ordblks = clamp(m2.ordblks);
  mi.hblks = clamp(m2.hblks);
  mi.uordblks = clamp(m2.uordblks);
  mi.fordblks = clamp(m2.fordblks);
  mi.keepcost = clamp(m2.keepcost);
  return mi;
}

// glibc's own names for the malloc family (exported, undeclared), which some
// programs and hook libraries call: without these, their blocks were glibc's
// and free() of one aborted as an invalid free.
MAGSLAB_EXPORT void* __libc_malloc(size_t n) { return magslab_malloc(n); }
MAGSLAB_EXPORT void __libc_free(void* p) { magslab_free(p); }
MAGSLAB_EXPORT void* __libc_calloc(size_t n, size_t m) { return magslab_calloc(n, m); }
MAGSLAB_EXPORT void* __libc_realloc(void* p, size_t n) { return magslab_realloc(p, n); }
MAGSLAB_EXPORT void* __libc_memalign(size_t align, size_t n) { return memalign(align, n); }
MAGSLAB_EXPORT void* __libc_valloc(size_t n) { return valloc(n); }
MAGSLAB_EXPORT void* __libc_pvalloc(size_t n) { return pvalloc(n); }

// Accepted and ignored: magslab has no glibc-style knobs. Returns what glibc
// 2.36 returns: 1, also for an unknown parameter (man mallopt, BUGS), and 0 for
// an M_MXFAST value outside glibc's range [0, 80 * sizeof(size_t) / 4].
MAGSLAB_EXPORT int mallopt(int param, int value) {
  if (param == M_MXFAST && (value < 0 || static_cast<size_t>(value) > 80 * sizeof(size_t) / 4))
    return 0;
  return 1;
}
