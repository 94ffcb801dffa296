// throughput <allocator> <random|prodcons> <threads> <seconds>
//
// random:   every thread keeps a window of 1000 live blocks; each op frees a
//           random slot and refills it with a block of random size (16..1024 B,
//           1 in 64 of size 1025..32768 B). The first and last 8 bytes of every
//           block are written with a per-thread value and checked before free.
// prodcons: threads in pairs. The producer allocates 16..512 B blocks, writes
//           {size, sequence} at the front and a checksum of them in the last 8
//           bytes, and pushes the pointer through a single-producer/single-
//           consumer ring (1024 entries); the consumer pops, checks, and frees,
//           so every free is a cross-thread free. One op = one block freed.
//
// Prints one line:  RESULT <allocator> <workload> <threads> <seconds> <ops> <ops/s>
// Exit status 3 if any check failed (so a broken allocator cannot win), 2 on
// bad usage.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <sched.h>

#include "allocators.h"

#ifndef BENCH_SELF_SUFFIX
#define BENCH_SELF_SUFFIX ""
#endif

namespace {

struct Rng {  // xorshift64*
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
};

inline void cpu_relax() { __builtin_ia32_pause(); }

struct alignas(64) Counter {
  uint64_t ops = 0;
};

struct Shared {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> errors{0};
};

void wait_for_go(Shared &s) {
  s.ready.fetch_add(1);
  while (!s.go.load(std::memory_order_acquire)) sched_yield();
}

inline uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x7F4A7C159E3779B9ull);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 29);
}

inline void store64(void *p, uint64_t v) { __builtin_memcpy(p, &v, 8); }
inline uint64_t load64(const void *p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return v;
}

// ---------------------------------------------------------------- random
template <class A>
void random_worker(int tid, Shared &s, Counter &out) {
  constexpr size_t W = 1000;
  std::vector<void *> slot(W);
  std::vector<uint32_t> size(W);
  std::vector<uint64_t> val(W);
  Rng rng(static_cast<uint64_t>(tid) + 1);
  uint64_t seq = 0, errors = 0;

  auto pick = [&]() -> uint32_t {
    uint64_t r = rng.next();
    if ((r & 63) == 0) return 1025 + static_cast<uint32_t>((r >> 8) % (32768 - 1024));
    return 16 + static_cast<uint32_t>((r >> 8) % (1024 - 16 + 1));
  };
  auto fill = [&](size_t i) {
    uint32_t n = pick();
    auto *p = static_cast<unsigned char *>(A::alloc(n));
    if (!p) {
      ++errors;
      slot[i] = nullptr;
      return;
    }
    uint64_t v = mix(static_cast<uint64_t>(tid), ++seq);
    store64(p, v);           // first byte(s)
    store64(p + n - 8, ~v);  // last byte(s)
    slot[i] = p;
    size[i] = n;
    val[i] = v;
  };
  auto drop = [&](size_t i) {
    auto *p = static_cast<unsigned char *>(slot[i]);
    if (!p) return;
    if (load64(p) != val[i] || load64(p + size[i] - 8) != ~val[i]) ++errors;
    A::dealloc(p);
    slot[i] = nullptr;
  };

  for (size_t i = 0; i < W; ++i) fill(i);
  wait_for_go(s);
  uint64_t ops = 0;
  while (!s.stop.load(std::memory_order_relaxed)) {
    for (int k = 0; k < 256; ++k) {
      size_t i = rng.next() % W;
      drop(i);
      fill(i);
    }
    ops += 256;
  }
  out.ops = ops;
  for (size_t i = 0; i < W; ++i) drop(i);
  if (errors) s.errors.fetch_add(errors);
}

// ---------------------------------------------------------------- prodcons
struct Ring {
  static constexpr size_t kCap = 1024;  // power of two
  alignas(64) std::atomic<uint64_t> head{0};  // written by the consumer
  alignas(64) std::atomic<uint64_t> tail{0};  // written by the producer
  alignas(64) void *buf[kCap];
};

inline void backoff(unsigned &spins) {
  if (++spins < 64)
    cpu_relax();
  else {
    spins = 0;
    sched_yield();
  }
}

template <class A>
void producer(Ring &ring, Shared &s, int pair) {
  Rng rng(static_cast<uint64_t>(pair) + 1000);
  wait_for_go(s);
  uint64_t seq = 0, t = 0;
  bool done = false;
  while (!done) {
    void *p = nullptr;
    if (s.stop.load(std::memory_order_relaxed)) {
      done = true;  // push the nullptr sentinel
    } else {
      uint32_t n = 16 + static_cast<uint32_t>(rng.next() % (512 - 16 + 1));
      auto *b = static_cast<unsigned char *>(A::alloc(n));
      if (!b) {
        s.errors.fetch_add(1);
        done = true;
      } else {
        uint32_t sq = static_cast<uint32_t>(seq++);
        __builtin_memcpy(b, &n, 4);
        __builtin_memcpy(b + 4, &sq, 4);
        store64(b + n - 8, mix(n, sq));  // n >= 16: does not overlap the header
        p = b;
      }
    }
    unsigned spins = 0;
    while (t - ring.head.load(std::memory_order_acquire) >= Ring::kCap) backoff(spins);
    ring.buf[t & (Ring::kCap - 1)] = p;
    ring.tail.store(++t, std::memory_order_release);
  }
}

template <class A>
void consumer(Ring &ring, Shared &s, Counter &out) {
  wait_for_go(s);
  uint64_t h = 0, ops = 0, errors = 0;
  uint32_t expect = 0;
  bool counted = false;
  for (;;) {
    unsigned spins = 0;
    while (ring.tail.load(std::memory_order_acquire) == h) backoff(spins);
    auto *b = static_cast<unsigned char *>(ring.buf[h & (Ring::kCap - 1)]);
    ring.head.store(++h, std::memory_order_release);
    if (!b) break;
    uint32_t n, sq;
    __builtin_memcpy(&n, b, 4);
    __builtin_memcpy(&sq, b + 4, 4);
    if (n < 16 || n > 512 || sq != expect || load64(b + n - 8) != mix(n, sq))
      ++errors;
    ++expect;
    A::dealloc(b);
    if (!counted) {
      ++ops;
      if (s.stop.load(std::memory_order_relaxed)) counted = true;  // freeze count
    }
  }
  out.ops = ops;
  if (errors) s.errors.fetch_add(errors);
}

template <class A>
int run(const std::string &name, const std::string &workload, int threads,
        double seconds) {
  Shared s;
  std::vector<Counter> counters(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  std::vector<Ring> *rings = nullptr;
  if (workload == "random") {
    for (int i = 0; i < threads; ++i)
      pool.emplace_back(random_worker<A>, i, std::ref(s), std::ref(counters[i]));
  } else {
    rings = new std::vector<Ring>(static_cast<size_t>(threads / 2));
    for (int i = 0; i < threads / 2; ++i) {
      pool.emplace_back(producer<A>, std::ref((*rings)[i]), std::ref(s), i);
      pool.emplace_back(consumer<A>, std::ref((*rings)[i]), std::ref(s),
                        std::ref(counters[i]));
    }
  }
  while (s.ready.load() != threads) sched_yield();
  auto t0 = std::chrono::steady_clock::now();
  s.go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  s.stop.store(true);
  auto t1 = std::chrono::steady_clock::now();
  for (auto &t : pool) t.join();
  delete rings;

  uint64_t ops = 0;
  for (auto &c : counters) ops += c.ops;
  double secs = std::chrono::duration<double>(t1 - t0).count();
  uint64_t errors = s.errors.load();
  if (errors) {
    std::printf("FAIL %s %s %d: %llu checksum/allocation errors\n", name.c_str(),
                workload.c_str(), threads, static_cast<unsigned long long>(errors));
    return 3;
  }
  std::printf("RESULT %s %s %d %.3f %llu %.0f\n", name.c_str(), workload.c_str(),
              threads, secs, static_cast<unsigned long long>(ops),
              static_cast<double>(ops) / secs);
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: throughput <magslab|mimalloc|jemalloc|jemalloc-std|tbb|glibc>"
               " <random|prodcons> <threads> <seconds>\n"
               "  prodcons needs an even thread count\n");
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 5) return usage();
  std::string name = argv[1], workload = argv[2];
  bench::forward_if_needed(BENCH_SELF_SUFFIX, "throughput", name, argv);
  int threads = std::atoi(argv[3]);
  double seconds = std::atof(argv[4]);
  if (threads < 1 || threads > 1024 || !(seconds > 0)) return usage();
  if (workload != "random" && workload != "prodcons") return usage();
  if (workload == "prodcons" && threads % 2 != 0) return usage();

#ifdef BENCH_WITH_MAGSLAB
  if (name == "magslab") return run<bench::Magslab>(name, workload, threads, seconds);
#endif
#ifdef BENCH_WITH_TBB
  if (name == "tbb") return run<bench::Tbb>(name, workload, threads, seconds);
#endif
#ifdef BENCH_WITH_GLIBC
  if (name == "glibc") return run<bench::Glibc>(name, workload, threads, seconds);
#endif
#ifdef BENCH_WITH_MIMALLOC
  if (name == "mimalloc") return run<bench::Mimalloc>(name, workload, threads, seconds);
#endif
#ifdef BENCH_WITH_JEMALLOC
  if (name == "jemalloc") return run<bench::Jemalloc>(name, workload, threads, seconds);
  if (name == "jemalloc-std")
    return run<bench::JemallocStd>(name, workload, threads, seconds);
#endif
  return usage();
}
