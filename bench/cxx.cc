// bench/cxx: the C++ API against what a program would use instead (Google
// Benchmark; issue #16, docs/cpp.md). bench/run runs it under every allocator
// (LD_PRELOAD): the peers' side — new/delete, std::allocator, std::pmr pools
// and monotonic_buffer_resource over new/delete — measures the preloaded
// allocator; magslab's side (ObjectCache, Arena, the pmr resources,
// magslab::allocator) calls libmagslab, which under the magslab preload is the
// override's copy (it exports the same C API), so one heap serves the process.
//
//   BM_cache/object_cache, BM_cache/new_delete      64-byte object whose constructor fills
//                                                    it: pairs and batches of 100
//   BM_cache_buffered/...                            the same with a constructor that also
//                                                    allocates a 256-byte buffer it owns
//   BM_arena/magslab, BM_arena/magslab_pmr,          bump allocation of 16..128 B until
//   BM_arena/monotonic, BM_arena/monotonic_buffer    256 KiB, then reset/release
//   BM_pool/<resource>, threads 1..16                a pmr::map per thread doing random
//                                                    inserts and erases (one node each)
//   BM_map/std_allocator, BM_map/magslab_allocator   the same on std::map
//
// Every benchmark reports items_per_second (an item: one allocation, or one
// insert/erase). --allocator=NAME checks the malloc provider's file only
// (active_allocator.h's markers cannot be used: this binary links libmagslab
// and libtbbmalloc, so their symbols are present under every preload).
#include <benchmark/benchmark.h>
#include <oneapi/tbb/scalable_allocator.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory_resource>
#include <string>
#include <vector>

#include "active_allocator.h"
#include "magslab/magslab.hpp"

namespace {

// ---- Object caches vs new/delete ----

// 64 bytes; the constructor fills them (a typical "initialise the fields"
// constructor, the cheapest non-trivial one), the destructor reads one (not
// optimised out).
struct Obj64 {
  Obj64() {
    for (int i = 0; i < 8; ++i) v[i] = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1);
  }
  ~Obj64() { benchmark::DoNotOptimize(v[7]); }
  uint64_t v[8];
};
static_assert(sizeof(Obj64) == 64);

// 64 bytes whose constructor also sets up owned state — a 256-byte buffer, as
// a connection or parser object would — which the cache keeps across reuse.
struct Buffered64 {
  Buffered64() : buf(new char[256]), cap(256) {
    std::memset(buf, 0, 64);
    for (int i = 0; i < 6; ++i) v[i] = static_cast<uint64_t>(i);
  }
  ~Buffered64() { delete[] buf; }
  char* buf;
  uint64_t cap;
  uint64_t v[6];
};
static_assert(sizeof(Buffered64) == 64);

template <class T>
magslab::ObjectCache<T>& obj_cache() {
  static auto* c = new magslab::ObjectCache<T>("bench");
  return *c;
}

template <class T>
void BM_cache_object_cache(benchmark::State& state) {
  auto& cache = obj_cache<T>();
  const int batch = static_cast<int>(state.range(0));
  std::vector<T*> held(static_cast<size_t>(batch));
  T* resident = cache.acquire();  // as in BM_cache_new_delete
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      held[i] = cache.acquire();
      benchmark::DoNotOptimize(held[i]);
    }
    for (int i = 0; i < batch; ++i) cache.release(held[i]);
  }
  cache.release(resident);
  state.SetItemsProcessed(state.iterations() * batch);
}

template <class T>
void BM_cache_new_delete(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  std::vector<T*> held(static_cast<size_t>(batch));
  // One object stays live, as some always does in a real program: without it a
  // pair freed the only live block of its page, an empty-page path for some
  // allocators (bench/fastpath.cc; a benchmark audit, stop 33).
  T* resident = new T;
  benchmark::DoNotOptimize(resident);
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      held[i] = new T;
      benchmark::DoNotOptimize(held[i]);
    }
    for (int i = 0; i < batch; ++i) delete held[i];
  }
  delete resident;
  state.SetItemsProcessed(state.iterations() * batch);
}

// ---- Arenas vs monotonic_buffer_resource ----

constexpr size_t kArenaBytes = 256 << 10;

// Sizes 16..128 B in a fixed pseudo-random order, alignment 8 or 16, computed
// once: the loop then measures the allocation calls, not the generator.
struct Request {
  uint32_t size;
  uint32_t align;
};
const std::vector<Request>& requests() {
  static const std::vector<Request> r = [] {
    std::vector<Request> v;
    uint32_t x = 12345;
    size_t used = 0;
    while (used < kArenaBytes - 256) {
      x = x * 1664525u + 1013904223u;
      Request q{16 + (x >> 24) % 113, (x & 1) ? 8u : 16u};
      used += q.size + 8;
      v.push_back(q);
    }
    return v;
  }();
  return r;
}

template <class Alloc>
int64_t fill(Alloc&& alloc) {
  const std::vector<Request>& r = requests();
  for (const Request& q : r) {
    void* p = alloc(q.size, q.align);
    benchmark::DoNotOptimize(p);
  }
  return static_cast<int64_t>(r.size());
}

void BM_arena_magslab(benchmark::State& state) {
  magslab::Arena arena(kArenaBytes + (64 << 10));
  int64_t items = 0;
  for (auto _ : state) {
    items += fill([&](size_t s, size_t a) { return arena.allocate(s, a); });
    arena.reset();
  }
  state.SetItemsProcessed(items);
}

// Through the std::pmr interface (a virtual call per allocation, as programs
// use these resources); release() between rounds.
template <class Resource>
void arena_pmr(benchmark::State& state, Resource& r) {
  std::pmr::memory_resource* mr = &r;
  int64_t items = 0;
  for (auto _ : state) {
    items += fill([&](size_t s, size_t a) { return mr->allocate(s, a); });
    r.release();
  }
  state.SetItemsProcessed(items);
}

void BM_arena_magslab_pmr(benchmark::State& state) {
  magslab::pmr::ArenaResource r(kArenaBytes + (64 << 10), 1 << 20);
  arena_pmr(state, r);
}

// Upstream: new/delete (the preloaded allocator); release() gives the chunks back.
void BM_arena_monotonic(benchmark::State& state) {
  std::pmr::monotonic_buffer_resource r;
  arena_pmr(state, r);
}

// With an initial buffer that holds everything: memory reused, like Arena.
void BM_arena_monotonic_buffer(benchmark::State& state) {
  std::vector<char> buf(kArenaBytes + (64 << 10));
  std::pmr::monotonic_buffer_resource r(buf.data(), buf.size());
  arena_pmr(state, r);
}

// ---- Node containers on pmr resources, 1..16 threads ----

constexpr uint32_t kKeys = 512;  // about half present at any time: allocation is a fair share

template <class Map>
void churn(benchmark::State& state, Map& m) {
  uint32_t x = 0x2545F491u * static_cast<uint32_t>(state.thread_index() + 1);
  for (auto _ : state) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    uint32_t k = x % kKeys;
    auto [it, inserted] = m.try_emplace(k, k);
    if (!inserted) m.erase(it);
  }
  state.SetItemsProcessed(state.iterations());
}

using ResourceFn = std::pmr::memory_resource* (*)();

std::pmr::memory_resource* magslab_pool() {
  static auto* r = new magslab::pmr::PoolResource();
  return r;
}
std::pmr::memory_resource* magslab_heap() { return magslab::pmr::resource(); }
std::pmr::memory_resource* sync_pool() {
  static auto* r = new std::pmr::synchronized_pool_resource();
  return r;
}
std::pmr::memory_resource* unsync_pool() {  // one per thread: it is not thread safe
  static thread_local auto* r = new std::pmr::unsynchronized_pool_resource();
  return r;
}
std::pmr::memory_resource* tbb_resource() { return tbb::scalable_memory_resource(); }
std::pmr::memory_resource* new_delete() { return std::pmr::new_delete_resource(); }

void BM_pool(benchmark::State& state, ResourceFn fn) {
  std::pmr::map<uint32_t, uint64_t> m(fn());
  churn(state, m);
}

template <class Alloc>
void BM_map(benchmark::State& state) {
  std::map<uint32_t, uint64_t, std::less<uint32_t>, Alloc> m;
  churn(state, m);
}

void register_all() {
  for (int batch : {1, 100}) {
    benchmark::RegisterBenchmark("BM_cache/object_cache", BM_cache_object_cache<Obj64>)->Arg(batch);
    benchmark::RegisterBenchmark("BM_cache/new_delete", BM_cache_new_delete<Obj64>)->Arg(batch);
  }
  for (int batch : {1, 100}) {
    benchmark::RegisterBenchmark("BM_cache_buffered/object_cache",
                                 BM_cache_object_cache<Buffered64>)
        ->Arg(batch);
    benchmark::RegisterBenchmark("BM_cache_buffered/new_delete", BM_cache_new_delete<Buffered64>)
        ->Arg(batch);
  }
  benchmark::RegisterBenchmark("BM_arena/magslab", BM_arena_magslab);
  benchmark::RegisterBenchmark("BM_arena/magslab_pmr", BM_arena_magslab_pmr);
  benchmark::RegisterBenchmark("BM_arena/monotonic", BM_arena_monotonic);
  benchmark::RegisterBenchmark("BM_arena/monotonic_buffer", BM_arena_monotonic_buffer);
  const std::pair<const char*, ResourceFn> resources[] = {
      {"magslab_pool", magslab_pool},   {"magslab_resource", magslab_heap},
      {"synchronized_pool", sync_pool}, {"unsynchronized_pool", unsync_pool},
      {"tbb_scalable", tbb_resource},   {"new_delete", new_delete},
  };
  for (const auto& [name, fn] : resources)
    benchmark::RegisterBenchmark((std::string("BM_pool/") + name).c_str(), BM_pool, fn)
        ->ThreadRange(1, 16)
        ->UseRealTime();
  benchmark::RegisterBenchmark("BM_map/std_allocator",
                               BM_map<std::allocator<std::pair<const uint32_t, uint64_t>>>)
      ->ThreadRange(1, 16)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_map/magslab_allocator",
                               BM_map<magslab::allocator<std::pair<const uint32_t, uint64_t>>>)
      ->ThreadRange(1, 16)
      ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  // --allocator=NAME: the file that provides malloc must be NAME's (see above).
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--allocator=", 12) != 0) continue;
    std::string want = argv[i] + 12;
    const std::string provider = bench::malloc_provider();
    bool ok = want == "any";
    for (const auto& sig : bench::kSignatures)
      if (want == sig.name && provider.find(sig.lib_token) != std::string::npos) ok = true;
    if (!ok) {
      std::fprintf(stderr, "allocator check failed: expected '%s' but malloc comes from %s\n",
                   want.c_str(), provider.c_str());
      return 2;
    }
    for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
    --argc;
    break;
  }
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
