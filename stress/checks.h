// stress/checks.h: the overlap index of magslab-stress and its raw-memory
// bookkeeping; the byte pattern comes from testing/pattern.h.
//
// Header-only so the unit tests (checks_test.cc) exercise exactly the
// code the harness runs. Nothing here allocates through malloc/new on its hot path:
// when the harness tests a preloaded (possibly broken) allocator, its own
// bookkeeping must not live in the memory under test.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>

#include "testing/pattern.h"

namespace stress {

// The byte pattern: testing/pattern.h (shared with the tests and benchmarks).
using mstest::block_key;
using mstest::check_pattern;
using mstest::check_pattern_range;
using mstest::check_zero;
using mstest::fill_pattern;
using mstest::fill_pattern_range;
using mstest::kNoMismatch;
using mstest::mix64;
using mstest::pattern_byte;
using mstest::pattern_word;

// ---------------------------------------------------------------------------
// Raw memory for the harness's own bookkeeping: straight from mmap.
// ---------------------------------------------------------------------------

inline void* raw_alloc(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    static const char msg[] = "magslab-stress: mmap failed for harness bookkeeping\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(3);
  }
  return p;
}
inline void raw_free(void* p, size_t bytes) {
  if (p != nullptr) munmap(p, bytes);
}

// A fixed-capacity array in its own mapping (zero-initialised by mmap).
template <class T>
class RawArray {
 public:
  RawArray() = default;
  explicit RawArray(size_t cap) { reset(cap); }
  RawArray(const RawArray&) = delete;
  RawArray& operator=(const RawArray&) = delete;
  ~RawArray() { raw_free(data_, bytes()); }
  void reset(size_t cap) {
    raw_free(data_, bytes());
    cap_ = cap;
    data_ = cap ? static_cast<T*>(raw_alloc(bytes())) : nullptr;
  }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  size_t capacity() const { return cap_; }
  T* data() { return data_; }

 private:
  size_t bytes() const { return cap_ * sizeof(T); }
  T* data_ = nullptr;
  size_t cap_ = 0;
};

// Fixed-size node pool for std::map nodes; used only under its owner's mutex.
class NodePool {
 public:
  static constexpr size_t kSlot = 64;
  static constexpr size_t kChunk = 1 << 20;
  NodePool() = default;
  NodePool(const NodePool&) = delete;
  ~NodePool() {
    while (chunks_ != nullptr) {
      void* next = *static_cast<void**>(chunks_);
      raw_free(chunks_, kChunk);
      chunks_ = next;
    }
  }
  void* get() {
    if (free_ != nullptr) {
      void* p = free_;
      free_ = *static_cast<void**>(p);
      return p;
    }
    if (bump_ == end_) {
      auto* c = static_cast<char*>(raw_alloc(kChunk));
      *reinterpret_cast<void**>(c) = chunks_;  // first slot links the chunks
      chunks_ = c;
      bump_ = c + kSlot;
      end_ = c + kChunk;
    }
    void* p = bump_;
    bump_ += kSlot;
    return p;
  }
  void put(void* p) {
    *static_cast<void**>(p) = free_;
    free_ = p;
  }

 private:
  void* free_ = nullptr;
  void* chunks_ = nullptr;
  char* bump_ = nullptr;
  char* end_ = nullptr;
};

template <class T>
struct PoolAllocator {
  using value_type = T;
  NodePool* pool;
  explicit PoolAllocator(NodePool* p) : pool(p) {}
  template <class U>
  PoolAllocator(const PoolAllocator<U>& o) : pool(o.pool) {}
  T* allocate(size_t n) {
    if (n != 1 || sizeof(T) > NodePool::kSlot) std::abort();
    return static_cast<T*>(pool->get());
  }
  void deallocate(T* p, size_t) { pool->put(p); }
  template <class U>
  bool operator==(const PoolAllocator<U>& o) const {
    return pool == o.pool;
  }
};

// ---------------------------------------------------------------------------
// Overlap index: live intervals [addr, addr+len), sharded by 1 MiB region.
// An interval is entered in the shard of every region it touches, so any two
// overlapping intervals meet in at least one shard (the one holding a region
// where they share a byte), where the insert of the second one sees the first.
// ---------------------------------------------------------------------------

class OverlapIndex {
 public:
  static constexpr unsigned kShards = 64;
  static constexpr unsigned kRegionShift = 20;

  struct Conflict {
    uintptr_t addr = 0;
    size_t len = 0;
  };

  OverlapIndex() {
    for (auto& s : shards_) s.map = new (&s.storage) Map(std::less<uintptr_t>(), Alloc(&s.pool));
  }
  ~OverlapIndex() {
    for (auto& s : shards_) s.map->~Map();
  }

  // Inserts [addr, addr+len) (len 0 counts as 1). Returns false and fills
  // *conflict if it overlaps a live interval; nothing is inserted then.
  bool insert(const void* p, size_t len, Conflict* conflict) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uintptr_t e = a + (len ? len : 1);
    unsigned first, count;
    shard_range(a, e, &first, &count);
    for (unsigned k = 0; k < count; ++k) {
      Shard& s = shards_[(first + k) % kShards];
      std::lock_guard<std::mutex> g(s.mu);
      auto it = s.map->upper_bound(a);
      if (it != s.map->begin()) {
        auto prev = std::prev(it);
        if (prev->second > a) return undo(a, e, first, k, conflict, prev->first, prev->second);
      }
      if (it != s.map->end() && it->first < e)
        return undo(a, e, first, k, conflict, it->first, it->second);
      s.map->emplace(a, e);
    }
    return true;
  }

  // The live interval holding address a, for a crash report (a signal
  // handler: a shard whose lock another thread holds is skipped, never waited
  // for). false: none found.
  bool find_containing(uintptr_t a, Conflict* out) {
    Shard& s = shards_[(a >> kRegionShift) % kShards];
    if (!s.mu.try_lock()) return false;
    bool found = false;
    auto it = s.map->upper_bound(a);
    if (it != s.map->begin()) {
      auto prev = std::prev(it);
      if (prev->second > a) {
        out->addr = prev->first;
        out->len = prev->second - prev->first;
        found = true;
      }
    }
    s.mu.unlock();
    return found;
  }

  // Removes the interval starting at p; false if it was not there.
  bool erase(const void* p, size_t len) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uintptr_t e = a + (len ? len : 1);
    unsigned first, count;
    shard_range(a, e, &first, &count);
    bool ok = true;
    for (unsigned k = 0; k < count; ++k) {
      Shard& s = shards_[(first + k) % kShards];
      std::lock_guard<std::mutex> g(s.mu);
      auto it = s.map->find(a);
      if (it == s.map->end() || it->second != e)
        ok = false;
      else
        s.map->erase(it);
    }
    return ok;
  }

  // In a forked child (its only thread, before any other use): a shard whose
  // lock is free was between updates at the fork, so its map holds exactly
  // blocks that were live then — all still allocated in the child, which the
  // child's own allocations must not overlap — and stays. A shard locked at
  // the fork belonged to a thread that does not exist here, mid-update: it
  // starts again empty (its intervals are not checked in the child; its
  // nodes are left behind). Every interval a thread entered before the fork
  // was live at the fork (a block is entered after it is allocated and taken
  // out before it is freed), so the child reports only real overlaps.
  // Returns the number of shards started again.
  unsigned after_fork_child() {
    unsigned reset = 0;
    for (Shard& s : shards_) {
      if (s.mu.try_lock()) {
        s.mu.unlock();
        continue;
      }
      new (&s.mu) std::mutex();
      new (&s.pool) NodePool();
      s.map = new (&s.storage) Map(std::less<uintptr_t>(), Alloc(&s.pool));
      ++reset;
    }
    return reset;
  }

  // Number of distinct intervals (quiescent use only).
  size_t size() {
    size_t n = 0;
    for (unsigned i = 0; i < kShards; ++i) {
      std::lock_guard<std::mutex> g(shards_[i].mu);
      for (auto& kv : *shards_[i].map) {
        // Count an interval once: in the shard of its first region.
        if (((kv.first >> kRegionShift) % kShards) == i) ++n;
      }
    }
    return n;
  }

 private:
  using Alloc = PoolAllocator<std::pair<const uintptr_t, uintptr_t>>;
  using Map = std::map<uintptr_t, uintptr_t, std::less<uintptr_t>, Alloc>;
  struct alignas(64) Shard {
    std::mutex mu;
    NodePool pool;
    alignas(Map) unsigned char storage[sizeof(Map)];
    Map* map = nullptr;
  };

  static void shard_range(uintptr_t a, uintptr_t e, unsigned* first, unsigned* count) {
    uintptr_t r0 = a >> kRegionShift, r1 = (e - 1) >> kRegionShift;
    *first = static_cast<unsigned>(r0 % kShards);
    uintptr_t n = r1 - r0 + 1;
    *count = n >= kShards ? kShards : static_cast<unsigned>(n);
  }

  bool undo(uintptr_t a, uintptr_t e, unsigned first, unsigned done, Conflict* c, uintptr_t ca,
            uintptr_t ce) {
    for (unsigned k = 0; k < done; ++k) {
      Shard& s = shards_[(first + k) % kShards];
      std::lock_guard<std::mutex> g(s.mu);
      auto it = s.map->find(a);
      if (it != s.map->end() && it->second == e) s.map->erase(it);
    }
    if (c != nullptr) {
      c->addr = ca;
      c->len = ce - ca;
    }
    return false;
  }

  Shard shards_[kShards];
};

}  // namespace stress
