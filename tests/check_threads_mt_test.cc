// Check mode (docs/check.md), linked against magslab::check, under many
// threads: blocks allocated on one thread are checked and freed on another
// while threads come and go, the quarantine is shared by all of them, and
// every block a thread receives has its requested size and contents intact
// (usable size == requested size holds only in check mode). Run under TSan.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "testing/sanitizers.h"

namespace {

#if defined(MS_SANITIZED)
constexpr int kRounds = 3;
#else
constexpr int kRounds = 10;
#endif
constexpr int kThreads = 4;
constexpr int kPerThread = 2000;

size_t size_of(int t, int i) {
  static constexpr size_t kSizes[] = {0, 8, 24, 100, 1000, 5000, 70000};
  return kSizes[(t * 7 + i) % 7];
}

TEST(CheckThreadsTest, CrossThreadFreesAsThreadsExit) {
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::vector<unsigned char*>> made(kThreads);
    std::vector<std::thread> producers;
    for (int t = 0; t < kThreads; ++t) {
      producers.emplace_back([t, &made] {
        for (int i = 0; i < kPerThread; ++i) {
          size_t n = size_of(t, i);
          auto* p = static_cast<unsigned char*>(magslab_malloc(n));
          std::memset(p, t + i, n);
          made[t].push_back(p);
        }
      });
    }
    for (auto& th : producers) th.join();  // their magazines go to the depot
    std::atomic<int> bad{0};
    std::vector<std::thread> consumers;
    for (int t = 0; t < kThreads; ++t) {
      consumers.emplace_back([t, &made, &bad] {
        int from = (t + 1) % kThreads;  // another thread's blocks
        for (int i = 0; i < kPerThread; ++i) {
          unsigned char* p = made[from][i];
          size_t n = size_of(from, i);
          // relaxed: a count read after join
          if (magslab_usable_size(p) != n) bad.fetch_add(1, std::memory_order_relaxed);
          for (size_t k = 0; k < n; ++k)
            if (p[k] != static_cast<unsigned char>(from + i)) {
              bad.fetch_add(1, std::memory_order_relaxed);  // relaxed: as above
              break;
            }
          if (i % 2 == 0)
            magslab_free_sized(p, n);
          else
            magslab_free(p);
        }
        if (t == 0) magslab_trim();  // empties the quarantine under the others' frees
      });
    }
    for (auto& th : consumers) th.join();
    EXPECT_EQ(bad.load(), 0) << "round " << round;
  }
  magslab_trim();
}

}  // namespace
