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
// A warm-up (10,000 pairs, then 10 batches, of the same flavour) runs first so
// first touch and initialisation are excluded. The measured loop is in its own
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
#include <cstdio>
#include <cstdlib>
#include <string>

#ifdef FASTPATH_MAGSLAB_DIRECT
#include <magslab/magslab.h>
#else
#include "active_allocator.h"
#endif

namespace {

constexpr size_t kSize = 16;
constexpr size_t kBatch = 1000;

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
FASTPATH_DEFINE(warm_pairs, pairs_body, false)
FASTPATH_DEFINE(warm_batch, batch_body, false)
FASTPATH_DEFINE(warm_pairs_touch, pairs_body, true)
FASTPATH_DEFINE(warm_batch_touch, batch_body, true)

namespace {

using Fn = void (*)(size_t);
// Index: 0 pairs, 1 batch, 2 pairs-touch, 3 batch-touch.
const char* const kModes[4] = {"pairs", "batch", "pairs-touch", "batch-touch"};
const Fn kMeasure[4] = {measure_pairs, measure_batch, measure_pairs_touch, measure_batch_touch};
const Fn kWarm[4] = {warm_pairs, warm_batch, warm_pairs_touch, warm_batch_touch};

int usage() {
  std::fprintf(stderr,
#ifdef FASTPATH_MAGSLAB_DIRECT
               "usage: fastpath-direct magslab"
#else
               "usage: LD_PRELOAD=<library> fastpath "
               "<magslab|mimalloc|tbb|jemalloc|tcmalloc|glibc|any>"
#endif
               " <pairs|batch|pairs-touch|batch-touch> <iterations>\n"
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
  int mi = -1;
  for (int i = 0; i < 4; ++i)
    if (mode == kModes[i]) mi = i;
  if (mi < 0) return usage();
  const bool batch = (mi % 2) == 1;
  if (batch && iters % kBatch != 0) return usage();

  // Warm-up: both shapes (same touch flavour), outside the measured function.
  const int t = mi / 2 * 2;
  kWarm[t](10000);
  kWarm[t + 1](10);

  const auto t0 = std::chrono::steady_clock::now();
  kMeasure[mi](batch ? iters / kBatch : iters);
  const auto t1 = std::chrono::steady_clock::now();
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  std::printf("%s %s %llu pairs: %.2f ns/pair (wall)\n", name.c_str(), mode.c_str(), iters,
              ns / static_cast<double>(iters));
  return 0;
}
