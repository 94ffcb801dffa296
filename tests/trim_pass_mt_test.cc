// magslab_trim_all while a decay pass runs (small/decay.cc): a pass that took
// a magazine out of the depot (or an idle thread's inbox, stash or previous
// slot) before the trim looked there gave it back to its slabs after the trim
// had emptied the slabs' caches, and the emptied slab stayed cached: right
// after magslab_trim_all, a class that only an idle, exited thread had used
// still held a slab. InboxRecycledMt's `slabs == 0` could fail so (the
// background thread's passes overlap the test's last trim only now and then;
// here another thread runs passes back to back, and 150 trims left a slab 1
// to 8 times in each of 6 runs under ThreadSanitizer before the fix, in none
// of 10 after). Now trim and trim_all hold passes off, as magslab_stats does.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "platform/platform.h"
#include "small/decay.h"
#include "small/size_classes.h"

namespace {

// 3000 B: a class nothing else in this binary uses (magazine capacity 10).
constexpr size_t kSize = 3000;
constexpr int kTrims = 150;

TEST(TrimPassMt, TrimAllWhilePassesRunLeavesNoSlabOfAnIdleClass) {
  const unsigned cls = magslab::class_of(kSize);
  std::atomic<bool> stop{false};
  // Passes back to back, as the background thread runs one a tick: each
  // decays a part of the depot (its magazines back to their slabs).
  std::thread passer([&] {
    while (!stop.load(std::memory_order_relaxed)) magslab::decay::tick(magslab::platform::now_ns());
  });
  int left = 0;
  for (int i = 0; i < kTrims; ++i) {
    // 30 magazines of the class to the depot, from a thread that then exits.
    std::thread([] {
      std::vector<void*> v(300);
      for (void*& p : v) p = magslab_malloc(kSize);
      for (void* p : v) magslab_free(p);
      magslab_thread_idle();
    }).join();
    magslab_trim_all();
    struct magslab_stats s {};
    magslab_stats(&s);
    if (s.classes[cls].slabs != 0) ++left;
  }
  stop.store(true);
  passer.join();
  EXPECT_EQ(left, 0) << "trims of " << kTrims << " that left a slab of the class";
}

}  // namespace
