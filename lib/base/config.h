// base/config: compile-time constants shared by every layer, checked by static_assert.
#pragma once
#include <cstddef>
#include <cstdint>

namespace magslab {

inline constexpr size_t kPageShift = 12;
inline constexpr size_t kPageSize = size_t{1} << kPageShift;
// Chunks are 4 MiB, aligned to 4 MiB: big enough that mapping one is rare,
// small enough that a mostly-empty chunk is cheap to give back.
inline constexpr size_t kChunkShift = 22;
inline constexpr size_t kChunkSize = size_t{1} << kChunkShift;
inline constexpr size_t kPagesPerChunk = kChunkSize / kPageSize;
// x86-64 user space with 4-level paging: addresses below 2^47.
inline constexpr size_t kAddressBits = 47;
// Largest class whose slabs hold many objects ("small"). Above it, up to
// kMaxClassSize, each slab holds one object ("large classes"): a large block
// still travels through magazines and the depot, so a steady malloc/free of
// one size takes no lock and no system call (docs/design.md, "Large classes").
inline constexpr size_t kMaxSmallSize = 65536;
// Above this, a block gets a mapping of its own ("huge").
inline constexpr size_t kHugeThreshold = size_t{1} << 20;
// Largest size class. Blocks above it, and blocks aligned beyond a page, are
// page runs (large/) or huge mappings.
inline constexpr size_t kMaxClassSize = kHugeThreshold;
// Requests above this fail with ENOMEM before anything is mapped.
inline constexpr size_t kMaxRequest = size_t{1} << 44;
// Largest slab object count; sizes the per-slab free bitmap (128 bytes).
inline constexpr size_t kMaxSlabObjects = 1024;
inline constexpr size_t kCacheLine = 64;

// Exact requested-byte statistics for slab-class blocks (CMake option
// MAGSLAB_EXACT_REQUESTED, off by default): each slab keeps the size asked for
// each of its objects in a side array (lib/small/requested.h). Off, malloc and free
// do not touch it and magslab_stats counts small blocks at their usable size.
#ifndef MAGSLAB_EXACT_REQUESTED
#define MAGSLAB_EXACT_REQUESTED 0
#endif
inline constexpr bool kExactRequested = MAGSLAB_EXACT_REQUESTED != 0;

static_assert((kChunkSize & (kChunkSize - 1)) == 0, "chunk size must be a power of two");
static_assert(kPagesPerChunk == 1024, "page map arrays assume 1024 pages per chunk");
static_assert(kHugeThreshold < kChunkSize / 2, "large runs must fit in a chunk");
static_assert(kMaxSmallSize < kMaxClassSize && kMaxClassSize <= kHugeThreshold,
              "class ranges must be ordered");

// Invariant checks (platform/check.h, MAGSLAB_CHECK): compiled in by the debug
// preset (CMAKE_BUILD_TYPE=Debug defines MAGSLAB_DEBUG_CHECKS=1), out elsewhere.
#ifndef MAGSLAB_DEBUG_CHECKS
#define MAGSLAB_DEBUG_CHECKS 0
#endif
inline constexpr bool kDebugChecks = MAGSLAB_DEBUG_CHECKS != 0;

// Check mode (issue #15, docs/check.md): the same sources with heap-misuse
// checks compiled in — canaries, quarantine, fill patterns, per-object state
// (lib/api/check.cc). Defined to 1 only for the check variants
// (libmagslab-check.so, libmagslab-check-api.so); every other build leaves
// each `if constexpr (kCheckMode)` out, so its fast path is unchanged.
#ifndef MAGSLAB_CHECK_MODE
#define MAGSLAB_CHECK_MODE 0
#endif
inline constexpr bool kCheckMode = MAGSLAB_CHECK_MODE != 0;

// The TLS model of the thread-cache pointer (small/thread_cache.h). initial-exec
// is a fixed offset from %fs, no call, but a shared library using it can be
// dlopen()ed only while glibc's static TLS surplus has room. libmagslab.so is
// compiled with MAGSLAB_TLS_DYNAMIC=1 and -mtls-dialect=gnu2 (CMakeLists.txt):
// the default model through TLS descriptors, an indirect call that returns the
// offset when the block is static TLS and finds it in the thread's dynamic TLS
// otherwise; dlopen never fails for want of static TLS. The override
// (preloaded or linked) and libmagslab.a keep initial-exec (docs/design.md,
// "TLS model").
#ifndef MAGSLAB_TLS_DYNAMIC
#define MAGSLAB_TLS_DYNAMIC 0
#endif
#if MAGSLAB_TLS_DYNAMIC
#define MAGSLAB_TLS_MODEL
#else
#define MAGSLAB_TLS_MODEL __attribute__((tls_model("initial-exec")))
#endif

// 1 in ThreadSanitizer builds, which some lock-free code tells what it cannot
// see (ds/tagged_stack.h, chunks/decay_event.h). GCC defines
// __SANITIZE_THREAD__; clang only answers __has_feature(thread_sanitizer).
#if defined(__SANITIZE_THREAD__)
#define MAGSLAB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MAGSLAB_TSAN 1
#endif
#endif
#ifndef MAGSLAB_TSAN
#define MAGSLAB_TSAN 0
#endif

#define MAGSLAB_LIKELY(x) __builtin_expect(!!(x), 1)
#define MAGSLAB_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MAGSLAB_NOINLINE [[gnu::noinline]]
#define MAGSLAB_COLD [[gnu::noinline, gnu::cold]]
// Out of line and opaque to interprocedural analysis (GCC's noipa; clang's
// noinline already is enough): for a misuse report reached by a jump from a
// fast path, which GCC would otherwise find never returns and call from a
// stack frame it then sets up on the fast path too.
#if defined(__clang__)
#define MAGSLAB_OPAQUE [[gnu::noinline]]
#else
#define MAGSLAB_OPAQUE [[gnu::noipa]]
#endif

inline constexpr size_t align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }
inline constexpr bool is_pow2(size_t n) { return n != 0 && (n & (n - 1)) == 0; }

}  // namespace magslab
