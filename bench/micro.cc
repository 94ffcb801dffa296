// bench/micro: allocator micro benchmarks (Google Benchmark).
//
//   micro [--allocator=NAME|any] [Google Benchmark flags...]
//
// The binary calls plain malloc/free/...; the allocator is chosen by LD_PRELOAD
// (bench/run does that) and checked at start: exit 2 if --allocator names
// another allocator than the active one (see active_allocator.h).
// Every benchmark reports items_per_second (one item = one allocation, freed);
// for ->Threads(n) runs Google Benchmark sums the threads' rates.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sched.h>

#include "active_allocator.h"

namespace {

// malloc + free pairs, one size per run (8 B .. 1 MiB).
void BM_pair(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::malloc(n);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
// Each benchmark is registered twice with the same arguments: on 1 thread
// (short names, e.g. BM_pair/16) and on 2-16 threads (each its own work).
void pair_sizes(benchmark::internal::Benchmark* b) {
  b->RangeMultiplier(4)->Range(8, 1 << 20)->Arg(48)->Arg(100)->Arg(3000)->Arg(4 << 20);
}
BENCHMARK(BM_pair)->Apply(pair_sizes);
BENCHMARK(BM_pair)->Apply(pair_sizes)->ThreadRange(2, 16)->UseRealTime();

// Batches: allocate N blocks of 64 B, then free all of them, in allocation
// order (range(1) == 0) or in a shuffled order (range(1) == 1).
void BM_batch(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const bool shuffled = state.range(1) != 0;
  std::vector<void*> ptrs(n);
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  if (shuffled)
    std::shuffle(order.begin(), order.end(), std::mt19937(12345 + state.thread_index()));
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) ptrs[i] = std::malloc(64);
    benchmark::ClobberMemory();
    for (size_t i = 0; i < n; ++i) std::free(ptrs[order[i]]);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_batch)
    ->ArgNames({"n", "shuffled"})
    ->ArgsProduct({{100, 10000}, {0, 1}})
    ->ThreadRange(1, 16)
    ->UseRealTime();

// realloc growth: grow a buffer from 0 to range(0) bytes by 16-byte appends
// (one realloc per append, the worst case for a string builder), then free.
void BM_realloc_growth(benchmark::State& state) {
  const size_t target = static_cast<size_t>(state.range(0));
  int64_t reallocs = 0;
  for (auto _ : state) {
    void* p = nullptr;
    for (size_t len = 16; len <= target; len += 16) {
      p = std::realloc(p, len);
      static_cast<char*>(p)[len - 1] = 1;
      ++reallocs;
    }
    std::free(p);
  }
  state.SetItemsProcessed(reallocs);
}
BENCHMARK(BM_realloc_growth)->Arg(1024)->Arg(64 * 1024)->ThreadRange(1, 16)->UseRealTime();

// Aligned allocation: aligned_alloc(range(0), 64) + free.
void BM_aligned(benchmark::State& state) {
  const size_t align = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::aligned_alloc(align, std::max<size_t>(64, align));
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
void alignments(benchmark::internal::Benchmark* b) { b->RangeMultiplier(8)->Range(16, 4096); }
BENCHMARK(BM_aligned)->Apply(alignments);
BENCHMARK(BM_aligned)->Apply(alignments)->ThreadRange(2, 16)->UseRealTime();

// calloc(1, range(0)) + free (the zeroing is part of the cost).
void BM_calloc(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::calloc(1, n);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
void calloc_sizes(benchmark::internal::Benchmark* b) { b->Arg(64)->Arg(4096)->Arg(256 * 1024); }
BENCHMARK(BM_calloc)->Apply(calloc_sizes);
BENCHMARK(BM_calloc)->Apply(calloc_sizes)->ThreadRange(2, 16)->UseRealTime();

// Cross-thread frees: threads in pairs; the even thread allocates 64-byte
// blocks in batches of 64 and passes them through a single-producer,
// single-consumer ring, the odd thread frees them. Each benchmark thread runs
// the same number of iterations, so every pair hands over everything it made.
constexpr int kRing = 1024;  // batches in flight per pair
constexpr int kBatch = 64;
struct alignas(64) Ring {
  std::atomic<uint64_t> head{0};              // written by the producer
  alignas(64) std::atomic<uint64_t> tail{0};  // written by the consumer
  alignas(64) void* slots[kRing][kBatch];
};
Ring g_rings[8];

void BM_cross_thread_free(benchmark::State& state) {
  Ring& ring = g_rings[state.thread_index() / 2];
  const bool producer = state.thread_index() % 2 == 0;
  for (auto _ : state) {
    if (producer) {
      uint64_t h = ring.head.load(std::memory_order_relaxed);
      while (h - ring.tail.load(std::memory_order_acquire) >= kRing) sched_yield();
      for (auto& s : ring.slots[h % kRing]) s = std::malloc(64);
      ring.head.store(h + 1, std::memory_order_release);
    } else {
      uint64_t t = ring.tail.load(std::memory_order_relaxed);
      while (ring.head.load(std::memory_order_acquire) == t) sched_yield();
      for (auto* p : ring.slots[t % kRing]) std::free(p);
      ring.tail.store(t + 1, std::memory_order_release);
    }
  }
  // Count frees only (one item = one block allocated on one thread, freed on another).
  state.SetItemsProcessed(producer ? 0 : state.iterations() * kBatch);
}
BENCHMARK(BM_cross_thread_free)->Threads(2)->Threads(4)->Threads(8)->Threads(16)->UseRealTime();

// Cross-thread large blocks: threads in pairs; the even thread allocates
// blocks of range(0) bytes, writes their first and last byte, and passes them
// one at a time through a ring of 16 slots; the odd thread checks and frees
// them. At most 16 blocks per pair are in flight (16 MiB at 1 MiB).
constexpr int kLargeRing = 16;
struct alignas(64) LargeRing {
  std::atomic<uint64_t> head{0};
  alignas(64) std::atomic<uint64_t> tail{0};
  alignas(64) void* slots[kLargeRing];
};
LargeRing g_large_rings[8];

void BM_cross_thread_large(benchmark::State& state) {
  LargeRing& ring = g_large_rings[state.thread_index() / 2];
  const bool producer = state.thread_index() % 2 == 0;
  const size_t n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    if (producer) {
      uint64_t h = ring.head.load(std::memory_order_relaxed);
      while (h - ring.tail.load(std::memory_order_acquire) >= kLargeRing) sched_yield();
      auto* p = static_cast<char*>(std::malloc(n));
      p[0] = p[n - 1] = 1;
      ring.slots[h % kLargeRing] = p;
      ring.head.store(h + 1, std::memory_order_release);
    } else {
      uint64_t t = ring.tail.load(std::memory_order_relaxed);
      while (ring.head.load(std::memory_order_acquire) == t) sched_yield();
      auto* p = static_cast<char*>(ring.slots[t % kLargeRing]);
      if (p[0] != 1 || p[n - 1] != 1) std::abort();
      std::free(p);
      ring.tail.store(t + 1, std::memory_order_release);
    }
  }
  state.SetItemsProcessed(producer ? 0 : state.iterations());
}
BENCHMARK(BM_cross_thread_large)
    ->ArgsProduct({{64 << 10, 256 << 10, 1 << 20, 4 << 20}})
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  std::string expected = "any";
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--allocator=", 12) == 0) {
      expected = argv[i] + 12;
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  bench::require_allocator(expected);
  benchmark::AddCustomContext("allocator", bench::detect_allocator());
  benchmark::AddCustomContext("malloc_provider", bench::malloc_provider());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
