// testing/pattern.h: the byte pattern every test, the stress harness and the
// benchmarks write into blocks and check: each byte is a function of a key
// and its offset, so a lost write, a stray write, a block moved to the wrong
// offset or another block's contents showing through (overlap) is caught.
// Checked word by word (sanitizers instrument one access per word, not per
// byte). Never allocates. Unit-tested in testing/pattern_test.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "testing/rng.h"

namespace mstest {

// The key of a block: distinct blocks (address or size) get unrelated patterns,
// so a block written through an overlapping pointer cannot look intact.
inline uint64_t block_key(uint64_t seed, const void* addr, size_t size) {
  return mix64(seed ^ mix64(reinterpret_cast<uintptr_t>(addr) +
                            static_cast<uint64_t>(size) * 0x9e3779b97f4a7c15ULL));
}

inline uint64_t pattern_word(uint64_t key, size_t j) {
  uint64_t w = key + j * 0x9e3779b97f4a7c15ULL;
  w ^= w >> 29;
  return w * 0xd6e8feb86659fd93ULL;
}

inline unsigned char pattern_byte(uint64_t key, size_t offset) {
  return static_cast<unsigned char>(pattern_word(key, offset >> 3) >> ((offset & 7) * 8));
}

// Writes the pattern of `key` into bytes [from, to) of the block at p.
inline void fill_pattern_range(void* p, size_t from, size_t to, uint64_t key) {
  auto* b = static_cast<unsigned char*>(p);
  for (; from < to && (from & 7) != 0; ++from) b[from] = pattern_byte(key, from);
  for (; from + 8 <= to; from += 8) {
    uint64_t w = pattern_word(key, from >> 3);
    std::memcpy(b + from, &w, 8);
  }
  for (; from < to; ++from) b[from] = pattern_byte(key, from);
}

inline void fill_pattern(void* p, size_t size, uint64_t key) {
  fill_pattern_range(p, 0, size, key);
}

constexpr size_t kNoMismatch = SIZE_MAX;

// First offset in [from, to) whose byte differs from the pattern, or kNoMismatch.
inline size_t check_pattern_range(const void* p, size_t from, size_t to, uint64_t key) {
  auto* b = static_cast<const unsigned char*>(p);
  for (; from < to && (from & 7) != 0; ++from)
    if (b[from] != pattern_byte(key, from)) return from;
  for (; from + 8 <= to; from += 8) {
    uint64_t w;
    std::memcpy(&w, b + from, 8);
    if (w != pattern_word(key, from >> 3))
      for (size_t i = from;; ++i)
        if (b[i] != pattern_byte(key, i)) return i;
  }
  for (; from < to; ++from)
    if (b[from] != pattern_byte(key, from)) return from;
  return kNoMismatch;
}

// First offset in [0, len) whose byte differs from the pattern, or kNoMismatch.
inline size_t check_pattern(const void* p, size_t len, uint64_t key) {
  return check_pattern_range(p, 0, len, key);
}

// Sparse form for blocks of many MiB, where writing every byte would cost more
// than the test: the pattern's bytes at the first and the last offset of every
// `stride` bytes (with stride 4096, of every page a page-aligned block
// spans). Which offsets are probed depends on the offset alone, so a prefix
// of a filled block checks as intact (a realloc that shrinks or moves).
inline void fill_pattern_sparse(void* p, size_t size, uint64_t key, size_t stride = 4096) {
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < size; i += stride) {
    b[i] = pattern_byte(key, i);
    if (i + stride - 1 < size) b[i + stride - 1] = pattern_byte(key, i + stride - 1);
  }
}
// First probed offset (as fill_pattern_sparse writes them) below `size` that
// is wrong, or kNoMismatch.
inline size_t check_pattern_sparse(const void* p, size_t size, uint64_t key, size_t stride = 4096) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < size; i += stride) {
    if (b[i] != pattern_byte(key, i)) return i;
    size_t last = i + stride - 1;
    if (last < size && b[last] != pattern_byte(key, last)) return last;
  }
  return kNoMismatch;
}

// First non-zero offset in [0, len), or kNoMismatch.
inline size_t check_zero(const void* p, size_t len) {
  auto* b = static_cast<const unsigned char*>(p);
  size_t words = len >> 3;
  for (size_t j = 0; j < words; ++j) {
    uint64_t w;
    std::memcpy(&w, b + j * 8, 8);
    if (w != 0)
      for (size_t i = j * 8;; ++i)
        if (b[i] != 0) return i;
  }
  for (size_t i = words * 8; i < len; ++i)
    if (b[i] != 0) return i;
  return kNoMismatch;
}

// A block's tag at both ends only (huge blocks under the sanitizers, where a
// whole pattern would be slow): a block handed to two owners loses one.
inline void stamp_ends(void* p, size_t n, uint64_t tag) {
  memcpy(p, &tag, sizeof tag);
  memcpy(static_cast<char*>(p) + n - sizeof tag, &tag, sizeof tag);
}
inline bool ends_stamped(const void* p, size_t n, uint64_t tag) {
  uint64_t a, b;
  memcpy(&a, p, sizeof a);
  memcpy(&b, static_cast<const char*>(p) + n - sizeof b, sizeof b);
  return a == tag && b == tag;
}

}  // namespace mstest
