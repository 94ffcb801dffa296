// Producer/consumer traffic: producers allocate and fill objects, consumers on
// other threads verify every byte and free them (cross-thread frees), at 2, 4,
// 8 and 16 threads. At quiescence, live_objects and live_bytes in
// magslab_stats return exactly to their values before each run.

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "magslab/magslab.h"

#include "testing/pattern.h"
#include "testing/rng.h"
#include "testing/sanitizers.h"

namespace {

#ifdef MS_SANITIZED
constexpr size_t kObjectsPerRun = 20000;  // sanitizers are ~10x slower; keep << 60 s
#else
constexpr size_t kObjectsPerRun = 120000;
#endif

struct Item {
  void* p;
  uint64_t id;
  size_t size;
};

// A bounded mutex/condvar queue between one producer and one consumer.
class Queue {
 public:
  void push(Item it) {
    std::unique_lock<std::mutex> lk(mu_);
    not_full_.wait(lk, [&] { return q_.size() < kCap; });
    q_.push_back(it);
    not_empty_.notify_one();
  }
  // Returns false when closed and drained.
  bool pop(Item* out) {
    std::unique_lock<std::mutex> lk(mu_);
    not_empty_.wait(lk, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return false;
    *out = q_.front();
    q_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void close() {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  static constexpr size_t kCap = 512;
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<Item> q_;
  bool closed_ = false;
};

// The pattern of testing/pattern.h, keyed by the item's id and size.
uint64_t key_of(uint64_t id, size_t size) {
  return mstest::mix64(id * 0x9E3779B97F4A7C15ull + size);
}
void fill(void* p, uint64_t id, size_t size) { mstest::fill_pattern(p, size, key_of(id, size)); }
// Returns the first bad offset or SIZE_MAX (mstest::kNoMismatch).
size_t check(const void* p, uint64_t id, size_t size) {
  return mstest::check_pattern(p, size, key_of(id, size));
}

struct Totals {
  size_t objects, bytes;
};
Totals totals() {
  static struct magslab_stats s;
  magslab_stats(&s);
  return {s.live_objects, s.live_bytes};
}

void run(int threads) {
  const int pairs = threads / 2;
  const size_t per_producer = kObjectsPerRun / pairs;
  Totals before = totals();

  std::vector<Queue> queues(pairs);
  std::vector<std::thread> ts;
  std::atomic<size_t> bad{0}, null_allocs{0}, consumed{0};
  std::mutex report_mu;
  std::string first_report;

  for (int c = 0; c < pairs; ++c) {
    ts.emplace_back([&, c] {
      Item it;
      while (queues[c].pop(&it)) {
        if (magslab_usable_size(it.p) < it.size) {
          bad.fetch_add(1);
        }
        size_t off = check(it.p, it.id, it.size);
        if (off != SIZE_MAX) {
          if (bad.fetch_add(1) == 0) {
            std::lock_guard<std::mutex> lk(report_mu);
            first_report = "object id " + std::to_string(it.id) + " size " +
                           std::to_string(it.size) + " corrupted at offset " + std::to_string(off);
          }
        }
        magslab_free(it.p);
        consumed.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int pr = 0; pr < pairs; ++pr) {
    ts.emplace_back([&, pr] {
      mstest::Rng rng(1000 + pr * 7919 + threads);
      for (size_t n = 0; n < per_producer; ++n) {
        size_t size = (rng() % 64 == 0) ? 40000 : 1 + rng() % 4096;
        uint64_t id = (uint64_t(pr) << 40) | n;
        void* p = magslab_malloc(size);
        if (!p) {
          null_allocs.fetch_add(1);
          continue;
        }
        fill(p, id, size);
        // Spread across consumers: mostly our partner, sometimes another.
        int dest = (rng() % 4 == 0) ? int(rng() % pairs) : pr;
        queues[dest].push(Item{p, id, size});
      }
    });
  }
  // Join producers (the last `pairs` threads), then close and join consumers.
  for (int i = pairs; i < 2 * pairs; ++i) ts[i].join();
  for (auto& q : queues) q.close();
  for (int i = 0; i < pairs; ++i) ts[i].join();

  EXPECT_EQ(null_allocs.load(), 0u);
  EXPECT_EQ(bad.load(), 0u) << first_report;
  EXPECT_EQ(consumed.load(), per_producer * pairs);
  Totals after = totals();
  EXPECT_EQ(after.objects, before.objects) << "live_objects not back at quiescence";
  EXPECT_EQ(after.bytes, before.bytes) << "live_bytes not back at quiescence";
}

TEST(ProdConsMt, TwoThreads) { run(2); }
TEST(ProdConsMt, FourThreads) { run(4); }
TEST(ProdConsMt, EightThreads) { run(8); }
TEST(ProdConsMt, SixteenThreads) { run(16); }

TEST(ProdConsMt, StatsStayExactAcrossRepeatedRuns) {
  Totals before = totals();
  for (int i = 0; i < 3; ++i) run(4);
  Totals after = totals();
  EXPECT_EQ(after.objects, before.objects);
  EXPECT_EQ(after.bytes, before.bytes);
}

}  // namespace
