// small/size_classes: request size (and alignment) → class; class → object size,
// slab size, magazine capacity. The table is computed at compile time and
// printed in docs/design.md (see tests/size_classes_test.cc for its bounds).
//
// Classes: 8, 16, then multiples of 16 up to 128, then 8 classes per doubling
// (spacing 1/8 of the power of two) up to 64 KiB ("small": many objects per
// slab), then 4 per doubling up to 1 MiB ("large classes": one object per
// slab, so a slab is a page run that magazines can cache). Every object size
// above 8 is a multiple of 16 and every slab starts on a page, so every object
// is 16-byte aligned (8 for the 8-byte class; large classes are page-aligned).
// Waste per object is ≤ 12.5% for requests from 128 B to 64 KiB and ≤ 25%
// above; between 64 and 128 B it is up to 15/65 (23%), because a 16-byte
// aligned class cannot be finer than 16 B there (see docs/design.md). Pages
// of a large block past what the program touches are not faulted in.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "platform/options.h"

namespace magslab {

inline constexpr unsigned kNumSmallClasses = 9 + 8 * 9;            // 81: up to kMaxSmallSize
inline constexpr unsigned kNumClasses = kNumSmallClasses + 4 * 4;  // 97: up to kMaxClassSize

// Classes up to this size share a slab among many objects; above it a slab is
// one object.
inline constexpr size_t kMaxSharedSlabSize = 32768;

struct ClassInfo {
  uint32_t size;        // object size
  uint32_t slab_pages;  // pages per slab
  uint32_t objects;     // objects per slab
  uint32_t mag_cap;     // magazine capacity
  uint64_t magic;       // ceil(2^64 / size): off % size == 0  <=>  off * magic <= magic - 1
};

namespace detail {

constexpr uint32_t class_size(unsigned c) {
  if (c >= kNumSmallClasses) {  // 4 per doubling above 64 KiB
    unsigned k = 16 + (c - kNumSmallClasses) / 4;
    unsigned j = (c - kNumSmallClasses) % 4 + 1;
    return (1u << k) + j * (1u << (k - 2));
  }
  if (c == 0) return 8;
  if (c <= 8) return 16 * c;
  unsigned k = 7 + (c - 9) / 8;  // power of two below the class
  unsigned j = (c - 9) % 8 + 1;  // step within the doubling
  return (1u << k) + j * (1u << (k - 3));
}

constexpr ClassInfo make_class(unsigned c) {
  uint32_t size = class_size(c);
  if (size > kMaxSharedSlabSize) {
    // One object per slab (every class above 32 KiB is whole pages): the
    // thread that refilled a slab is the only one that allocated from it, so
    // its own frees always go to its loaded magazine (Slab::owner). Magazines
    // hold 4 objects up to 128 KiB and 2 above, so a thread caches at most
    // twelve blocks of a large class (loaded, previous, remote) — a pair loop
    // needs one, the byte cap thread_large_bytes bounds all large classes
    // together, and an exiting thread gives them back. Larger magazines mean
    // fewer depot trades between a producer and a consumer (two contended
    // compare-exchanges each way per trade), BM_cross_thread_large at 2
    // threads: /262144 3.9 -> 8.4 M/s with 2 instead of 1 (stop 18); /65536
    // 7.9 -> 14.0 with 4 instead of 2, /1048576 4.1 -> 8.8 with 2 instead of
    // 1 (stop 20).
    uint32_t pages = static_cast<uint32_t>(size / kPageSize);
    return ClassInfo{size, pages, 1, size <= 131072 ? 4u : 2u, ~uint64_t{0} / size + 1};
  }
  // At least 16 KiB and 8 objects, then grow (≤ 64 pages) until the unusable
  // tail of the slab is ≤ 1/16 of it; at most kMaxSlabObjects objects (8-byte
  // objects: 8 KiB slabs), which keeps the Slab record at 256 bytes.
  uint32_t pages = 4;
  while (pages * kPageSize < 8ull * size) ++pages;
  while (pages < 64 && (pages * kPageSize) % size > pages * kPageSize / 16) ++pages;
  while (pages > 1 && pages * kPageSize / size > kMaxSlabObjects) --pages;
  uint32_t objects = static_cast<uint32_t>(pages * kPageSize / size);
  // Magazines hold about 32 KiB of objects: up to 256 for small classes
  // (amortising a depot or slab trip over many operations; 4 KiB of 16-byte
  // objects), at least 4.
  uint32_t cap = 32768 / size;
  if (cap > 256) cap = 256;
  if (cap < 4) cap = 4;
  return ClassInfo{size, pages, objects, cap, ~uint64_t{0} / size + 1};
}

constexpr std::array<ClassInfo, kNumClasses> make_table() {
  std::array<ClassInfo, kNumClasses> t{};
  for (unsigned c = 0; c < kNumClasses; ++c) t[c] = make_class(c);
  return t;
}

// Class of a request of n bytes, 0 < n <= kMaxClassSize (n == 0 → class 0).
constexpr unsigned compute_class(size_t n) {
  if (n <= 8) return 0;
  if (n <= 128) return static_cast<unsigned>((n + 15) / 16);
  unsigned k = 63u - static_cast<unsigned>(__builtin_clzll(n - 1));  // n in (2^k, 2^(k+1)]
  if (n > kMaxSmallSize) {
    size_t step4 = size_t{1} << (k - 2);
    unsigned j4 = static_cast<unsigned>((n - (size_t{1} << k) + step4 - 1) / step4);
    return kNumSmallClasses + (k - 16) * 4 + j4 - 1;
  }
  size_t step = size_t{1} << (k - 3);
  unsigned j = static_cast<unsigned>((n - (size_t{1} << k) + step - 1) / step);
  return 9 + (k - 7) * 8 + j - 1;
}

inline constexpr size_t kLookupMax = 1024;

constexpr std::array<uint8_t, kLookupMax / 8 + 1> make_lookup() {
  std::array<uint8_t, kLookupMax / 8 + 1> t{};
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint8_t>(compute_class(i * 8));
  return t;
}

}  // namespace detail

inline constexpr std::array<ClassInfo, kNumClasses> kClasses = detail::make_table();
// kSmallLookup[(n + 7) / 8] is the class of n, for n <= kLookupMax.
inline constexpr std::array<uint8_t, detail::kLookupMax / 8 + 1> kSmallLookup =
    detail::make_lookup();
inline constexpr size_t kLookupMax = detail::kLookupMax;

// Capacity of the magazines of class cls made from now on. kClasses[cls].mag_cap
// is the default; the options mag_bytes and mag_max (fixed at start) set it for
// the small classes the way make_class() does: mag_bytes / size, at most mag_max,
// at least 4. Large classes keep theirs (4 up to 128 KiB, else 2). Only read when
// a magazine is made and by the depot's limit, never on the fast path (a
// magazine carries its capacity).
inline uint32_t mag_cap(unsigned cls) {
  const ClassInfo& ci = kClasses[cls];
  if (ci.size > kMaxSharedSlabSize) return ci.mag_cap;
  uint64_t cap = opt::get(opt::kMagBytes) / ci.size;
  uint64_t max = opt::get(opt::kMagMax);
  if (cap > max) cap = max;
  return cap < 4 ? 4 : static_cast<uint32_t>(cap);
}

static_assert(kClasses[kNumSmallClasses - 1].size == kMaxSmallSize, "small classes end there");
static_assert(kClasses[kNumClasses - 1].size == kMaxClassSize, "classes must reach kMaxClassSize");
static_assert(detail::compute_class(kMaxSmallSize) == kNumSmallClasses - 1);
static_assert(detail::compute_class(kMaxSmallSize + 1) == kNumSmallClasses);
static_assert(detail::compute_class(kMaxClassSize) == kNumClasses - 1);
static_assert(kNumClasses <= 128, "MAGSLAB_MAX_CLASSES in magslab.h");
static_assert(
    [] {
      for (unsigned c = 1; c < kNumClasses; ++c) {
        if (kClasses[c].size % 16 != 0 || kClasses[c].size <= kClasses[c - 1].size) return false;
        if (kClasses[c].objects * kClasses[c].size > kClasses[c].slab_pages * kPageSize)
          return false;
        bool large = kClasses[c].size > kMaxSharedSlabSize;
        if (large ? kClasses[c].objects != 1 || kClasses[c].size % kPageSize != 0 ||
                        kClasses[c].slab_pages * kPageSize != kClasses[c].size
                  : kClasses[c].objects < 2 || kClasses[c].objects > kMaxSlabObjects)
          return false;
      }
      return true;
    }(),
    "class table invariants");
static_assert(
    [] {
      // A power-of-two class fills its slab exactly (the free check relies on it).
      for (const ClassInfo& ci : kClasses)
        if (is_pow2(ci.size) && (ci.slab_pages * kPageSize) % ci.size != 0) return false;
      return true;
    }(),
    "power-of-two classes have no slab tail");
static_assert(
    [] {
      // (n + 7) / 8 lookup agrees with the computed class for every n it covers.
      for (size_t n = 0; n <= kLookupMax; ++n)
        if (kSmallLookup[(n + 7) / 8] != detail::compute_class(n)) return false;
      return true;
    }(),
    "lookup table");

// Above kLookupMax every class boundary is a multiple of 128 B up to
// kMaxSmallSize and of 8 KiB up to kMaxClassSize: two more tables replace
// compute_class()'s bit scan and variable shifts on malloc's path. A 2 KiB –
// 1 MiB malloc+free pair took 17 ns with them on the EPYC VM, 9 ns with the
// tables (docs/benchmarks.md, stop 20); 14 fewer instructions account for
// little of that.
namespace detail {
inline constexpr size_t kMidStep = 128, kBigStep = 8192;
template <size_t Step, size_t Max>
constexpr std::array<uint8_t, Max / Step + 1> make_step_lookup() {
  std::array<uint8_t, Max / Step + 1> t{};
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint8_t>(compute_class(i * Step));
  return t;
}
}  // namespace detail
inline constexpr auto kMidLookup = detail::make_step_lookup<detail::kMidStep, kMaxSmallSize>();
inline constexpr auto kBigLookup = detail::make_step_lookup<detail::kBigStep, kMaxClassSize>();
static_assert(
    [] {
      // Each entry is the class of its upper bound (make_step_lookup), and no
      // class boundary lies inside a step: the class is constant on each.
      for (const ClassInfo& ci : kClasses)
        if ((ci.size > kLookupMax && ci.size <= kMaxSmallSize && ci.size % detail::kMidStep != 0) ||
            (ci.size > kMaxSmallSize && ci.size % detail::kBigStep != 0))
          return false;
      return kLookupMax % detail::kMidStep == 0 && kMaxSmallSize % detail::kBigStep == 0;
    }(),
    "mid and big lookup tables");

// The class of kLookupMax < n <= kMaxClassSize.
inline unsigned class_of_big(size_t n) {
  return n <= kMaxSmallSize ? kMidLookup[(n + detail::kMidStep - 1) / detail::kMidStep]
                            : kBigLookup[(n + detail::kBigStep - 1) / detail::kBigStep];
}

inline unsigned class_of(size_t n) {
  return n <= kLookupMax ? kSmallLookup[(n + 7) >> 3] : class_of_big(n);
}

// Smallest class whose objects hold n bytes and are aligned to `align`
// (a power of two ≤ kPageSize), or kNumClasses when none does.
inline unsigned class_for_aligned(size_t n, size_t align) {
  size_t need = n > align ? n : align;
  if (need > kMaxClassSize) return kNumClasses;
  unsigned c = class_of(need);
  while (c < kNumClasses && kClasses[c].size % align != 0) ++c;
  return c;
}

}  // namespace magslab
