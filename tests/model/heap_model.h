// tests/model/heap_model.h: an interpreter of allocation-operation sequences
// against a shadow model of the heap, shared by the property tests
// (tests/property_test.cc, tests/property_mt_test.cc, RapidCheck generates the
// sequences) and the libFuzzer target (tests/fuzz/heap_fuzz.cc, the sequence is
// decoded from the fuzz input). Header-only; C++20.
//
// The model keeps, for every live block, the size it was asked for, the
// alignment it must have, its usable size and the seed of the pattern written
// over all its usable bytes. Only valid operations are issued (a block to free
// is always picked from the live set), so any magslab abort is a real bug.
// Checked:
//   - a block's usable range [p, p + usable_size) never overlaps another live
//     block's (an interval set, shared between threads when several run);
//   - alignment (16 for requests >= 16, else 8; the requested one for
//     aligned_alloc / posix_memalign), usable_size >= requested, and
//     usable_size stable while the block lives;
//   - contents: the pattern is intact when a block is freed, reallocated,
//     handed over or at the end; realloc keeps min(old, new) requested bytes;
//   - calloc memory is zero; calloc overflow gives NULL + ENOMEM;
//   - invalid alignments give EINVAL (aligned_alloc: NULL + errno;
//     posix_memalign: the return value, *memptr and errno untouched);
//   - realloc(p, 0) frees and returns NULL, usable_size(NULL) == 0;
//   - reuse: a freed small block's address comes back from the next malloc of
//     its size (strict mode, single thread) or is counted (reuse_hits);
//   - optionally (single thread only) magslab_stats live_objects/live_bytes
//     equal the baseline plus the model's live blocks after every operation.
#pragma once

#include <errno.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "magslab/magslab.h"

namespace magslab_model {

enum class Kind : uint8_t {
  Malloc,
  Calloc,
  Realloc,
  AlignedAlloc,
  PosixMemalign,
  Free,
  FreeSized,
  UsableSize,
  Reuse,  // free a small block, malloc its size again: the address comes back
  Give,   // hand a live block to the shared mailbox (multi-threaded runs)
  Take,   // take a block from the mailbox: it becomes this thread's
};
inline constexpr unsigned kNumKinds = 11;
// Kinds that make sense without a mailbox (single thread, fuzzer).
inline constexpr unsigned kNumSingleThreadKinds = 9;

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Malloc:
      return "malloc";
    case Kind::Calloc:
      return "calloc";
    case Kind::Realloc:
      return "realloc";
    case Kind::AlignedAlloc:
      return "aligned_alloc";
    case Kind::PosixMemalign:
      return "posix_memalign";
    case Kind::Free:
      return "free";
    case Kind::FreeSized:
      return "free_sized";
    case Kind::UsableSize:
      return "usable_size";
    case Kind::Reuse:
      return "reuse";
    case Kind::Give:
      return "give";
    case Kind::Take:
      return "take";
  }
  return "?";
}

inline constexpr size_t kMaxSmall = 65536;         // largest slab class
inline constexpr size_t kHugeThreshold = 1 << 20;  // above: a mapping of its own
inline constexpr size_t kMaxModelSize = 4 << 20;   // largest request issued

// Size tiers: 0-2 tiny (<= 256), 3-4 <= 4 KiB, 5 <= 64 KiB (all slab classes),
// 6 large (page runs, 64 KiB .. 1 MiB], 7 huge (1 MiB .. 4 MiB].
inline constexpr unsigned kNumTiers = 8;
inline size_t size_from_tier(unsigned tier, uint32_t raw) {
  switch (tier % kNumTiers) {
    case 0:
    case 1:
    case 2:
      return raw % 257;
    case 3:
    case 4:
      return raw % 4097;
    case 5:
      return raw % (kMaxSmall + 1);
    case 6:
      return kMaxSmall + 1 + raw % (kHugeThreshold - kMaxSmall);
    default:
      return kHugeThreshold + 1 + raw % (kMaxModelSize - kHugeThreshold);
  }
}

// Alignment selector: 0..16 -> 1 << sel (1 B .. 64 KiB); above, one of these
// invalid ones (not a power of two).
inline constexpr size_t kBadAlignments[] = {0, 3, 12, 24, 48, 96, 1000, 65537, 3 << 20, ~size_t{0}};
inline constexpr unsigned kNumAlignSel = 17 + sizeof(kBadAlignments) / sizeof(kBadAlignments[0]);
inline size_t alignment_from_sel(uint32_t sel) {
  sel %= kNumAlignSel;
  return sel <= 16 ? size_t{1} << sel : kBadAlignments[sel - 17];
}
inline bool is_pow2(size_t n) { return n != 0 && (n & (n - 1)) == 0; }

struct Op {
  Kind kind = Kind::Malloc;
  size_t size = 0;         // bytes requested (calloc: split into count * size)
  uint32_t align_sel = 0;  // see alignment_from_sel
  uint32_t pick = 0;       // which live block (index modulo the live count)
  uint32_t aux = 0;        // variant bits, see Interpreter::step
};

inline Op make_op(unsigned kind, unsigned tier, uint32_t raw, uint32_t align_sel, uint32_t pick,
                  uint32_t aux) {
  Op op;
  op.kind = static_cast<Kind>(kind % kNumKinds);
  op.size = size_from_tier(tier, raw);
  op.align_sel = align_sel % kNumAlignSel;
  op.pick = pick;
  op.aux = aux;
  return op;
}

inline std::ostream& operator<<(std::ostream& os, const Op& op) {
  os << kind_name(op.kind) << "(size=" << op.size;
  if (op.kind == Kind::AlignedAlloc || op.kind == Kind::PosixMemalign)
    os << " align=" << alignment_from_sel(op.align_sel);
  os << " pick=" << op.pick << " aux=" << op.aux << ")";
  return os;
}
// For RapidCheck's counterexample printing (found by ADL).
inline void showValue(const Op& op, std::ostream& os) { os << op; }

// Fuzz input -> operations: 8 bytes per operation.
inline constexpr size_t kBytesPerOp = 8;
inline std::vector<Op> decode_ops(const uint8_t* data, size_t n) {
  std::vector<Op> ops;
  ops.reserve(n / kBytesPerOp);
  for (size_t i = 0; i + kBytesPerOp <= n; i += kBytesPerOp) {
    const uint8_t* d = data + i;
    uint32_t raw = d[2] | (uint32_t{d[3]} << 8) | (uint32_t{d[4]} << 16);
    ops.push_back(make_op(d[0] % kNumSingleThreadKinds, d[1] & 7u, raw, d[1] >> 3, d[5],
                          d[6] | (uint32_t{d[7]} << 8)));
  }
  return ops;
}

// The pattern: 64-bit words derived from (seed, byte offset). Blocks up to
// 256 KiB get it over every byte; larger ones (large and huge) over their
// first and last 64 KiB and one word per 4 KiB page between, so that a 4 MiB
// block costs ~1/30 of a full pass (the positions depend only on the offset
// and the block's usable size, so a realloc'd prefix is checked the same way).
// Not instrumented by the fuzzer's coverage or ASan: it is the model's hot
// loop over magslab's own memory, which ASan does not track anyway.
#if defined(__clang__)
#define MODEL_HOT __attribute__((no_sanitize("coverage", "address")))
#else
#define MODEL_HOT
#endif
inline constexpr size_t kDenseLimit = 256 << 10;
inline constexpr size_t kEdge = 64 << 10;
inline constexpr size_t kSparseStep = 4096;

MODEL_HOT inline __attribute__((always_inline)) uint64_t pattern_word(uint64_t seed, size_t off) {
  uint64_t x = seed + (off / 8 + 1) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 29);
}
// The patterned pieces of a block of `usable` bytes, in increasing offset
// order, cut at `limit`: runs of 8-byte words starting 8-byte aligned (the
// last may end in a partial word). (No lambdas: they would be instrumented.)
struct Pieces {
  size_t usable, limit;
  size_t off = 0;
  int stage = 0;
  MODEL_HOT bool next(size_t* b, size_t* e) {
    for (;;) {
      size_t tail = usable <= kDenseLimit ? 0 : (usable - kEdge) & ~size_t{7};
      if (stage == 0) {  // the head (or the whole block)
        stage = usable <= kDenseLimit ? 3 : 1;
        *b = 0;
        *e = usable <= kDenseLimit ? usable : kEdge;
        off = kEdge;
      } else if (stage == 1) {  // one word per page
        if (off >= tail) {
          stage = 2;
          continue;
        }
        *b = off;
        *e = off + 8;
        off += kSparseStep;
      } else if (stage == 2) {  // the tail
        stage = 3;
        *b = tail;
        *e = usable;
      } else {
        return false;
      }
      if (*e > limit) *e = limit;
      if (*b < *e) return true;
      if (*b >= limit) return false;
    }
  }
};
MODEL_HOT inline void fill_pattern(unsigned char* p, size_t usable, uint64_t seed) {
  Pieces pieces{usable, usable};
  size_t b = 0, e = 0;
  while (pieces.next(&b, &e)) {
    size_t off = b;
    for (; off + 8 <= e; off += 8) {
      uint64_t w = pattern_word(seed, off);
      __builtin_memcpy(p + off, &w, 8);
    }
    for (uint64_t w = pattern_word(seed, off); off < e; ++off, w >>= 8)
      p[off] = static_cast<unsigned char>(w);
  }
}
// Offset of the first patterned byte below `limit` that differs from the
// pattern of a block of `usable` bytes, or `limit` if none.
MODEL_HOT inline size_t pattern_mismatch(const unsigned char* p, size_t usable, size_t limit,
                                         uint64_t seed) {
  Pieces pieces{usable, limit};
  size_t b = 0, e = 0;
  while (pieces.next(&b, &e)) {
    size_t off = b;
    for (; off + 8 <= e; off += 8) {
      uint64_t got;
      __builtin_memcpy(&got, p + off, 8);
      if (got != pattern_word(seed, off)) break;
    }
    for (uint64_t w = pattern_word(seed, off); off < e; ++off, w >>= 8)
      if (p[off] != static_cast<unsigned char>(w)) return off;
  }
  return limit;
}
MODEL_HOT inline size_t first_nonzero(const unsigned char* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    __builtin_memcpy(&w, p + i, 8);
    if (w != 0) break;
  }
  for (; i < n; ++i)
    if (p[i] != 0) return i;
  return n;
}

// Usable ranges of every live block, shared by all threads of a run.
class IntervalSet {
 public:
  // false (and *other = the overlapped block's start) if [b, e) overlaps a range.
  bool insert(uintptr_t b, uintptr_t e, uintptr_t* other) {
    std::lock_guard<std::mutex> lock(mu_);
    auto next = ranges_.upper_bound(b);
    if (next != ranges_.end() && next->first < e) {
      *other = next->first;
      return false;
    }
    if (next != ranges_.begin()) {
      auto prev = std::prev(next);
      if (prev->second > b) {
        *other = prev->first;
        return false;
      }
    }
    ranges_.emplace(b, e);
    return true;
  }
  void erase(uintptr_t b) {
    std::lock_guard<std::mutex> lock(mu_);
    ranges_.erase(b);
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return ranges_.size();
  }

 private:
  std::mutex mu_;
  std::map<uintptr_t, uintptr_t> ranges_;
};

struct Block {
  unsigned char* p = nullptr;
  size_t size = 0;    // requested
  size_t align = 8;   // guaranteed alignment
  size_t usable = 0;  // magslab_usable_size at allocation
  uint64_t seed = 0;  // pattern over [0, usable)
  // From a slab class through malloc's own path (malloc, calloc, realloc of
  // such a block to <= 64 KiB): malloc(usable) asks for the same class.
  // Aligned blocks may be page runs with a small usable size: not these.
  bool slab = false;
};

// Blocks in transit between threads.
class Mailbox {
 public:
  static constexpr size_t kCapacity = 64;
  bool put(const Block& b) {
    std::lock_guard<std::mutex> lock(mu_);
    if (blocks_.size() >= kCapacity) return false;
    blocks_.push_back(b);
    return true;
  }
  bool take(uint32_t pick, Block* out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (blocks_.empty()) return false;
    size_t i = pick % blocks_.size();
    *out = blocks_[i];
    blocks_[i] = blocks_.back();
    blocks_.pop_back();
    return true;
  }
  std::vector<Block> drain() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Block> out;
    out.swap(blocks_);
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<Block> blocks_;
};

struct Config {
  // Reuse: the freed block's address must be the next malloc's (one thread).
  bool strict_reuse = false;
  // After every operation: alignment, usable size and pairwise disjointness of
  // all of this interpreter's live blocks (the interval set checks inserts).
  bool check_all_every_op = true;
  // After every operation: magslab_stats live counters == baseline + model
  // (only when this interpreter is the only thread using magslab).
  bool stats_every_op = false;
  // Allocations beyond these limits turn into frees.
  size_t max_live_bytes = size_t{64} << 20;
  size_t max_live_blocks = 4096;
};

class Interpreter {
 public:
  Interpreter(IntervalSet& intervals, Mailbox* mailbox, Config cfg, uint64_t seed_base)
      : intervals_(intervals), mailbox_(mailbox), cfg_(cfg), next_seed_(seed_base) {
    if (cfg_.stats_every_op) {
      struct magslab_stats st;
      magslab_stats(&st);
      base_objects_ = st.live_objects;
      base_bytes_ = st.live_bytes;
    }
  }
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  const std::vector<Block>& live() const { return live_; }
  size_t reuse_hits() const { return reuse_hits_; }
  size_t reuse_tries() const { return reuse_tries_; }
  size_t ops_run() const { return ops_run_; }

  // Runs the operations in order; stops at the first failure.
  bool run(const std::vector<Op>& ops) {
    for (const Op& op : ops)
      if (!step(op)) return false;
    return true;
  }

  bool step(const Op& op) {
    if (failed()) return false;
    cur_ = op;
    ++ops_run_;
    bool ok = dispatch(op);
    if (ok && cfg_.check_all_every_op) ok = check_all();
    if (ok && cfg_.stats_every_op) ok = check_stats();
    return ok;
  }

  // Verifies and frees every live block (leaves them alone after a failure:
  // the heap may be broken, freeing could only add noise).
  bool free_all() {
    if (failed()) return false;
    while (!live_.empty()) {
      if (!release(live_.size() - 1, /*sized=*/false, 0)) return false;
    }
    return true;
  }

  // Adopts a block from elsewhere (a mailbox drained at the end of a run).
  bool adopt(const Block& b) {
    if (!verify(b, "adopted")) return false;
    live_.push_back(b);
    live_bytes_ += b.usable;
    return true;
  }

  // Checks alignment, usable size and disjointness of all live blocks.
  bool check_all() {
    sorted_.assign(live_.begin(), live_.end());
    std::sort(sorted_.begin(), sorted_.end(),
              [](const Block& a, const Block& b) { return a.p < b.p; });
    for (size_t i = 0; i < sorted_.size(); ++i) {
      const Block& b = sorted_[i];
      if (reinterpret_cast<uintptr_t>(b.p) % b.align != 0)
        return fail(describe(b) + " lost its alignment");
      size_t u = magslab_usable_size(b.p);
      if (u != b.usable) return fail(describe(b) + " usable_size changed to " + std::to_string(u));
      if (i > 0 && sorted_[i - 1].p + sorted_[i - 1].usable > b.p)
        return fail(describe(sorted_[i - 1]) + " overlaps " + describe(b));
    }
    return true;
  }

 private:
  bool fail(const std::string& what) {
    if (error_.empty()) {
      std::ostringstream os;
      os << "op #" << ops_run_ << " " << cur_ << ": " << what;
      error_ = os.str();
    }
    return false;
  }
  static std::string describe(const Block& b) {
    std::ostringstream os;
    os << "block " << static_cast<const void*>(b.p) << " (size " << b.size << ", align " << b.align
       << ", usable " << b.usable << ")";
    return os.str();
  }
  static size_t default_align(size_t size) { return size >= 16 ? 16 : 8; }

  bool over_limits() const {
    return live_bytes_ >= cfg_.max_live_bytes || live_.size() >= cfg_.max_live_blocks;
  }
  size_t pick(uint32_t sel) const { return sel % live_.size(); }

  bool verify(const Block& b, const char* when) {
    size_t bad = pattern_mismatch(b.p, b.usable, b.usable, b.seed);
    if (bad != b.usable)
      return fail(describe(b) + " contents changed at offset " + std::to_string(bad) + " (" + when +
                  ")");
    return true;
  }

  // Records a block just returned by magslab: checks and fills it.
  bool adopt_new(void* ptr, size_t requested, size_t align, bool zeroed, const char* what) {
    if (ptr == nullptr) return fail(std::string(what) + " returned NULL");
    Block b;
    b.p = static_cast<unsigned char*>(ptr);
    b.size = requested;
    b.align = align;
    if (reinterpret_cast<uintptr_t>(b.p) % align != 0)
      return fail(std::string(what) + " returned " + describe(b) + ", misaligned");
    b.usable = magslab_usable_size(ptr);
    if (b.usable < requested)
      return fail(std::string(what) + " returned " + describe(b) + ": usable < requested");
    uintptr_t other = 0;
    uintptr_t begin = reinterpret_cast<uintptr_t>(b.p);
    if (!intervals_.insert(begin, begin + std::max<size_t>(b.usable, 1), &other)) {
      std::ostringstream os;
      os << what << " returned " << describe(b) << ", overlapping the live block at 0x" << std::hex
         << other;
      return fail(os.str());
    }
    if (zeroed) {
      size_t nz = first_nonzero(b.p, requested);
      if (nz != requested)
        return fail(std::string(what) + " returned " + describe(b) + ", byte " +
                    std::to_string(nz) + " not zero");
    }
    b.seed = next_seed_++;
    fill_pattern(b.p, b.usable, b.seed);
    live_.push_back(b);
    live_bytes_ += b.usable;
    return true;
  }

  // Sets the slab flag of the block adopt_new just added.
  bool mark_slab(bool slab) {
    live_.back().slab = slab;
    return true;
  }

  // Removes live_[i] from the model after verifying it; then frees it.
  bool release(size_t i, bool sized, uint32_t aux) {
    Block b = live_[i];
    if (!verify(b, "before free")) return false;
    drop(i);
    if (sized) {
      size_t slack = b.usable - b.size;
      magslab_free_sized(b.p, b.size + (slack == 0 ? 0 : aux % (slack + 1)));
    } else {
      magslab_free(b.p);
    }
    return true;
  }
  // Forgets live_[i] (interval erased before the memory goes back to magslab).
  void drop(size_t i) {
    intervals_.erase(reinterpret_cast<uintptr_t>(live_[i].p));
    live_bytes_ -= live_[i].usable;
    live_[i] = live_.back();
    live_.pop_back();
  }

  bool do_free(const Op& op, bool sized) {
    if (live_.empty()) {
      magslab_free(nullptr);
      return true;
    }
    return release(pick(op.pick), sized, op.aux);
  }

  bool dispatch(const Op& op) {
    bool allocates = op.kind == Kind::Malloc || op.kind == Kind::Calloc ||
                     op.kind == Kind::Realloc || op.kind == Kind::AlignedAlloc ||
                     op.kind == Kind::PosixMemalign;
    if (allocates && over_limits() && !live_.empty()) return do_free(op, false);

    switch (op.kind) {
      case Kind::Malloc:
        return adopt_new(magslab_malloc(op.size), op.size, default_align(op.size), false,
                         "malloc") &&
               mark_slab(op.size <= kMaxSmall);

      case Kind::Calloc: {
        if (op.aux % 32 == 31) {  // count * size overflows
          errno = 0;
          void* p = magslab_calloc((~size_t{0} >> 1) + 2, 2 + op.aux % 7);
          if (p != nullptr)
            return fail("calloc with an overflowing count*size did not return NULL");
          if (errno != ENOMEM) return fail("calloc overflow: errno " + std::to_string(errno));
          return true;
        }
        size_t count = 1 + op.aux % 8;
        size_t each = op.size / count;
        return adopt_new(magslab_calloc(count, each), count * each, default_align(count * each),
                         true, "calloc") &&
               mark_slab(count * each <= kMaxSmall);
      }

      case Kind::Realloc: {
        unsigned variant = op.aux % 16;
        if (live_.empty() || variant == 1) {  // realloc(NULL, n) == malloc(n)
          return adopt_new(magslab_realloc(nullptr, op.size), op.size, default_align(op.size),
                           false, "realloc(NULL)") &&
                 mark_slab(op.size <= kMaxSmall);
        }
        size_t i = pick(op.pick);
        Block old = live_[i];
        if (!verify(old, "before realloc")) return false;
        if (variant == 0) {  // realloc(p, 0): frees, returns NULL
          drop(i);
          void* q = magslab_realloc(old.p, 0);
          if (q != nullptr) {
            // Keep it in the model so it does not leak into the next case.
            return adopt_new(q, 0, 8, false, "realloc(p, 0)") &&
                   fail("realloc(p, 0) did not return NULL");
          }
          return true;
        }
        size_t n = op.size;
        if (variant == 2) n = old.size + (op.aux >> 4) % 64 + 1;  // grow a bit
        if (variant == 3) n = old.size - std::min(old.size, size_t{(op.aux >> 4) % 64 + 1});
        if (n == 0) n = 1;
        drop(i);
        void* q = magslab_realloc(old.p, n);
        if (q == nullptr) {
          live_.push_back(old);  // still valid; keep it out of the interval set
          live_bytes_ += old.usable;
          return fail("realloc to " + std::to_string(n) + " returned NULL");
        }
        size_t keep = std::min(old.size, n);
        size_t bad = pattern_mismatch(static_cast<unsigned char*>(q), old.usable, keep, old.seed);
        if (bad != keep) {
          std::ostringstream os;
          os << "realloc of " << describe(old) << " to " << n << " = " << q
             << " lost contents at offset " << bad;
          // Record the new block so that the failure leaves a consistent model.
          adopt_new(q, n, 8, false, "realloc");
          return fail(os.str());
        }
        return adopt_new(q, n, default_align(n), false, "realloc") &&
               mark_slab(old.slab && n <= kMaxSmall);
      }

      case Kind::AlignedAlloc: {
        size_t a = alignment_from_sel(op.align_sel);
        errno = 0;
        void* p = magslab_aligned_alloc(a, op.size);
        if (!is_pow2(a)) {
          if (p != nullptr) {
            adopt_new(p, op.size, 1, false, "aligned_alloc");
            return fail("aligned_alloc with an invalid alignment did not return NULL");
          }
          if (errno != EINVAL)
            return fail("aligned_alloc invalid alignment: errno " + std::to_string(errno));
          return true;
        }
        return adopt_new(p, op.size, a, false, "aligned_alloc");
      }

      case Kind::PosixMemalign: {
        size_t a = alignment_from_sel(op.align_sel);
        bool valid = is_pow2(a) && a % sizeof(void*) == 0;
        void* const sentinel = &next_seed_;
        void* p = sentinel;
        errno = 4321;
        int rc = magslab_posix_memalign(&p, a, op.size);
        if (!valid) {
          if (rc != EINVAL) {
            if (rc == 0) adopt_new(p, op.size, 1, false, "posix_memalign");
            return fail("posix_memalign invalid alignment returned " + std::to_string(rc));
          }
          if (p != sentinel) return fail("posix_memalign EINVAL changed *memptr");
          if (errno != 4321) return fail("posix_memalign EINVAL changed errno");
          return true;
        }
        if (rc != 0) return fail("posix_memalign returned " + std::to_string(rc));
        return adopt_new(p, op.size, a, false, "posix_memalign");
      }

      case Kind::Free:
        return do_free(op, false);
      case Kind::FreeSized:
        return do_free(op, true);

      case Kind::UsableSize: {
        if (magslab_usable_size(nullptr) != 0) return fail("usable_size(NULL) != 0");
        if (live_.empty()) return true;
        const Block& b = live_[pick(op.pick)];
        size_t u = magslab_usable_size(b.p);
        if (u != b.usable || u < b.size)
          return fail(describe(b) + ": usable_size now " + std::to_string(u));
        return true;
      }

      case Kind::Reuse: {
        // A small block with the default alignment: malloc(its usable size)
        // asks for its own size class.
        size_t n = live_.size();
        for (size_t k = 0; k < n; ++k) {
          size_t i = (op.pick + k) % n;
          const Block b = live_[i];
          if (!b.slab) continue;
          if (!verify(b, "before free (reuse)")) return false;
          drop(i);
          magslab_free(b.p);
          void* q = magslab_malloc(b.usable);
          ++reuse_tries_;
          if (q == b.p) ++reuse_hits_;
          if (!adopt_new(q, b.usable, default_align(b.usable), false, "malloc after free"))
            return false;
          mark_slab(true);
          if (cfg_.strict_reuse && q != b.p) {
            std::ostringstream os;
            os << "freed " << describe(b) << ", malloc(" << b.usable << ") returned " << q
               << " instead";
            return fail(os.str());
          }
          return true;
        }
        return adopt_new(magslab_malloc(op.size), op.size, default_align(op.size), false,
                         "malloc") &&
               mark_slab(op.size <= kMaxSmall);
      }

      case Kind::Give: {
        if (mailbox_ == nullptr || live_.empty()) return true;
        size_t i = pick(op.pick);
        Block b = live_[i];
        if (!verify(b, "before handing over")) return false;
        if (!mailbox_->put(b)) return release(i, false, 0);  // mailbox full: free it
        live_bytes_ -= b.usable;  // stays in the interval set: still live
        live_[i] = live_.back();
        live_.pop_back();
        return true;
      }

      case Kind::Take: {
        Block b;
        if (mailbox_ == nullptr || !mailbox_->take(op.pick, &b)) return true;
        return adopt(b);
      }
    }
    return fail("unknown operation");
  }

  bool check_stats() {
    struct magslab_stats st;
    magslab_stats(&st);
    if (st.live_objects != base_objects_ + live_.size() ||
        st.live_bytes != base_bytes_ + live_bytes_) {
      std::ostringstream os;
      os << "stats: live_objects " << st.live_objects << " live_bytes " << st.live_bytes
         << ", model expects " << base_objects_ + live_.size() << " / "
         << base_bytes_ + live_bytes_;
      return fail(os.str());
    }
    return true;
  }

  IntervalSet& intervals_;
  Mailbox* mailbox_;
  Config cfg_;
  uint64_t next_seed_;
  std::vector<Block> live_;
  std::vector<Block> sorted_;
  size_t live_bytes_ = 0;  // sum of usable sizes of live_
  size_t base_objects_ = 0;
  size_t base_bytes_ = 0;
  size_t reuse_hits_ = 0;
  size_t reuse_tries_ = 0;
  size_t ops_run_ = 0;
  Op cur_;
  std::string error_;
};

}  // namespace magslab_model
