// Decay passes that take what other threads' caches share — previous
// magazines, inboxes, stashes — and flag idle classes, at every pass, while
// the owners use, send to and leave those caches (lib/small/thread_cache.cc,
// decay_stashes; stop 51's bug hunt, area: lock-free code and atomics).
//
// The passes here run with a clock one tick ahead at each call, so every
// pass finds the marks the previous one left a whole tick old: it takes the
// inbox magazines it found before, marks the classes it found unused stale
// and raises idle_flush, and so the owners' next slow paths give back their
// loaded and remote magazines. DecayMt.PassesNeverTouchWhatIsInUse runs its
// passes at one fixed time (an hour ahead), where no inbox or idle mark ever
// ages; the background thread ages them a tick at a time (100 ms). Beside
// them: owners that exit and threads that take their pooled caches,
// magslab_trim_all, and magslab_stats, which walks the stash lists and
// inboxes as they move. Every block keeps its stamp while live (no magazine is
// used by two threads), and at the end nothing is counted live.
#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "platform/platform.h"
#include "small/decay.h"
#include "testing/rng.h"
#include "testing/sanitizers.h"

namespace {

size_t live_objects() {
  struct magslab_stats st;
  magslab_stats(&st);
  return st.live_objects;
}

// A block's stamp: a random word first, its length in words next, the
// random word's complement last (blocks of 3 words or more). Written by its
// owner right after its malloc; a block handed to two threads at once, or
// given back while live, loses it.
void stamp(uint64_t* p, size_t words, uint64_t s) {
  p[0] = s;
  p[1] = words;
  p[words - 1] = ~s;
}
bool stamped(const uint64_t* p) {
  const uint64_t w = p[1];
  return w >= 3 && w <= 256 && p[w - 1] == ~p[0];
}
bool stamped(const uint64_t* p, uint64_t s) { return p[0] == s && stamped(p); }

#ifdef MS_SANITIZED
constexpr int kGenerations = 8, kRounds = 12;
#else
constexpr int kGenerations = 10, kRounds = 16;
#endif
constexpr int kThreads = 3, kPerRound = 300;

TEST(DecayTakesMt, PassesATickApartTakeSharedMagazinesWhileOwnersUseSendAndExit) {
  magslab_trim_all();
  const size_t live_before = live_objects();
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<uint64_t> passes{0};
  // One pass a tick later than the one before, as fast as they come.
  std::thread passer([&] {
    uint64_t now = magslab::platform::now_ns() + uint64_t{3600} * 1000 * 1000 * 1000;
    while (!stop.load(std::memory_order_relaxed)) {
      now += magslab::decay::kTickNs;
      magslab::decay::tick(now);
      passes.fetch_add(1, std::memory_order_relaxed);
      if (passes.load(std::memory_order_relaxed) % 16 == 0) magslab_trim_all();
      // The statistics walk every thread's stash lists and inboxes while
      // their owners and the passes move them (and trim_all hollows empty
      // magazines): a walk may count a magazine since handed on, but never
      // more than the threads could hold.
      struct magslab_stats st;
      magslab_stats(&st);
      if (st.thread_caches > 2 * kThreads + 4) bad.fetch_add(1);
      sched_yield();
    }
  });
  // A ring of slots: each thread leaves its blocks in its own row and frees
  // what its neighbour left in the next row, so full remote magazines go to a
  // running, exiting or gone owner's inbox.
  std::vector<std::atomic<uint64_t*>> ring(kThreads * kPerRound);
  for (auto& slot : ring) slot.store(nullptr);
  for (int g = 0; g < kGenerations; ++g) {
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
      ts.emplace_back([&, t, g] {
        mstest::Rng r(static_cast<uint64_t>(g * kThreads + t) * 131 + 7);
        std::vector<std::pair<uint64_t*, uint64_t>> own;  // own overflow: the stash
        auto checked_free = [&](uint64_t* p) {
          if (!stamped(p)) bad.fetch_add(1);
          magslab_free(p);
        };
        for (int round = 0; round < kRounds; ++round) {
          // A class per round of a few, so that others go idle meanwhile.
          const size_t base = size_t{16} << (round % 4);
          for (int i = 0; i < kPerRound; ++i) {
            const size_t n = base + 8 + 16 * r.below(4);
            auto* mine = static_cast<uint64_t*>(magslab_malloc(n));
            if (mine == nullptr) {
              bad.fetch_add(1);
              return;
            }
            stamp(mine, n / 8, r.next());
            // acq_rel: the block's stamp to the taker, the taken one's to us.
            if (uint64_t* left = ring[static_cast<size_t>(t * kPerRound + i)].exchange(
                    mine, std::memory_order_acq_rel))
              checked_free(left);  // still here: the neighbour did not take it
            if (uint64_t* theirs =
                    ring[static_cast<size_t>(((t + 1) % kThreads) * kPerRound + i)].exchange(
                        nullptr, std::memory_order_acq_rel))
              checked_free(theirs);
            for (int k = 0; k < 4; ++k) {
              auto* o = static_cast<uint64_t*>(magslab_malloc(n));
              if (o == nullptr) {
                bad.fetch_add(1);
                return;
              }
              const uint64_t s = r.next();
              stamp(o, n / 8, s);
              own.emplace_back(o, s);
            }
          }
          // A burst of own frees: loaded, previous, stash, depot.
          for (auto [o, s] : own) {
            if (!stamped(o, s)) bad.fetch_add(1);
            magslab_free(o);
          }
          own.clear();
          // Every other round, idle for three passes: they take its previous
          // magazines, stashes and inbox magazines, and flag its classes stale;
          // the next round's slow paths then meet what they left.
          if (round % 2 == 1) {
            const uint64_t until = passes.load(std::memory_order_relaxed) + 3;
            while (passes.load(std::memory_order_relaxed) < until &&
                   !stop.load(std::memory_order_relaxed))
              sched_yield();
          }
        }
      });
    for (auto& th : ts) th.join();
  }
  stop.store(true);
  passer.join();
  for (auto& slot : ring)
    if (uint64_t* p = slot.exchange(nullptr)) {
      if (!stamped(p)) bad.fetch_add(1);
      magslab_free(p);
    }
  EXPECT_EQ(bad.load(), 0) << "a block lost its stamp while live, or a malloc failed";
  EXPECT_GT(passes.load(), 10u);
  magslab_trim_all();
  EXPECT_EQ(live_objects(), live_before);
}

}  // namespace
