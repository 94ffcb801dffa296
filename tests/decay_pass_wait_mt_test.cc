// Without the background thread (background_thread=0), slow paths run the
// decay passes themselves when one is due (decay::maybe_tick). One due while
// another thread holds the pass lock — magslab_trim, magslab_trim_all
// (for their whole walk and madvise calls) or magslab_stats — is skipped,
// not waited for (stop 54's bug hunt).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/decay.h"

namespace {

using namespace magslab;
using Clock = std::chrono::steady_clock;

// A thread that allocates and frees batches of 64-byte blocks (past a
// magazine: slow paths every batch, so a due pass is claimed within a tick)
// for 300 ms, while this thread holds the pass lock as magslab_trim_all does
// (decay::NoPassScope). Before, its first slow path that found a pass due
// waited in maybe_tick for the lock, here for the 3 s the test held it
// (a trim_all that hollows 64 MiB of partial slabs holds it for 20 ms of CPU
// and more), and the test failed.
TEST(DecayPassWaitMt, ASlowPathDoesNotWaitForATrimToRunAPass) {
  ASSERT_EQ(magslab_option_set("background_thread", 0), 0);
  std::atomic<bool> done{false};
  auto trimming = std::make_unique<decay::NoPassScope>();
  std::thread worker([&] {
    std::vector<void*> v(2048);
    const auto end = Clock::now() + std::chrono::milliseconds(300);
    while (Clock::now() < end) {
      for (void*& p : v) p = magslab_malloc(64);
      for (void* p : v) magslab_free(p);
    }
    done.store(true);
  });
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  while (!done.load() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const bool in_time = done.load();
  trimming.reset();  // the "trim" ends: a worker that waited goes on
  worker.join();
  EXPECT_TRUE(in_time) << "a slow path waited for the pass lock";
  EXPECT_FALSE(decay::background_running());
}

}  // namespace
