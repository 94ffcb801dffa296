// fastpath <allocator> <mode> <iterations>
//
// Single-thread fast-path microbenchmark, run under callgrind by
// `bench/run --callgrind` (docs/benchmarks.md, "Instructions per pair"):
//   pairs: iterations x { p = malloc(16); escape(p); free(p); }
//   batch: iterations/1000 rounds of { 1000 x malloc(16) into an array;
//                                       1000 x free in the same order }
//   pairs-touch, batch-touch: the same, but the program writes the first
//          8 bytes of every block (a store of the loop index) before freeing it,
//          as almost every real program does. (magslab keeps a key in the first
//          word of free objects; a block freed untouched still holds it.)
//   batch-mixed: like batch, but block i of every round has size
//          g_mixed_sizes[i], a fixed sequence of 1000 sizes in 8..512 B
//          (xorshift64 from a constant seed, computed before the warm-up, so
//          the RNG runs outside the measured function; the loop loads the size
//          instead of using a constant).
//   pairs-rotate: iterations x { p = malloc(kRotate[i % 4]); escape(p);
//          free(p); } — pairs like `pairs`, but four sizes (16, 48, 96, 160 B:
//          four classes in every allocator here) in turn, so a malloc never
//          takes the block the free just before it gave back. Two instructions
//          a pair more than `pairs` on magslab (the size's load and index);
//          the wall time shows what the dependence of a malloc on the free
//          just before it costs
//          (docs/benchmarks.md, "What a free-then-malloc of one size waits for").
//   new-delete: iterations x { p = ::operator new(16); escape(p);
//          ::operator delete(p, 16); } — C++'s allocation path (sized delete,
//          as g++ emits it for a complete type). Preload build only.
// A warm-up (10,000 pairs, then 10 batches, of the same flavour; batch-mixed:
// 10,000 pairs of 16 B, then 10 mixed batches) runs first so first touch and
// initialisation are excluded. The measured loop is in its own
// noinline extern "C" function, measure_<mode> ('-' -> '_'), for
// `callgrind --toggle-collect`; the warm-up runs in separate warm_* functions.
// Also prints wall-clock ns per malloc+free pair (informational only).
//
// Two builds of this file (bench/CMakeLists.txt):
//   fastpath         calls malloc/free and links nothing but libc: the allocator
//                    is chosen with LD_PRELOAD, like bench/micro and bench/macro,
//                    and checked at start (bench/active_allocator.h; exit 2 if
//                    <allocator> is not the active malloc). Every call goes
//                    through the PLT into the preloaded library's malloc/free.
//   fastpath-direct  (FASTPATH_MAGSLAB_DIRECT) calls magslab_malloc/magslab_free
//                    of libmagslab.a linked statically: no PLT, no override
//                    wrapper — magslab's own fast path, the figure the
//                    instruction-count history before 2026-12-01 was taken with.
//                    <allocator> must be "magslab".
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

#ifdef FASTPATH_MAGSLAB_DIRECT
#include <magslab/magslab.h>
#else
#include "active_allocator.h"
#endif

namespace {

constexpr size_t kSize = 16;
constexpr size_t kBatch = 1000;
constexpr size_t kMixedMin = 8, kMixedMax = 512;
constexpr size_t kRotate[4] = {16, 48, 96, 160};

// batch-mixed's sizes, filled by fill_mixed_sizes() before anything is measured.
size_t g_mixed_sizes[kBatch];

void fill_mixed_sizes() {
  uint64_t x = 0x9E3779B97F4A7C15ull;  // xorshift64 (Marsaglia), fixed seed
  for (size_t& n : g_mixed_sizes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    n = kMixedMin + static_cast<size_t>(x % (kMixedMax - kMixedMin + 1));
  }
}

#ifdef FASTPATH_MAGSLAB_DIRECT
inline void* alloc(size_t n) { return magslab_malloc(n); }
inline void dealloc(void* p) { magslab_free(p); }
#else
inline void* alloc(size_t n) { return std::malloc(n); }
inline void dealloc(void* p) { std::free(p); }
#endif

inline void escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

template <bool Touch>
inline void touch(void* p, size_t i) {
  if (Touch) *static_cast<volatile size_t*>(p) = i;
}

template <bool Touch>
inline void pairs_body(size_t n) {
  for (size_t i = 0; i < n; ++i) {
    void* p = alloc(kSize);
    escape(p);
    touch<Touch>(p, i);
    dealloc(p);
  }
}

template <bool Touch>
inline void pairs_rotate_body(size_t n) {
  static_assert(!Touch, "pairs-rotate has no touch flavour");
  for (size_t i = 0; i < n; ++i) {
    void* p = alloc(kRotate[i % 4]);
    escape(p);
    dealloc(p);
  }
}

template <bool Touch>
inline void batch_body(size_t rounds) {
  void* slots[kBatch];
  for (size_t r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < kBatch; ++i) {
      slots[i] = alloc(kSize);
      escape(slots[i]);
      touch<Touch>(slots[i], i);
    }
    for (size_t i = 0; i < kBatch; ++i) dealloc(slots[i]);
  }
}

// Same shape as batch_body<false>, sizes from g_mixed_sizes.
template <bool Touch>
inline void batch_mixed_body(size_t rounds) {
  static_assert(!Touch, "batch-mixed has no touch flavour");
  void* slots[kBatch];
  for (size_t r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < kBatch; ++i) {
      slots[i] = alloc(g_mixed_sizes[i]);
      escape(slots[i]);
    }
    for (size_t i = 0; i < kBatch; ++i) dealloc(slots[i]);
  }
}

#ifndef FASTPATH_MAGSLAB_DIRECT
template <bool Touch>
inline void new_delete_body(size_t n) {
  static_assert(!Touch, "new-delete has no touch flavour");
  for (size_t i = 0; i < n; ++i) {
    void* p = ::operator new(kSize);
    escape(p);
    ::operator delete(p, kSize);
  }
}
#endif

}  // namespace

#define FASTPATH_DEFINE(FN, BODY, TOUCH)                   \
  extern "C" __attribute__((noinline)) void FN(size_t n) { \
    BODY<TOUCH>(n);                                        \
    asm volatile("" ::: "memory");                         \
  }
FASTPATH_DEFINE(measure_pairs, pairs_body, false)
FASTPATH_DEFINE(measure_batch, batch_body, false)
FASTPATH_DEFINE(measure_pairs_touch, pairs_body, true)
FASTPATH_DEFINE(measure_batch_touch, batch_body, true)
FASTPATH_DEFINE(measure_batch_mixed, batch_mixed_body, false)
FASTPATH_DEFINE(measure_pairs_rotate, pairs_rotate_body, false)
FASTPATH_DEFINE(warm_pairs, pairs_body, false)
FASTPATH_DEFINE(warm_batch, batch_body, false)
FASTPATH_DEFINE(warm_pairs_touch, pairs_body, true)
FASTPATH_DEFINE(warm_batch_touch, batch_body, true)
FASTPATH_DEFINE(warm_batch_mixed, batch_mixed_body, false)
FASTPATH_DEFINE(warm_pairs_rotate, pairs_rotate_body, false)
#ifndef FASTPATH_MAGSLAB_DIRECT
FASTPATH_DEFINE(measure_new_delete, new_delete_body, false)
FASTPATH_DEFINE(warm_new_delete, new_delete_body, false)
#endif

namespace {

using Fn = void (*)(size_t);
struct Mode {
  const char* name;
  Fn measure;
  Fn warm_pairs, warm_batch;  // the warm-up: 10,000 pairs, then 10 batches
  bool batch;                 // iterations count pairs in rounds of kBatch
};
const Mode kModes[] = {
    {"pairs", measure_pairs, warm_pairs, warm_batch, false},
    {"batch", measure_batch, warm_pairs, warm_batch, true},
    {"pairs-touch", measure_pairs_touch, warm_pairs_touch, warm_batch_touch, false},
    {"batch-touch", measure_batch_touch, warm_pairs_touch, warm_batch_touch, true},
    {"batch-mixed", measure_batch_mixed, warm_pairs, warm_batch_mixed, true},
    {"pairs-rotate", measure_pairs_rotate, warm_pairs_rotate, warm_batch, false},
#ifndef FASTPATH_MAGSLAB_DIRECT
    {"new-delete", measure_new_delete, warm_new_delete, warm_new_delete, false},
#endif
};

int usage() {
  std::fprintf(stderr,
#ifdef FASTPATH_MAGSLAB_DIRECT
               "usage: fastpath-direct magslab"
#else
               "usage: LD_PRELOAD=<library> fastpath "
               "<magslab|mimalloc|tbb|jemalloc|tcmalloc|glibc|any>"
#endif
               " <pairs|batch|pairs-touch|batch-touch|batch-mixed|pairs-rotate"
#ifndef FASTPATH_MAGSLAB_DIRECT
               "|new-delete"
#endif
               "> <iterations>\n"
               "  batch iterations are malloc+free pairs; must be a multiple of %zu\n",
               kBatch);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return usage();
  const std::string name = argv[1], mode = argv[2];
#ifdef FASTPATH_MAGSLAB_DIRECT
  if (name != "magslab") return usage();
#else
  bench::require_allocator(name);
#endif
  char* end = nullptr;
  const unsigned long long iters = std::strtoull(argv[3], &end, 10);
  if (*end != '\0' || iters == 0) return usage();
  const Mode* m = nullptr;
  for (const Mode& c : kModes)
    if (mode == c.name) m = &c;
  if (m == nullptr) return usage();
  if (m->batch && iters % kBatch != 0) return usage();
  fill_mixed_sizes();

  // One block of the measured size stays live for the whole run, as some
  // always does in a real program. Without it every free in `pairs` and
  // `new-delete` freed the only live block of its page or slab: mimalloc then
  // took its empty-page path on each free, jemalloc's sized delete a longer
  // one (mimalloc 113 instructions a pair instead of 51, jemalloc's
  // new+delete 143 instead of 73; magslab's count does not change) — a
  // benchmark audit, stop 33.
  void* resident = alloc(kSize);
  escape(resident);

  // Warm-up: both shapes (same flavour), outside the measured function.
  m->warm_pairs(10000);
  m->warm_batch(10);

  const auto t0 = std::chrono::steady_clock::now();
  m->measure(m->batch ? iters / kBatch : iters);
  const auto t1 = std::chrono::steady_clock::now();
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  std::printf("%s %s %llu pairs: %.2f ns/pair (wall)\n", name.c_str(), mode.c_str(), iters,
              ns / static_cast<double>(iters));
  dealloc(resident);
  return 0;
}
