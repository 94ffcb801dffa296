// fastpath <allocator> <mode> <iterations>
//
// Single-thread fast-path microbenchmark, meant to be run under callgrind:
//   pairs: iterations x { p = malloc(16); escape(p); free(p); }
//   batch: iterations/1000 rounds of { 1000 x malloc(16) into an array;
//                                       1000 x free in the same order }
//   pairs-touch, batch-touch: the same, but the program writes the first
//          8 bytes of every block (a store of the loop index) before freeing it,
//          as almost every real program does. (magslab keeps a key in the first
//          word of free objects; a block freed untouched still holds it.)
// A warm-up (10,000 pairs, then 10 batches, of the same flavour) runs first so
// first touch and initialisation are excluded. The measured loop is in its own
// noinline extern "C" function, measure_<mode>_<allocator> ('-' -> '_'), for
// `callgrind --toggle-collect`; the warm-up runs in separate warm_* functions.
// Also prints wall-clock ns per malloc+free pair (informational only).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "allocators.h"

#ifndef BENCH_SELF_SUFFIX
#define BENCH_SELF_SUFFIX ""
#endif

namespace {

constexpr size_t kSize = 16;
constexpr size_t kBatch = 1000;

inline void escape(void *p) { asm volatile("" : : "r"(p) : "memory"); }

template <bool Touch>
inline void touch(void *p, size_t i) {
  if (Touch) *static_cast<volatile size_t *>(p) = i;
}

template <class A, bool Touch>
inline void pairs_body(size_t n) {
  for (size_t i = 0; i < n; ++i) {
    void *p = A::alloc(kSize);
    escape(p);
    touch<Touch>(p, i);
    A::dealloc(p);
  }
}

template <class A, bool Touch>
inline void batch_body(size_t rounds) {
  void *slots[kBatch];
  for (size_t r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < kBatch; ++i) {
      slots[i] = A::alloc(kSize);
      escape(slots[i]);
      touch<Touch>(slots[i], i);
    }
    for (size_t i = 0; i < kBatch; ++i) A::dealloc(slots[i]);
  }
}

}  // namespace

#define BENCH_DEFINE_ONE(FN, BODY, TYPE, TOUCH)                 \
  extern "C" __attribute__((noinline)) void FN(size_t n) {      \
    BODY<bench::TYPE, TOUCH>(n);                                \
    asm volatile("" ::: "memory");                              \
  }
#define BENCH_DEFINE_MEASURE(NAME, TYPE)                                       \
  BENCH_DEFINE_ONE(measure_pairs_##NAME, pairs_body, TYPE, false)              \
  BENCH_DEFINE_ONE(measure_batch_##NAME, batch_body, TYPE, false)              \
  BENCH_DEFINE_ONE(measure_pairs_touch_##NAME, pairs_body, TYPE, true)         \
  BENCH_DEFINE_ONE(measure_batch_touch_##NAME, batch_body, TYPE, true)         \
  BENCH_DEFINE_ONE(warm_pairs_##NAME, pairs_body, TYPE, false)                 \
  BENCH_DEFINE_ONE(warm_batch_##NAME, batch_body, TYPE, false)                 \
  BENCH_DEFINE_ONE(warm_pairs_touch_##NAME, pairs_body, TYPE, true)            \
  BENCH_DEFINE_ONE(warm_batch_touch_##NAME, batch_body, TYPE, true)
#define BENCH_ENTRY(STR, NAME)                                                    \
  {STR,                                                                           \
   {measure_pairs_##NAME, measure_batch_##NAME, measure_pairs_touch_##NAME,       \
    measure_batch_touch_##NAME},                                                  \
   {warm_pairs_##NAME, warm_batch_##NAME, warm_pairs_touch_##NAME,                \
    warm_batch_touch_##NAME}}

#ifdef BENCH_WITH_MAGSLAB
BENCH_DEFINE_MEASURE(magslab, Magslab)
#endif
#ifdef BENCH_WITH_TBB
BENCH_DEFINE_MEASURE(tbb, Tbb)
#endif
#ifdef BENCH_WITH_GLIBC
BENCH_DEFINE_MEASURE(glibc, Glibc)
#endif
#ifdef BENCH_WITH_MIMALLOC
BENCH_DEFINE_MEASURE(mimalloc, Mimalloc)
#endif
#ifdef BENCH_WITH_JEMALLOC
BENCH_DEFINE_MEASURE(jemalloc, Jemalloc)
BENCH_DEFINE_MEASURE(jemalloc_std, JemallocStd)
#endif

namespace {

using Fn = void (*)(size_t);
// Index: 0 pairs, 1 batch, 2 pairs-touch, 3 batch-touch.
struct Entry {
  const char *name;
  Fn measure[4];
  Fn warm[4];
};
const char *const kModes[4] = {"pairs", "batch", "pairs-touch", "batch-touch"};

const Entry kEntries[] = {
#ifdef BENCH_WITH_MAGSLAB
    BENCH_ENTRY("magslab", magslab),
#endif
#ifdef BENCH_WITH_TBB
    BENCH_ENTRY("tbb", tbb),
#endif
#ifdef BENCH_WITH_GLIBC
    BENCH_ENTRY("glibc", glibc),
#endif
#ifdef BENCH_WITH_MIMALLOC
    BENCH_ENTRY("mimalloc", mimalloc),
#endif
#ifdef BENCH_WITH_JEMALLOC
    BENCH_ENTRY("jemalloc", jemalloc),
    BENCH_ENTRY("jemalloc-std", jemalloc_std),
#endif
};

int usage() {
  std::fprintf(stderr,
               "usage: fastpath <magslab|mimalloc|jemalloc|jemalloc-std|tbb|glibc>"
               " <pairs|batch|pairs-touch|batch-touch> <iterations>\n"
               "  batch iterations are malloc+free pairs; must be a multiple of %zu\n",
               kBatch);
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 4) return usage();
  std::string name = argv[1], mode = argv[2];
  bench::forward_if_needed(BENCH_SELF_SUFFIX, "fastpath", name, argv);
  char *end = nullptr;
  unsigned long long iters = std::strtoull(argv[3], &end, 10);
  if (*end != '\0' || iters == 0) return usage();
  int mi = -1;
  for (int i = 0; i < 4; ++i)
    if (mode == kModes[i]) mi = i;
  if (mi < 0) return usage();
  const bool batch = (mi % 2) == 1;
  if (batch && iters % kBatch != 0) return usage();

  const Entry *e = nullptr;
  for (const Entry &x : kEntries)
    if (name == x.name) e = &x;
  if (!e) return usage();

  // Warm-up: both shapes (same touch flavour), outside the measured function.
  const int t = mi / 2 * 2;
  e->warm[t](10000);
  e->warm[t + 1](10);

  auto t0 = std::chrono::steady_clock::now();
  e->measure[mi](batch ? iters / kBatch : iters);
  auto t1 = std::chrono::steady_clock::now();
  double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  std::printf("%s %s %llu pairs: %.2f ns/pair (wall)\n", e->name, mode.c_str(),
              iters, ns / static_cast<double>(iters));
  return 0;
}
