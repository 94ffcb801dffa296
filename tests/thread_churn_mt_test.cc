// Thread churn: many short-lived threads (created in waves of 16 and joined),
// each allocating and freeing a few hundred objects of mixed sizes; some
// objects are handed to later threads and freed there. Thread exit must give
// the thread's caches back: after all joins, live_objects is back at its
// baseline and mapped_bytes has not grown by more than a small bound relative
// to after the first wave.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "magslab/magslab.h"

#include "testing/rng.h"
#include "testing/sanitizers.h"

namespace {

#ifdef MS_SANITIZED
constexpr int kThreads = 512;  // sanitizers: ~10x slower, thread creation costly
#else
constexpr int kThreads = 2000;
#endif
constexpr int kWave = 16;
constexpr int kOpsPerThread = 300;
constexpr size_t kMappedGrowthBound = size_t{64} << 20;

struct Obj {
  void* p;
  uint64_t id;
  size_t size;
};

void stamp(const Obj& o) {
  auto* b = static_cast<uint8_t*>(o.p);
  std::memcpy(b, &o.id, 8);
  std::memcpy(b + o.size - 8, &o.id, 8);
  b[o.size / 2] = static_cast<uint8_t>(o.id * 31);
}

bool intact(const Obj& o) {
  const auto* b = static_cast<const uint8_t*>(o.p);
  uint64_t a, z;
  std::memcpy(&a, b, 8);
  std::memcpy(&z, b + o.size - 8, 8);
  return a == o.id && z == o.id && b[o.size / 2] == static_cast<uint8_t>(o.id * 31);
}

struct Shared {
  std::mutex mu;
  std::vector<Obj> pool;  // objects handed from one thread to a later one
  std::atomic<size_t> bad{0}, nulls{0}, cross_frees{0};
};

size_t pick_size(mstest::Rng& rng) {
  unsigned r = rng() % 100;
  if (r < 75) return 24 + rng() % 489;      // small classes (>= 24: stamps fit)
  if (r < 95) return 1024 + rng() % 15360;  // medium classes
  if (r < 99) return 16384 + rng() % 16384;
  return 100000;  // large page runs
}

void worker(Shared& sh, int tid) {
  mstest::Rng rng(0xC0FFEE + tid);
  std::vector<Obj> mine;
  mine.reserve(kOpsPerThread);
  uint64_t next = uint64_t(tid) << 32;
  for (int i = 0; i < kOpsPerThread; ++i) {
    Obj o{nullptr, next++, pick_size(rng)};
    o.p = magslab_malloc(o.size);
    if (!o.p) {
      sh.nulls.fetch_add(1);
      continue;
    }
    stamp(o);
    mine.push_back(o);
    // Free about half of what we hold as we go, in random order.
    if (mine.size() > 8 && rng() % 2 == 0) {
      size_t k = rng() % mine.size();
      if (!intact(mine[k])) sh.bad.fetch_add(1);
      magslab_free(mine[k].p);
      mine[k] = mine.back();
      mine.pop_back();
    }
  }
  // Take objects left by earlier threads and free them here (cross-thread).
  std::vector<Obj> theirs;
  {
    std::lock_guard<std::mutex> lk(sh.mu);
    size_t take = std::min<size_t>(sh.pool.size(), 40);
    theirs.assign(sh.pool.end() - take, sh.pool.end());
    sh.pool.resize(sh.pool.size() - take);
  }
  for (const Obj& o : theirs) {
    if (!intact(o)) sh.bad.fetch_add(1);
    magslab_free(o.p);
    sh.cross_frees.fetch_add(1, std::memory_order_relaxed);
  }
  // Hand about a quarter of ours on; free the rest.
  std::vector<Obj> give;
  for (const Obj& o : mine) {
    if (rng() % 4 == 0) {
      give.push_back(o);
    } else {
      if (!intact(o)) sh.bad.fetch_add(1);
      magslab_free(o.p);
    }
  }
  std::lock_guard<std::mutex> lk(sh.mu);
  sh.pool.insert(sh.pool.end(), give.begin(), give.end());
}

struct StatsLite {
  size_t live_objects, live_bytes, mapped;
};
StatsLite stats() {
  static struct magslab_stats s;
  magslab_stats(&s);
  return {s.live_objects, s.live_bytes, s.mapped_bytes};
}

TEST(ThreadChurnMt, ShortThreadsReturnTheirCaches) {
  const StatsLite base = stats();
  Shared sh;
  size_t mapped_after_first_wave = 0;
  size_t max_mapped = 0;
  int started = 0;
  for (int wave = 0; started < kThreads; ++wave) {
    std::vector<std::thread> ts;
    for (int i = 0; i < kWave && started < kThreads; ++i, ++started)
      ts.emplace_back(worker, std::ref(sh), started);
    for (auto& t : ts) t.join();
    StatsLite s = stats();
    if (wave == 0) mapped_after_first_wave = s.mapped;
    max_mapped = std::max(max_mapped, s.mapped);
  }
  // Drain what the last threads handed on (main thread frees: cross-thread).
  for (const Obj& o : sh.pool) {
    if (!intact(o)) sh.bad.fetch_add(1);
    magslab_free(o.p);
  }
  sh.pool.clear();
  sh.pool.shrink_to_fit();

  EXPECT_EQ(sh.nulls.load(), 0u);
  EXPECT_EQ(sh.bad.load(), 0u) << "objects corrupted between alloc and free";
  EXPECT_GT(sh.cross_frees.load(), size_t(kThreads) * 10);
  StatsLite end = stats();
  EXPECT_EQ(end.live_objects, base.live_objects);
  EXPECT_EQ(end.live_bytes, base.live_bytes);
  EXPECT_LE(max_mapped, mapped_after_first_wave + kMappedGrowthBound)
      << "mapped grew from " << mapped_after_first_wave << " to " << max_mapped << " over "
      << kThreads << " short threads: exited threads' caches leak?";
  EXPECT_LE(end.mapped, mapped_after_first_wave + kMappedGrowthBound);
}

// Threads that allocate and exit without freeing: their objects stay live and
// are freed later by the main thread; the counts must still be exact.
TEST(ThreadChurnMt, ObjectsOutliveTheirThreads) {
  const StatsLite base = stats();
  std::vector<Obj> all;
  std::mutex mu;
  const int threads = kThreads / 8;
  for (int started = 0; started < threads;) {
    std::vector<std::thread> ts;
    for (int i = 0; i < kWave && started < threads; ++i, ++started) {
      ts.emplace_back([&, tid = started] {
        mstest::Rng rng(tid);
        std::vector<Obj> v;
        for (int k = 0; k < 100; ++k) {
          Obj o{nullptr, (uint64_t(tid) << 32) | k, pick_size(rng)};
          o.p = magslab_malloc(o.size);
          if (!o.p) continue;
          stamp(o);
          v.push_back(o);
        }
        std::lock_guard<std::mutex> lk(mu);
        all.insert(all.end(), v.begin(), v.end());
      });
    }
    for (auto& t : ts) t.join();
  }
  EXPECT_EQ(all.size(), size_t(threads) * 100);
  StatsLite mid = stats();
  EXPECT_EQ(mid.live_objects, base.live_objects + all.size());
  size_t bad = 0;
  for (const Obj& o : all) {
    if (!intact(o)) ++bad;
    magslab_free(o.p);
  }
  EXPECT_EQ(bad, 0u);
  StatsLite end = stats();
  EXPECT_EQ(end.live_objects, base.live_objects);
  EXPECT_EQ(end.live_bytes, base.live_bytes);
}

}  // namespace
