// The event counters of magslab_class_stats count since the process started:
// read under traffic they may lag, but never go back (a monitor that takes
// rates from them, as Prometheus does with counters, reads a decrease as a
// restart). remote_frees is the events counted as remote magazines left their
// threads plus what the remote magazines hold now; read in that order (a
// magazine seen in its slot, then counted as it left) it counted a
// magazine twice, and the next sample went back by up to a magazine: stop
// 51's bug hunt saw 153 decreases (up to 246) in 430,000 samples of a
// producer and two consumers of 64 B blocks.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/size_classes.h"
#include "testing/no_decay.h"  // exact counts at the end

namespace {

struct magslab_stats g_now, g_before;  // 13 KiB each: off the stack

TEST(StatsMonotonic, EventCountersNeverGoBackUnderTraffic) {
  constexpr size_t kSlots = 4096;
  std::vector<std::atomic<void*>> ring(kSlots);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {  // a producer: its blocks are freed by the others
    for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++i)
      if (void* old = ring[i % kSlots].exchange(magslab_malloc(64))) magslab_free(old);
  });
  for (size_t k = 0; k < 2; ++k)
    threads.emplace_back([&, k] {  // consumers: remote frees
      for (size_t i = k; !stop.load(std::memory_order_relaxed); i += 13)
        if (void* old = ring[i % kSlots].exchange(nullptr)) magslab_free(old);
    });
  magslab_stats(&g_before);
  size_t samples = 0, decreases = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < end && decreases < 20) {
    magslab_stats(&g_now);
    ++samples;
    for (size_t c = 0; c < g_now.class_count; ++c) {
      const magslab_class_stats &a = g_before.classes[c], &b = g_now.classes[c];
      const size_t before[] = {a.depot_gets,   a.depot_puts,    a.depot_overflows,
                               a.remote_frees, a.slab_refills,  a.slab_releases,
                               a.slabs_carved, a.slabs_returned};
      const size_t now[] = {b.depot_gets,   b.depot_puts,    b.depot_overflows, b.remote_frees,
                            b.slab_refills, b.slab_releases, b.slabs_carved,    b.slabs_returned};
      for (size_t k = 0; k < std::size(now); ++k) {
        if (now[k] < before[k]) {
          ADD_FAILURE() << "class " << c << " (" << b.object_size << " B), counter " << k
                        << " went from " << before[k] << " to " << now[k];
          ++decreases;
        }
      }
    }
    g_before = g_now;
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  for (auto& slot : ring) magslab_free(slot.exchange(nullptr));
  EXPECT_EQ(decreases, 0u) << "in " << samples << " samples";
  // Exact again at quiescence: the high-water mark kept no overcount.
  magslab_stats(&g_now);
  magslab_trim();  // this thread's remote magazines leave: counted as events
  magslab_stats(&g_before);
  for (size_t c = 0; c < g_now.class_count; ++c)
    EXPECT_EQ(g_before.classes[c].remote_frees, g_now.classes[c].remote_frees) << "class " << c;
}

// A thread's magazines of large classes (above 64 KiB) are capped
// (thread_large_bytes): past the cap, a large class's slow path sends the
// other large classes' magazines away — a remote one too, whose frees were
// not counted as it left: remote_frees read 1 after another thread's free of
// a 900 KiB block, 0 after that thread used three other large classes, and 0
// for good after it exited. (No statistics are read between the free and the
// end: the floor of what was reported would hide the loss.)
TEST(StatsMonotonic, ALargeClassRemoteMagazineSentAwayByTheCapKeepsItsFrees) {
  constexpr size_t kRemoteSize = size_t{900} << 10;
  const unsigned cls = magslab::class_of(kRemoteSize);
  magslab_stats(&g_before);
  const size_t before = g_before.classes[cls].remote_frees;
  void* block = magslab_malloc(kRemoteSize);  // this thread refills its slab
  ASSERT_NE(block, nullptr);
  std::atomic<int> phase{0};
  std::thread t([&] {
    magslab_free(block);  // another thread's object: into the remote magazine
    // Its own blocks of other large classes, past the cap.
    for (int round = 0; round < 4; ++round) {
      void* v[4];
      const size_t sizes[] = {size_t{300} << 10, size_t{400} << 10, size_t{500} << 10,
                              size_t{200} << 10};
      for (int i = 0; i < 4; ++i) v[i] = magslab_malloc(sizes[i]);
      for (void* p : v) magslab_free(p);
    }
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
  });
  while (phase.load() != 1) std::this_thread::yield();
  magslab_stats(&g_now);
  const size_t while_alive = g_now.classes[cls].remote_frees;
  phase.store(2);
  t.join();
  magslab_stats(&g_now);
  EXPECT_EQ(while_alive, before + 1) << "while the thread lives";
  EXPECT_EQ(g_now.classes[cls].remote_frees, before + 1) << "after the thread's exit";
}

}  // namespace
