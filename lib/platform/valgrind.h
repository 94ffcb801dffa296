// platform/valgrind: Valgrind memcheck client requests (issue #15), so that
// memcheck knows the blocks magslab hands out — uninitialised reads, reads and
// writes past the requested size or after free, invalid and double frees, and
// leaks of magslab_* blocks are reported as they are for glibc's malloc.
//
// Compiled in where Debian's valgrind headers are found, for the check
// variants and Debug builds (and any build configured with MAGSLAB_VALGRIND=ON:
// CMakeLists.txt); elsewhere every function here is an empty inline and the
// API's test (MAGSLAB_UNDER_VALGRIND, lib/api/magslab.cc: vg::kCompiled first)
// folds away, leaving the fast path unchanged. Where compiled in, running()
// costs a load and a branch per call when not under memcheck.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#ifndef MAGSLAB_VALGRIND
#define MAGSLAB_VALGRIND 0
#endif

#if MAGSLAB_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

namespace magslab::vg {

inline constexpr bool kCompiled = MAGSLAB_VALGRIND != 0;

// An address of a block kept in magslab's own records (a slab's first object,
// a chunk's first page, a huge block's base, the metadata arena's cursor and
// end, which may point just past its region at the heap's next mapping), with
// its top bit set where the
// client requests are compiled in: memcheck's leak check takes any word of the
// process that points at a block for a reference to it, so as it is, a record
// would keep the block it describes "still reachable" when the program lost
// it. unhide() clears the bit, so a record still all zero reads 0. Elsewhere
// stored as it is (both fold away).
inline constexpr uintptr_t kHideBit = kCompiled ? uintptr_t{1} << 63 : 0;
inline constexpr uintptr_t hide(uintptr_t a) { return a | kHideBit; }
inline constexpr uintptr_t unhide(uintptr_t h) { return h & ~kHideBit; }

#if MAGSLAB_VALGRIND
// Under Valgrind's memcheck (not just Valgrind: under callgrind or helgrind
// the requests mean nothing and the work around them would only skew the
// profile). A request a tool does not handle returns 0; memcheck answers
// GET_VBITS on an addressable byte with 1.
inline bool ask_memcheck() {
  if (!RUNNING_ON_VALGRIND) return false;
  unsigned char byte = 0, vbits = 0;
  return VALGRIND_GET_VBITS(&byte, &vbits, 1) == 1;
}
// 0: not asked yet, 1: no, 2: under memcheck.
inline constinit std::atomic<int> g_running{0};
inline bool running() {
  // relaxed: every thread computes the same answer; a race only asks twice.
  int r = g_running.load(std::memory_order_relaxed);
  if (__builtin_expect(r == 0, 0)) {
    r = ask_memcheck() ? 2 : 1;
    g_running.store(r, std::memory_order_relaxed);
  }
  return r == 2;
}

// magslab's own work inside a call — writing free keys into freed objects,
// reading them back, clearing a popped object's first word, check mode's fill
// patterns and quarantine checks — touches memory memcheck sees as freed or
// undefined. An instance turns the calling thread's error reports off for
// that span (the requests nest).
struct ErrorsOff {
  ErrorsOff() { VALGRIND_DISABLE_ERROR_REPORTING; }
  ~ErrorsOff() { VALGRIND_ENABLE_ERROR_REPORTING; }
  ErrorsOff(const ErrorsOff&) = delete;
  ErrorsOff& operator=(const ErrorsOff&) = delete;
};

// Before magslab aborts on a misuse found with reports off: turn them back on
// (Valgrind keeps a per-thread depth, floored at 0; an entry point nests at
// most two deep), so that Valgrind's exit report is not flagged.
inline void errors_back_on() {
  if (!running()) return;
  for (int i = 0; i < 4; ++i) VALGRIND_ENABLE_ERROR_REPORTING;
}

// p now holds a block of n bytes for the program (zeroed: calloc's).
inline void malloc_like(void* p, size_t n, bool zeroed) {
  VALGRIND_MALLOCLIKE_BLOCK(p, n, 0, zeroed ? 1 : 0);
}
// The block at p goes back (memcheck reports an invalid free if it knows no
// block there, with where it was freed before).
inline void free_like(void* p) { VALGRIND_FREELIKE_BLOCK(p, 0); }
inline void no_access(void* p, size_t n) { VALGRIND_MAKE_MEM_NOACCESS(p, n); }
// n bytes from p the program may use as memcheck sees them, in no block it
// knows: their contents defined (calloc's zeroes) or not.
inline void usable_unknown_block(void* p, size_t n, bool defined) {
  if (defined)
    VALGRIND_MAKE_MEM_DEFINED(p, n);
  else
    VALGRIND_MAKE_MEM_UNDEFINED(p, n);
}
// How many of the n bytes from p the program may touch: up to the first byte
// memcheck holds unaddressable (the slack past a block's requested size).
// Call with errors off: the probe reports what it finds otherwise.
inline size_t addressable(const void* p, size_t n) {
  auto bad = static_cast<uintptr_t>(VALGRIND_CHECK_MEM_IS_ADDRESSABLE(p, n));
  return bad == 0 ? n : bad - reinterpret_cast<uintptr_t>(p);
}
#else
inline bool running() { return false; }
struct ErrorsOff {
  ErrorsOff() {}  // user-provided: an unused instance draws no warning
};
inline void errors_back_on() {}
inline void malloc_like(void*, size_t, bool) {}
inline void free_like(void*) {}
inline void no_access(void*, size_t) {}
inline void usable_unknown_block(void*, size_t, bool) {}
inline size_t addressable(const void*, size_t n) { return n; }
#endif

}  // namespace magslab::vg
