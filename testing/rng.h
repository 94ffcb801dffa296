// testing/rng.h: the one PRNG of magslab's tests, stress harness and
// benchmarks: a splitmix64 stream (Steele, Lea & Flood 2014). Small, fast,
// seedable with any value (0 included), and a UniformRandomBitGenerator, so
// it also drives <random> distributions and std::shuffle.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mstest {

// The splitmix64 finaliser: a bijective 64-bit mix.
constexpr uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct Rng {
  using result_type = uint64_t;
  uint64_t s;
  constexpr explicit Rng(uint64_t seed = 0) : s(seed) {}

  constexpr uint64_t next() {
    s += 0x9e3779b97f4a7c15ULL;
    return mix64(s);
  }
  // Uniform in [0, n) (modulo bias is negligible for test sizes); 0 for n == 0.
  constexpr uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  // Uniform in [lo, hi].
  constexpr uint64_t between(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  // True once in `one_in` draws on average.
  constexpr bool chance(unsigned one_in) { return below(one_in) == 0; }
  // Log-uniform in [lo, hi]: a power-of-two bucket uniformly, then a value in it.
  constexpr size_t log_uniform(size_t lo, size_t hi) {
    if (hi <= lo) return lo;
    unsigned blo = 63 - static_cast<unsigned>(__builtin_clzll(lo | 1));
    unsigned bhi = 63 - static_cast<unsigned>(__builtin_clzll(hi));
    unsigned b = blo + static_cast<unsigned>(below(bhi - blo + 1));
    size_t base = size_t{1} << b;
    size_t v = base + below(base);
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return v;
  }

  // UniformRandomBitGenerator.
  static constexpr uint64_t min() { return 0; }
  static constexpr uint64_t max() { return UINT64_MAX; }
  constexpr uint64_t operator()() { return next(); }
};

}  // namespace mstest
