// bench/macro: allocator macro workloads, one binary, workload chosen by name.
//
//   macro --workload NAME [--threads N] [--seconds S] [--allocator NAME|any]
//         [--seed N] [--corrupt] [--burst-mib N] [--line-census]
//   macro --list
//
// The binary calls plain malloc/free/realloc/new; the allocator is chosen by
// LD_PRELOAD (bench/run does that) and checked at start (exit 2 if the active
// allocator is not the one named by --allocator; see active_allocator.h).
//
// Every workload stamps what it builds and verifies it before freeing (and once
// more at the end): a block's first 8 bytes hold its tag, its last 8 bytes
// tag ^ size-mix; realloc'd buffers are checked byte by byte; maps are walked
// and compared with their twin and with counts kept on the side. The sum of the
// tags written must equal the sum of the tags verified. A broken allocator
// (handing out a block twice, losing realloc contents, ...) fails the run:
// exit status 3, and the result line says "verified": false.
// --corrupt deliberately damages one object after it is built, so the CTest
// test bench_macro_corrupt_<workload> can check that verification catches it
// (exit 3; exit 5 if the run ended before anything could be corrupted).
//
// Output (stdout, one JSON line):
//   {"workload":..., "allocator":..., "threads":..., "seconds":..., "ops":...,
//    "ops_per_sec":..., "peak_rss_kib": VmHWM, [workload's own fields,]
//    "verified":true, "checksum":...}
// burst runs for as long as it takes (--seconds is ignored; its seconds and
// ops_per_sec include 3 s of idling, so they are no throughput figure) and adds
// "burst_mib", "burst_bytes", "burst_blocks", "burst_seconds" and the RSS
// samples "rss_pre_mib", "rss_after_mib", "rss_1s_mib", "rss_3s_mib";
// burst-trim the same but "rss_idle_mib", "rss_trim_mib" and "trim_ms" for the
// three RSS samples. xmalloc with 2 or more threads adds "queue_max_batches"
// and "program_peak_live_kib" (how far its producers ran ahead).
// --line-census (larson, mstress and phases; a diagnostic, not for throughput or RSS
// figures): when the run stops, every thread records the cache lines its
// program writes in each of its live blocks (the first and the last: where
// stamp() writes), and the result adds "census_blocks", "census_lines" and
// "census_shared_lines": lines written for live blocks of two or more threads,
// whose writes take the line from one core to another (sharing the allocator
// made: the program shares no block), "census_pages" (the 4 KiB pages those
// lines lie in) and "census_thread_pages" (the same, a page counted once for
// each thread with a written line in it: the pages each thread's own accesses
// need, summed; equal to census_pages when no page holds two threads' blocks).
// Its buffer is mapped outside the allocator, but its pages count in peak RSS.
#include <getopt.h>
#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <latch>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "active_allocator.h"
#include "testing/args.h"
#include "testing/rng.h"
#include "testing/threads.h"

namespace {

// ---------------------------------------------------------------------------
// Shared machinery
// ---------------------------------------------------------------------------

struct Options {
  std::string workload;
  std::string allocator = "any";
  int threads = 1;
  double seconds = 1.0;
  uint64_t seed = 42;
  bool corrupt = false;
  uint64_t burst_mib = 1024;  // burst only
  bool line_census = false;   // larson, mstress, phases
};

Options g_opt;
std::string g_extra_json;  // a workload's own result fields: ,"name":value...
std::atomic<bool> g_stop{false};
std::atomic<uint64_t> g_bad{0};       // failed checks
std::atomic<uint64_t> g_written{0};   // sum of tags stamped
std::atomic<uint64_t> g_verified{0};  // sum of tags verified
std::atomic<uint64_t> g_ops{0};
std::atomic<bool> g_corrupt_pending{false};

using mstest::Rng;  // testing/rng.h: a splitmix64 stream

inline bool stopping() { return g_stop.load(std::memory_order_relaxed); }

// Take the one-shot corruption token (true exactly once when --corrupt).
inline bool take_corruption() {
  return g_corrupt_pending.load(std::memory_order_relaxed) &&
         g_corrupt_pending.exchange(false, std::memory_order_relaxed);
}

inline uint64_t tail_of(uint64_t tag, size_t n) { return tag ^ (n * 0x9E3779B97F4A7C15ull); }

// Blocks of at least 16 bytes: tag in the first 8 bytes, tail in the last 8.
inline void stamp(void* p, size_t n, uint64_t tag, uint64_t& written) {
  uint64_t tail = tail_of(tag, n);
  std::memcpy(p, &tag, 8);
  std::memcpy(static_cast<char*>(p) + n - 8, &tail, 8);
  written += tag;
  if (take_corruption()) static_cast<unsigned char*>(p)[n - 1] ^= 0x40;
}

inline bool check(const void* p, size_t n, uint64_t tag, uint64_t& verified) {
  uint64_t head, tail;
  std::memcpy(&head, p, 8);
  std::memcpy(&tail, static_cast<const char*>(p) + n - 8, 8);
  if (head != tag || tail != tail_of(tag, n)) {
    g_bad.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  verified += tag;
  return true;
}

void* xmalloc(size_t n) {
  void* p = std::malloc(n);
  if (p == nullptr) {
    std::fprintf(stderr, "malloc(%zu) failed\n", n);
    std::exit(4);
  }
  return p;
}

// Size mix: mostly small, some medium, rare large.
size_t mixed_size(Rng& r, size_t small_max, size_t large_max) {
  uint64_t x = r.below(64);
  if (x == 0) return 16 + r.below(large_max - 15);
  if (x < 8) return 16 + r.below(4096 - 15);
  return 16 + r.below(small_max - 15);
}

struct Tally {  // per-thread sums, flushed once
  uint64_t written = 0, verified = 0, ops = 0;
  void flush() {
    g_written.fetch_add(written, std::memory_order_relaxed);
    g_verified.fetch_add(verified, std::memory_order_relaxed);
    g_ops.fetch_add(ops, std::memory_order_relaxed);
  }
};

// Runs body(thread_index) on `threads` threads until the deadline.
void run_threads(int threads, double seconds, const std::function<void(int)>& body) {
  mstest::run_threads_for(threads, std::chrono::duration<double>(seconds), g_stop, body);
}

// ---------------------------------------------------------------------------
// --line-census: which cache lines the live blocks of more than one thread
// share when the run stops. Entries (line << 16 | thread) go to a buffer
// mapped here, not allocated, reserved whole (untouched pages cost nothing)
// and claimed by a fetch-add; sorted after the threads are joined.
// ---------------------------------------------------------------------------
class LineCensus {
 public:
  static constexpr size_t kMaxEntries = size_t{1} << 27;  // 1 GiB of address space

  // Thread i's live blocks (first and last written lines of each).
  template <class Slots>
  void add(int i, const Slots& live) {
    if (!g_opt.line_census || live.empty() || !map()) return;
    const size_t at = used_.fetch_add(2 * live.size(), std::memory_order_relaxed);
    if (at + 2 * live.size() > kMaxEntries) return;  // past the buffer: left out (reported)
    size_t k = at;
    for (const auto& s : live) {
      const auto a = reinterpret_cast<uintptr_t>(s.p);
      buf_[k++] = (a >> 6) << 16 | static_cast<uint64_t>(i);
      buf_[k++] = ((a + s.n - 1) >> 6) << 16 | static_cast<uint64_t>(i);
    }
    blocks_.fetch_add(live.size(), std::memory_order_relaxed);
  }

  // After the threads joined: the result fields.
  void report() {
    if (!g_opt.line_census) return;
    size_t n = std::min(used_.load(), kMaxEntries), lines = 0, shared = 0;
    if (buf_ != nullptr) {
      std::sort(buf_, buf_ + n);
      n = static_cast<size_t>(std::unique(buf_, buf_ + n) -
                              buf_);  // a line written twice by one thread
      for (size_t k = 0; k < n;) {
        size_t e = k + 1;
        while (e < n && buf_[e] >> 16 == buf_[k] >> 16) ++e;
        ++lines;
        shared += e - k > 1;
        k = e;
      }
    }
    // Pages (4 KiB) the written lines lie in: in all, and summed over the
    // threads (a page counted once per thread with a line there) — what each
    // thread's accesses need of the TLB.
    size_t pages = 0, thread_pages = 0;
    if (buf_ != nullptr) {
      for (size_t k = 0; k < n; ++k) buf_[k] = (buf_[k] >> 22) << 16 | (buf_[k] & 0xffff);
      std::sort(buf_, buf_ + n);  // the map above left a page's threads in their lines' order
      n = static_cast<size_t>(std::unique(buf_, buf_ + n) - buf_);
      thread_pages = n;
      for (size_t k = 0; k < n; ++k) pages += k == 0 || buf_[k] >> 16 != buf_[k - 1] >> 16;
    }
    char b[240];
    std::snprintf(b, sizeof b,
                  ",\"census_blocks\":%zu,\"census_lines\":%zu,\"census_shared_lines\":%zu,"
                  "\"census_pages\":%zu,\"census_thread_pages\":%zu%s",
                  blocks_.load(), lines, shared, pages, thread_pages,
                  used_.load() > kMaxEntries ? ",\"census_truncated\":true" : "");
    g_extra_json += b;
  }

 private:
  bool map() {
    std::call_once(once_, [this] {
      void* m = mmap(nullptr, kMaxEntries * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m != MAP_FAILED) buf_ = static_cast<uint64_t*>(m);
    });
    return buf_ != nullptr;
  }
  std::once_flag once_;
  uint64_t* buf_ = nullptr;
  std::atomic<size_t> used_{0}, blocks_{0};
};

// ---------------------------------------------------------------------------
// larson: server churn. Each thread owns an array of slots and replaces random
// slots (check + free the old block, allocate + stamp a new one). The run is
// cut into generations; each generation's threads exit and the next ones take
// over the slot arrays rotated by one, so blocks outlive the thread that
// allocated them and are freed by another (the first blocks by the main thread).
// ---------------------------------------------------------------------------
struct Slot {
  void* p = nullptr;
  uint32_t n = 0;
  uint64_t tag = 0;
};

void larson() {
  const int T = g_opt.threads;
  const int kSlots = 1000, kGens = 4;
  std::vector<std::vector<Slot>> arrays(T, std::vector<Slot>(kSlots));
  Tally main_tally;
  LineCensus census;
  Rng r0(g_opt.seed);
  for (int t = 0; t < T; ++t)
    for (auto& s : arrays[t]) {
      s.n = static_cast<uint32_t>(16 + r0.below(500));
      s.tag = r0.next() | 1;
      s.p = xmalloc(s.n);
      stamp(s.p, s.n, s.tag, main_tally.written);
    }
  for (int g = 0; g < kGens; ++g) {
    run_threads(T, g_opt.seconds / kGens, [&](int i) {
      auto& slots = arrays[(i + g) % T];
      Rng r(g_opt.seed + 1000003ull * (g * 64 + i + 1));
      Tally tl;
      while (!stopping()) {
        for (int k = 0; k < 64; ++k) {
          Slot& s = slots[r.below(kSlots)];
          check(s.p, s.n, s.tag, tl.verified);
          std::free(s.p);
          s.n = static_cast<uint32_t>(16 + r.below(500));
          s.tag = r.next() | 1;
          s.p = xmalloc(s.n);
          stamp(s.p, s.n, s.tag, tl.written);
        }
        tl.ops += 64;
      }
      if (g == kGens - 1) census.add(i, slots);
      tl.flush();
    });
  }
  census.report();
  for (auto& a : arrays)
    for (auto& s : a) {
      check(s.p, s.n, s.tag, main_tally.verified);
      std::free(s.p);
    }
  main_tally.flush();
}

// ---------------------------------------------------------------------------
// xmalloc: producer/consumer pipeline. Producers allocate and stamp blocks in
// batches of 128 and queue the batches (bounded queue); consumers check and
// free them, so every block (and the batch array itself) dies on another
// thread. With one thread, the thread alternates producing and consuming.
// ---------------------------------------------------------------------------
struct Batch {
  int count = 0;
  Slot items[128];
};

Batch* produce(Rng& r, Tally& tl) {
  auto* b = static_cast<Batch*>(xmalloc(sizeof(Batch)));
  b->count = 128;
  for (auto& s : b->items) {
    s.n = static_cast<uint32_t>(mixed_size(r, 512, 8192));
    s.tag = r.next() | 1;
    s.p = xmalloc(s.n);
    stamp(s.p, s.n, s.tag, tl.written);
  }
  return b;
}

void consume(Batch* b, Tally& tl) {
  for (int k = 0; k < b->count; ++k) {
    check(b->items[k].p, b->items[k].n, b->items[k].tag, tl.verified);
    std::free(b->items[k].p);
  }
  tl.ops += static_cast<uint64_t>(b->count);
  std::free(b);
}

void xmalloc_pipeline() {
  const int T = g_opt.threads;
  if (T == 1) {
    run_threads(1, g_opt.seconds, [&](int) {
      Rng r(g_opt.seed);
      Tally tl;
      Batch* q[8];
      while (!stopping()) {
        for (auto& b : q) b = produce(r, tl);
        for (auto& b : q) consume(b, tl);
      }
      tl.flush();
    });
    return;
  }
  const int producers = (T + 1) / 2;
  std::mutex mu;
  std::condition_variable not_empty, not_full;
  std::deque<Batch*> queue;
  int producers_left = producers;
  const size_t kCap = 64;
  // How far producers ran ahead: the deepest the queue got, and the peak of
  // the bytes the program itself held in batches (produced, not yet freed:
  // requested sizes, the Batch structs included). A faster allocator fills
  // the queue further, so its peak RSS includes more of the program's data;
  // these make the RSS cells comparable (docs/benchmarks.md).
  size_t queue_max = 0;
  std::atomic<int64_t> live{0}, live_max{0};
  auto batch_bytes = [](const Batch* b) {
    int64_t n = sizeof(Batch);
    for (int k = 0; k < b->count; ++k) n += b->items[k].n;
    return n;
  };
  run_threads(T, g_opt.seconds, [&](int i) {
    Tally tl;
    if (i < producers) {
      Rng r(g_opt.seed + 7919ull * (i + 1));
      while (!stopping()) {
        Batch* b = produce(r, tl);
        // relaxed: a statistic; the max is a CAS loop on its own word.
        const int64_t bytes = batch_bytes(b);
        int64_t now = live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
        int64_t seen = live_max.load(std::memory_order_relaxed);
        while (now > seen &&
               !live_max.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
        }
        std::unique_lock<std::mutex> lk(mu);
        not_full.wait(lk, [&] { return queue.size() < kCap; });
        queue.push_back(b);
        queue_max = std::max(queue_max, queue.size());
        not_empty.notify_one();
      }
      std::lock_guard<std::mutex> lk(mu);
      if (--producers_left == 0) not_empty.notify_all();
    } else {
      for (;;) {
        std::unique_lock<std::mutex> lk(mu);
        not_empty.wait(lk, [&] { return !queue.empty() || producers_left == 0; });
        if (queue.empty()) break;
        Batch* b = queue.front();
        queue.pop_front();
        not_full.notify_one();
        lk.unlock();
        const int64_t bytes = batch_bytes(b);
        consume(b, tl);
        live.fetch_sub(bytes, std::memory_order_relaxed);
      }
    }
    tl.flush();
  });
  Tally rest;  // nothing should be left, but be exact
  for (Batch* b : queue) consume(b, rest);
  rest.ops = 0;
  rest.flush();
  char buf[128];
  std::snprintf(buf, sizeof buf, ",\"queue_max_batches\":%zu,\"program_peak_live_kib\":%lld",
                queue_max, static_cast<long long>(live_max.load(std::memory_order_relaxed) / 1024));
  g_extra_json = buf;
}

// ---------------------------------------------------------------------------
// cache-scratch / cache-thrash (Hoard's false-sharing probes). Each thread
// repeatedly allocates an 8-byte object, writes it kWrites times, checks and
// frees it. cache-thrash (active false sharing): does the allocator hand
// neighbouring objects to different threads? cache-scratch (passive): the main
// thread first allocates one object per thread, consecutively, and each thread
// starts by freeing its object: does the allocator then hand the freed
// neighbours back to different threads? One op = one allocate/write/free.
// ---------------------------------------------------------------------------
void cache_probe(bool scratch) {
  const int T = g_opt.threads;
  const int kWrites = 500;
  std::vector<void*> initial(T, nullptr);
  if (scratch)
    for (auto& p : initial) p = xmalloc(8);
  run_threads(T, g_opt.seconds, [&](int i) {
    Tally tl;
    if (scratch) std::free(initial[i]);
    uint64_t start = static_cast<uint64_t>(i) << 32;
    while (!stopping()) {
      for (int k = 0; k < 16; ++k) {
        auto* p = static_cast<volatile uint64_t*>(xmalloc(8));
        *p = start;
        for (int w = 0; w < kWrites; ++w) *p = *p + 1;
        if (take_corruption()) *p = *p ^ 1;
        uint64_t v = *p;
        tl.written += start + kWrites;
        if (v != start + kWrites) {
          g_bad.fetch_add(1, std::memory_order_relaxed);
        } else {
          tl.verified += v;
        }
        std::free(const_cast<uint64_t*>(p));
        ++start;
      }
      tl.ops += 16;
    }
    tl.flush();
  });
}

// ---------------------------------------------------------------------------
// mstress: many live objects, allocated in bursts. Each thread keeps up to
// kLive live blocks (sizes mostly small, rare up to 64 KiB); each round it
// allocates a burst of 1..2048 blocks, then frees half a burst's worth at
// random, or, when over kLive, frees down to a quarter. Each round it also
// mails 16 random live blocks to the next thread, which checks and frees them.
// One op = one allocation.
// ---------------------------------------------------------------------------
// Blocks handed to another thread (mstress, phases): thread i posts to box
// (i + 1) % T and takes its own box's contents.
struct Mailbox {
  std::mutex mu;
  std::vector<Slot> items;
};

void free_slot(Slot& s, Tally& tl) {
  check(s.p, s.n, s.tag, tl.verified);
  std::free(s.p);
}

// Post `mail` to the next thread's box, then check and free what this one's holds.
void exchange_mail(std::vector<Mailbox>& boxes, int i, std::vector<Slot>& mail, Tally& tl) {
  const int T = static_cast<int>(boxes.size());
  {
    std::lock_guard<std::mutex> lk(boxes[(i + 1) % T].mu);
    auto& out = boxes[(i + 1) % T].items;
    out.insert(out.end(), mail.begin(), mail.end());
  }
  mail.clear();
  std::vector<Slot> inbox;
  {
    std::lock_guard<std::mutex> lk(boxes[i].mu);
    inbox.swap(boxes[i].items);
  }
  for (auto& s : inbox) free_slot(s, tl);
}

// What is left in the boxes after the threads stopped.
void drain_mail(std::vector<Mailbox>& boxes) {
  Tally rest;
  for (auto& b : boxes)
    for (auto& s : b.items) free_slot(s, rest);
  rest.flush();
}

void mstress() {
  const int T = g_opt.threads;
  const size_t kLive = 20000;
  std::vector<Mailbox> boxes(T);
  LineCensus census;
  run_threads(T, g_opt.seconds, [&](int i) {
    Rng r(g_opt.seed + 104729ull * (i + 1));
    Tally tl;
    std::vector<Slot> live;
    live.reserve(kLive + 2048);
    auto free_random = [&](size_t count) {
      for (size_t k = 0; k < count && !live.empty(); ++k) {
        size_t j = r.below(live.size());
        free_slot(live[j], tl);
        live[j] = live.back();
        live.pop_back();
      }
    };
    while (!stopping()) {
      size_t burst = 1 + r.below(2048);
      for (size_t k = 0; k < burst; ++k) {
        Slot s;
        s.n = static_cast<uint32_t>(mixed_size(r, 256, 65536));
        s.tag = r.next() | 1;
        s.p = xmalloc(s.n);
        stamp(s.p, s.n, s.tag, tl.written);
        live.push_back(s);
      }
      tl.ops += burst;
      if (live.size() > kLive)
        free_random(live.size() - kLive / 4);
      else
        free_random(burst / 2);
      if (T > 1) {
        std::vector<Slot> mail;
        for (int k = 0; k < 16 && !live.empty(); ++k) {
          size_t j = r.below(live.size());
          mail.push_back(live[j]);
          live[j] = live.back();
          live.pop_back();
        }
        exchange_mail(boxes, i, mail, tl);
      }
    }
    census.add(i, live);
    for (auto& s : live) free_slot(s, tl);
    tl.flush();
  });
  drain_mail(boxes);
  census.report();
}

// ---------------------------------------------------------------------------
// phases (modelled on rpmalloc's benchmark): each thread's live set rises and
// falls. A cycle is 32 rounds; the round's target number of live blocks goes
// from kLow up to kHigh and back down (a triangle), each round allocates up to
// the target (or frees down to it) and then replaces kChurn random blocks.
// Sizes are log-uniform over 16 B..16 KiB, so every small class is used. One
// freed block in 8 goes through a mailbox to the next thread, which checks and
// frees it. What an allocator keeps from the high points while the live set is
// low shows in peak RSS; one op = one allocation.
// ---------------------------------------------------------------------------
void phases() {
  const int T = g_opt.threads;
  constexpr size_t kLow = 1000, kHigh = 12000, kChurn = 512;
  constexpr unsigned kRounds = 32;
  std::vector<Mailbox> boxes(T);
  LineCensus census;
  run_threads(T, g_opt.seconds, [&](int i) {
    Rng r(g_opt.seed + 7919ull * (i + 1));
    Tally tl;
    std::vector<Slot> live, mail;
    live.reserve(kHigh + kChurn);
    auto alloc_one = [&] {
      Slot s;
      s.n = static_cast<uint32_t>(r.log_uniform(16, 16384));
      s.tag = r.next() | 1;
      s.p = xmalloc(s.n);
      stamp(s.p, s.n, s.tag, tl.written);
      live.push_back(s);
      ++tl.ops;
    };
    auto free_one = [&] {
      size_t j = r.below(live.size());
      if (T > 1 && r.below(8) == 0)
        mail.push_back(live[j]);
      else
        free_slot(live[j], tl);
      live[j] = live.back();
      live.pop_back();
    };
    for (unsigned round = 0; !stopping(); ++round) {
      unsigned k = round % kRounds, up = k < kRounds / 2 ? k : kRounds - k;
      size_t target = kLow + (kHigh - kLow) * up / (kRounds / 2);
      while (live.size() < target) alloc_one();
      while (live.size() > target) free_one();
      for (size_t c = 0; c < kChurn && !live.empty(); ++c) {
        free_one();
        alloc_one();
      }
      if (T > 1) exchange_mail(boxes, i, mail, tl);
    }
    census.add(i, live);
    for (auto& s : live) free_slot(s, tl);
    for (auto& s : mail) free_slot(s, tl);
    tl.flush();
  });
  drain_mail(boxes);
  census.report();
}

// ---------------------------------------------------------------------------
// realloc: string/vector builders. Each thread runs 8 builders round-robin;
// a builder grows a buffer to a random target (64 B..16 KiB, 1 in 16 up to
// 256 KiB), either by exact-size appends of 1..64 bytes (string-like) or by
// doubling its capacity (vector-like), writing every byte. When the target is
// reached, every byte is checked, then the buffer is freed. One op = one realloc.
// ---------------------------------------------------------------------------
inline unsigned char byte_at(uint64_t seed, size_t pos) {
  return static_cast<unsigned char>((seed >> 8) + pos * 131 + (pos >> 8));
}

void realloc_builder() {
  run_threads(g_opt.threads, g_opt.seconds, [&](int i) {
    Rng r(g_opt.seed + 15485863ull * (i + 1));
    Tally tl;
    struct Builder {
      unsigned char* p = nullptr;
      size_t len = 0, cap = 0, target = 0;
      uint64_t seed = 0;
      bool doubling = false;
    };
    Builder bs[8];
    auto restart = [&](Builder& b) {
      b.p = nullptr;
      b.len = b.cap = 0;
      b.target = r.below(16) == 0 ? 64 + r.below(256 * 1024) : 64 + r.below(16 * 1024);
      b.seed = r.next();
      b.doubling = r.below(2) == 0;
      tl.written += b.seed;
    };
    auto finish = [&](Builder& b) {
      if (take_corruption()) b.p[b.len / 2] ^= 1;
      bool ok = true;
      for (size_t k = 0; k < b.len; ++k)
        if (b.p[k] != byte_at(b.seed, k)) ok = false;
      if (ok)
        tl.verified += b.seed;
      else
        g_bad.fetch_add(1, std::memory_order_relaxed);
      std::free(b.p);
    };
    for (auto& b : bs) restart(b);
    while (!stopping()) {
      for (auto& b : bs) {
        for (int step = 0; step < 4; ++step) {
          size_t add = 1 + r.below(64);
          size_t need = b.len + add;
          if (need > b.cap) {
            size_t ncap = b.doubling ? std::max<size_t>(16, b.cap * 2) : need;
            while (ncap < need) ncap *= 2;
            void* np = std::realloc(b.p, ncap);
            if (np == nullptr) {
              std::fprintf(stderr, "realloc(%zu) failed\n", ncap);
              std::exit(4);
            }
            b.p = static_cast<unsigned char*>(np);
            b.cap = ncap;
            ++tl.ops;
          }
          for (size_t k = b.len; k < need; ++k) b.p[k] = byte_at(b.seed, k);
          b.len = need;
          if (b.len >= b.target) {
            finish(b);
            restart(b);
          }
        }
      }
    }
    for (auto& b : bs) {
      if (b.p != nullptr) {
        finish(b);
      } else {
        tl.verified += b.seed;  // built nothing yet
      }
    }
    tl.flush();
  });
}

// ---------------------------------------------------------------------------
// map: node-heavy containers. Each thread applies the same random inserts and
// erases (keys < 2^15) to a std::map and a std::unordered_map; every 64 rounds
// and at the end both are walked: every value must be mix(key), both must hold
// the same keys, and their sizes must match the count kept from the
// insert/erase results. One op = one insert or erase (on both containers).
// ---------------------------------------------------------------------------
inline uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}

void maps() {
  run_threads(g_opt.threads, g_opt.seconds, [&](int i) {
    Rng r(g_opt.seed + 32452843ull * (i + 1));
    Tally tl;
    std::map<uint64_t, uint64_t> m;
    std::unordered_map<uint64_t, uint64_t> u;
    size_t expected = 0;
    auto verify = [&] {
      uint64_t sum = 0;
      bool ok = m.size() == expected && u.size() == expected;
      for (const auto& [k, v] : m) {
        if (v != mix(k)) ok = false;
        auto it = u.find(k);
        if (it == u.end() || it->second != v) ok = false;
        sum += v;
      }
      tl.written += 1;
      if (ok) {
        tl.verified += 1;
      } else {
        g_bad.fetch_add(1, std::memory_order_relaxed);
      }
      (void)sum;
    };
    uint64_t round = 0;
    while (!stopping()) {
      for (int k = 0; k < 256; ++k) {
        uint64_t key = r.below(1u << 15);
        bool a = m.emplace(key, mix(key)).second;
        bool b = u.emplace(key, mix(key)).second;
        if (a != b) g_bad.fetch_add(1, std::memory_order_relaxed);
        expected += a;
        key = r.below(1u << 15);
        size_t ea = m.erase(key), eb = u.erase(key);
        if (ea != eb) g_bad.fetch_add(1, std::memory_order_relaxed);
        expected -= ea;
      }
      tl.ops += 512;
      if (++round % 64 == 0) verify();
      // Checked at once: a later random erase could remove the corrupted entry.
      if (round == 1 && take_corruption() && !m.empty()) {
        m.begin()->second ^= 1;
        verify();
      }
    }
    verify();
    tl.flush();
  });
}

// ---------------------------------------------------------------------------
// burst: what is given back after a burst (issue #14). The main thread samples
// RSS; N threads together allocate ~--burst-mib MiB (default 1024) of small
// blocks, stamping each (sizes 16..1024 B: a range [2^b, 2^(b+1)], b = 4..9,
// picked uniformly, then a size in it; mean 252 B, about 4.3 million blocks
// per GiB); once every block is built (a barrier), each thread checks and
// frees the even-numbered blocks it allocated and the odd-numbered blocks of
// the next thread, so half of the frees are cross-thread and every page sees
// both kinds (with 1 thread, all are local); the threads exit. The main thread
// then idles, calling no allocator function, and samples VmRSS right after the
// join, at +1 s and at +3 s. A block's size and tag follow from (thread,
// index), so the only bookkeeping is one pointer per block, in mmap'd arrays
// outside the allocator, unmapped before the first sample (they do count in
// the peak: 8 B per block, 32.5 MiB per GiB). One op = one block.
// ---------------------------------------------------------------------------
constexpr uint64_t kBurstMeanSize = 252;

inline uint64_t burst_key(int owner, size_t k) {
  return mstest::mix64(g_opt.seed ^ (static_cast<uint64_t>(owner) << 40) ^ k);
}
inline size_t burst_size(uint64_t key) {
  const size_t base = size_t{1} << (4 + key % 6);
  return base + static_cast<size_t>((key >> 8) % (base + 1));
}
inline uint64_t burst_tag(uint64_t key) { return mstest::mix64(key) | 1; }

inline double kib_to_mib(long kib) { return static_cast<double>(kib) / 1024.0; }

// burst-trim: the same burst, but the threads stay alive and idle once they
// have freed their blocks (issue #17: a process-wide trim must reach memory that
// idle threads' caches hold). The main thread samples VmRSS then
// ("rss_idle_mib"), calls malloc_trim(0) (glibc's, or the preloaded
// allocator's if it defines one), and samples again ("rss_trim_mib",
// "trim_ms"); then the threads exit. No +1 s / +3 s samples.
void burst_run(bool trim_idle) {
  using clock = std::chrono::steady_clock;
  const int T = g_opt.threads;
  const uint64_t total = g_opt.burst_mib << 20;
  const size_t per = static_cast<size_t>((total / T + kBurstMeanSize - 1) / kBurstMeanSize);
  const size_t map_bytes = per * static_cast<size_t>(T) * sizeof(void*);
  std::atomic<uint64_t> bytes{0};

  const long rss_pre = bench::current_rss_kib();
  void* map = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) {
    std::perror("burst: mmap");
    std::exit(4);
  }
  auto** ptrs = static_cast<void**>(map);  // thread t's blocks: ptrs[t * per + k]
  const auto t0 = clock::now();
  std::barrier freed(T + 1);  // trim_idle: the threads have freed (the main thread too)
  std::latch go(1);           // trim_idle: the threads may exit
  long rss_idle = 0, rss_trim = 0;
  double trim_ms = 0;
  {
    std::barrier built(T);
    std::vector<std::thread> ts;
    ts.reserve(T);
    for (int i = 0; i < T; ++i)
      ts.emplace_back([&, i] {
        Tally tl;
        void** mine = ptrs + static_cast<size_t>(i) * per;
        uint64_t sum = 0;
        for (size_t k = 0; k < per; ++k) {
          const uint64_t key = burst_key(i, k);
          const size_t n = burst_size(key);
          mine[k] = xmalloc(n);
          stamp(mine[k], n, burst_tag(key), tl.written);
          sum += n;
        }
        tl.ops += per;
        bytes.fetch_add(sum, std::memory_order_relaxed);
        built.arrive_and_wait();
        const int j = (i + 1) % T;
        void** next = ptrs + static_cast<size_t>(j) * per;
        for (size_t k = 0; k < per; k += 2) {
          uint64_t key = burst_key(i, k);
          check(mine[k], burst_size(key), burst_tag(key), tl.verified);
          std::free(mine[k]);
          if (k + 1 < per) {
            key = burst_key(j, k + 1);
            check(next[k + 1], burst_size(key), burst_tag(key), tl.verified);
            std::free(next[k + 1]);
          }
        }
        tl.flush();
        if (trim_idle) {
          freed.arrive_and_wait();
          go.wait();  // alive and idle
        }
      });
    if (trim_idle) {
      freed.arrive_and_wait();
      munmap(map, map_bytes);
      rss_idle = bench::current_rss_kib();
      const auto t_trim = clock::now();
      malloc_trim(0);
      trim_ms = std::chrono::duration<double, std::milli>(clock::now() - t_trim).count();
      rss_trim = bench::current_rss_kib();
      go.count_down();
    }
    for (auto& t : ts) t.join();
  }
  const auto t_join = clock::now();
  char buf[512];
  const int n =
      std::snprintf(buf, sizeof buf,
                    ",\"burst_mib\":%llu,\"burst_bytes\":%llu,\"burst_blocks\":%llu,"
                    "\"burst_seconds\":%.3f,\"rss_pre_mib\":%.1f",
                    static_cast<unsigned long long>(g_opt.burst_mib),
                    static_cast<unsigned long long>(bytes.load()),
                    static_cast<unsigned long long>(per * static_cast<size_t>(T)),
                    std::chrono::duration<double>(t_join - t0).count(), kib_to_mib(rss_pre));
  char* rest = buf + n;
  const size_t room = sizeof buf - static_cast<size_t>(n);
  if (trim_idle) {
    std::snprintf(rest, room, ",\"rss_idle_mib\":%.1f,\"rss_trim_mib\":%.1f,\"trim_ms\":%.2f",
                  kib_to_mib(rss_idle), kib_to_mib(rss_trim), trim_ms);
    g_extra_json = buf;
    return;
  }
  munmap(map, map_bytes);
  const long rss_after = bench::current_rss_kib();
  std::this_thread::sleep_until(t_join + std::chrono::seconds(1));
  const long rss_1s = bench::current_rss_kib();
  std::this_thread::sleep_until(t_join + std::chrono::seconds(3));
  const long rss_3s = bench::current_rss_kib();
  std::snprintf(rest, room, ",\"rss_after_mib\":%.1f,\"rss_1s_mib\":%.1f,\"rss_3s_mib\":%.1f",
                kib_to_mib(rss_after), kib_to_mib(rss_1s), kib_to_mib(rss_3s));
  g_extra_json = buf;
}

struct Workload {
  const char* name;
  void (*fn)();
  const char* what;
};

void burst() { burst_run(false); }
void burst_trim() { burst_run(true); }

void cache_scratch() { cache_probe(true); }
void cache_thrash() { cache_probe(false); }

const Workload kWorkloads[] = {
    {"larson", larson, "server churn: random slot replacement, blocks outlive their thread"},
    {"xmalloc", xmalloc_pipeline, "producer/consumer pipeline, every free cross-thread"},
    {"cache-scratch", cache_scratch, "passive false sharing (Hoard cache-scratch)"},
    {"cache-thrash", cache_thrash, "active false sharing (Hoard cache-thrash)"},
    {"mstress", mstress, "many live objects, bursts of allocation, some cross-thread frees"},
    {"realloc", realloc_builder, "string/vector builders growing by realloc"},
    {"map", maps, "std::map + std::unordered_map insert/erase churn"},
    {"burst", burst, "~1 GiB of small blocks, half freed cross-thread; RSS after, +1 s, +3 s"},
    {"burst-trim", burst_trim,
     "the burst, threads then idle; RSS before and after malloc_trim(0) from main"},
    {"phases", phases, "live set rising and falling, every small class, 1/8 frees cross-thread"},
};

// Usage line on stderr, exit 2: for --help too (the runner never asks for it).
[[noreturn]] void usage(const char* msg = nullptr, const char* arg = nullptr) {
  if (msg != nullptr) std::fprintf(stderr, "macro: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
  std::fprintf(stderr,
               "usage: macro --workload NAME [--threads N] [--seconds S] [--allocator NAME|any]\n"
               "             [--seed N] [--corrupt] [--burst-mib N] [--line-census]\n"
               "       macro --list\n");
  std::exit(2);
}

using mstest::parse_double;
using mstest::parse_long;

}  // namespace

int main(int argc, char** argv) {
  static const option kOptions[] = {{"workload", required_argument, nullptr, 'w'},
                                    {"threads", required_argument, nullptr, 't'},
                                    {"seconds", required_argument, nullptr, 's'},
                                    {"allocator", required_argument, nullptr, 'a'},
                                    {"seed", required_argument, nullptr, 'r'},
                                    {"corrupt", no_argument, nullptr, 'c'},
                                    {"burst-mib", required_argument, nullptr, 'b'},
                                    {"line-census", no_argument, nullptr, 'L'},
                                    {"list", no_argument, nullptr, 'l'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  opterr = 0;  // our own messages
  for (int c; (c = getopt_long(argc, argv, "", kOptions, nullptr)) != -1;) {
    long n = 0;
    switch (c) {
      case 'w':
        g_opt.workload = optarg;
        break;
      case 't':
        if (!parse_long(optarg, 1, 1024, &n)) usage("bad --threads (1..1024)", optarg);
        g_opt.threads = static_cast<int>(n);
        break;
      case 's':
        if (!parse_double(optarg, 1e-6, 1e6, &g_opt.seconds)) usage("bad --seconds", optarg);
        break;
      case 'a':
        g_opt.allocator = optarg;
        break;
      case 'r':
        if (!mstest::parse_u64(optarg, &g_opt.seed)) usage("bad --seed", optarg);
        break;
      case 'c':
        g_opt.corrupt = true;
        break;
      case 'b':
        if (!parse_long(optarg, 1, 65536, &n)) usage("bad --burst-mib (1..65536)", optarg);
        g_opt.burst_mib = static_cast<uint64_t>(n);
        break;
      case 'L':
        g_opt.line_census = true;
        break;
      case 'l':
        for (const auto& w : kWorkloads) std::printf("%s\t%s\n", w.name, w.what);
        return 0;
      case 'h':
        usage();
      default:
        usage("unknown option or missing value", argv[optind - 1]);
    }
  }
  if (optind < argc) usage("unexpected argument", argv[optind]);
  bench::require_allocator(g_opt.allocator);
  const Workload* w = nullptr;
  for (const auto& c : kWorkloads)
    if (g_opt.workload == c.name) w = &c;
  if (w == nullptr) {
    std::fprintf(stderr, "unknown workload '%s' (see --list)\n", g_opt.workload.c_str());
    return 2;
  }
  g_corrupt_pending.store(g_opt.corrupt);

  auto t0 = std::chrono::steady_clock::now();
  w->fn();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const uint64_t bad = g_bad.load();
  const bool sums_ok = g_written.load() == g_verified.load();
  const bool verified = bad == 0 && sums_ok;
  if (g_opt.corrupt && g_corrupt_pending.load()) {
    std::fprintf(stderr, "%s: --corrupt requested but no object was corrupted (run too short?)\n",
                 w->name);
    return 5;
  }
  const uint64_t ops = g_ops.load();
  std::printf(
      "{\"workload\":\"%s\",\"allocator\":\"%s\",\"threads\":%d,\"seconds\":%.4f,"
      "\"ops\":%llu,\"ops_per_sec\":%.1f,\"peak_rss_kib\":%ld%s,\"verified\":%s,"
      "\"failed_checks\":%llu,\"checksum\":%llu}\n",
      w->name, bench::detect_allocator().c_str(), g_opt.threads, elapsed,
      static_cast<unsigned long long>(ops), ops / elapsed, bench::peak_rss_kib(),
      g_extra_json.c_str(), verified ? "true" : "false", static_cast<unsigned long long>(bad),
      static_cast<unsigned long long>(g_verified.load()));
  if (!verified) {
    std::fprintf(stderr, "%s: VERIFICATION FAILED (%llu bad checks, written %llu, verified %llu)\n",
                 w->name, static_cast<unsigned long long>(bad),
                 static_cast<unsigned long long>(g_written.load()),
                 static_cast<unsigned long long>(g_verified.load()));
    return 3;
  }
  return 0;
}
