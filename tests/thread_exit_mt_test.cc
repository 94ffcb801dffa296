// Thread exit: 10,000 short-lived threads (1,000 under sanitizers), in waves
// of 32, each allocating and freeing ~50 objects of a few classes and handing
// a few objects to the main thread, which frees them after the joins. When a
// thread exits its magazines go to the depot or the slabs and its cache is
// recycled for the next thread, so: the live count returns exactly to the
// baseline, mapped memory does not grow with the number of threads, and
// neither does metadata (thread caches and magazines are reused).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "magslab/magslab.h"

#include "testing/sanitizers.h"

namespace {

#ifdef MS_SANITIZED
constexpr int kThreads = 1000;
#else
constexpr int kThreads = 10000;
#endif
constexpr int kWave = 32;
constexpr size_t MiB = size_t{1} << 20;

constexpr size_t kSizes[] = {16, 40, 100, 256, 1000, 3000};
constexpr int kPerThread = 48;  // objects allocated (and mostly freed) per thread
constexpr int kHandOff = 3;     // of those, handed to the main thread

struct Handed {
  unsigned char* p;
  size_t size;
  uint32_t tag;
};

std::mutex g_mu;
std::vector<Handed> g_handed;  // under g_mu

struct magslab_stats g_st;
const struct magslab_stats& stats() {
  magslab_stats(&g_st);
  return g_st;
}

void stamp(unsigned char* p, size_t n, uint32_t tag) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(tag * 31 + i);
}
bool stamped(const unsigned char* p, size_t n, uint32_t tag) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != static_cast<unsigned char>(tag * 31 + i)) return false;
  return true;
}

std::atomic<long> g_corrupt{0}, g_null{0};

void thread_body(uint32_t id) {
  unsigned char* mine[kPerThread];
  size_t sizes[kPerThread];
  for (int i = 0; i < kPerThread; ++i) {
    // The hand-offs are small (16..100 B) so that what the main thread holds
    // (30,000 objects) stays far below the mapped-bytes bound checked below.
    size_t n = i < kHandOff ? kSizes[(id + static_cast<uint32_t>(i)) % 3]
                            : kSizes[(id + static_cast<uint32_t>(i)) % std::size(kSizes)];
    auto* p = static_cast<unsigned char*>(magslab_malloc(n));
    if (p == nullptr) {
      g_null.fetch_add(1);
      sizes[i] = 0;
      mine[i] = nullptr;
      continue;
    }
    stamp(p, n, id * 64 + static_cast<uint32_t>(i));
    mine[i] = p;
    sizes[i] = n;
  }
  // Free most of them in an order unlike allocation order, checking contents.
  for (int i = kPerThread - 1; i >= kHandOff; --i) {
    if (mine[i] == nullptr) continue;
    if (!stamped(mine[i], sizes[i], id * 64 + static_cast<uint32_t>(i))) g_corrupt.fetch_add(1);
    magslab_free(mine[i]);
  }
  // A little churn through the cache after the frees.
  for (int r = 0; r < 4; ++r) {
    void* q = magslab_malloc(kSizes[r]);
    if (q == nullptr) {
      g_null.fetch_add(1);
      continue;
    }
    memset(q, 0xEE, kSizes[r]);
    magslab_free(q);
  }
  std::lock_guard<std::mutex> g(g_mu);
  for (int i = 0; i < kHandOff; ++i)
    if (mine[i] != nullptr)
      g_handed.push_back(Handed{mine[i], sizes[i], id * 64 + static_cast<uint32_t>(i)});
}

void run_wave(uint32_t first, int count) {
  std::vector<std::thread> ts;
  ts.reserve(static_cast<size_t>(count));
  for (int t = 0; t < count; ++t) ts.emplace_back(thread_body, first + static_cast<uint32_t>(t));
  for (auto& t : ts) t.join();
}

TEST(ThreadExit, TenThousandThreadsLeaveNothingBehind) {
  g_handed.reserve(static_cast<size_t>(kThreads) * kHandOff);
  // Make sure the main thread's cache exists before the baseline.
  magslab_free(magslab_malloc(16));
  const size_t live0 = stats().live_objects;
  const size_t meta0 = stats().metadata_bytes;

  run_wave(0, kWave);
  const size_t mapped1 = stats().mapped_bytes;
  const size_t meta1 = stats().metadata_bytes;
  // Only the handed-off objects are live after the joins: each exited
  // thread's magazines went back to the depot or the slabs.
  EXPECT_EQ(stats().live_objects, live0 + static_cast<size_t>(kWave) * kHandOff);

  size_t max_mapped = mapped1, max_meta = meta1;
  for (int started = kWave; started < kThreads; started += kWave) {
    int n = kThreads - started < kWave ? kThreads - started : kWave;
    run_wave(static_cast<uint32_t>(started), n);
    const auto& s = stats();
    if (s.mapped_bytes > max_mapped) max_mapped = s.mapped_bytes;
    if (s.metadata_bytes > max_meta) max_meta = s.metadata_bytes;
  }

  EXPECT_EQ(g_null.load(), 0) << "allocations failed";
  EXPECT_EQ(g_corrupt.load(), 0) << "objects changed under their owner";
  ASSERT_EQ(g_handed.size(), static_cast<size_t>(kThreads) * kHandOff);
  EXPECT_EQ(stats().live_objects, live0 + g_handed.size());

  // The main thread frees what the other threads handed over (cross-thread frees).
  long bad = 0;
  for (const Handed& h : g_handed) {
    if (!stamped(h.p, h.size, h.tag)) ++bad;
    magslab_free(h.p);
  }
  g_handed.clear();
  EXPECT_EQ(bad, 0) << "handed-off objects were overwritten";

  const auto& s = stats();
  EXPECT_EQ(s.live_objects, live0) << "objects leaked across thread exit";
  if (s.mapped_bytes > max_mapped) max_mapped = s.mapped_bytes;
  EXPECT_LE(max_mapped, mapped1 + 32 * MiB)
      << "mapped after the first wave " << mapped1 << ", at most " << max_mapped;
  EXPECT_LT(max_meta - meta0, 16 * MiB)
      << "metadata before " << meta0 << ", after one wave " << meta1 << ", at most " << max_meta
      << ": thread caches or magazines of exited threads are not reused";
  // Stricter: after the first wave every new thread should find a recycled
  // cache and recycled magazines. 10,000 fresh caches (~1.2 KiB each) alone
  // would add ~12 MiB (only checked at full scale).
  if (kThreads >= 10000) {
    EXPECT_LT(max_meta - meta1, 8 * MiB)
        << "metadata after one wave " << meta1 << ", at most " << max_meta
        << ": thread caches of exited threads are not reused";
  }
  RecordProperty("mapped_growth_kib", static_cast<int>((max_mapped - mapped1) >> 10));
  RecordProperty("metadata_growth_kib", static_cast<int>((max_meta - meta0) >> 10));
}

}  // namespace
