// Property-based test of the C API's invariants (issue #12), several threads:
// each thread runs its own RapidCheck-generated operation sequence
// (tests/model/heap_model.h) at the same time as the others, and hands some
// of its blocks over to the others through a shared mailbox (the receiver
// verifies, reallocates and frees them: remote frees). The interval set of
// live blocks is shared, so a block handed to two threads at once is caught
// whichever threads own them; contents, alignment and usable sizes are checked
// as in the single-thread property. At the end every block, including those
// left in the mailbox, is verified and freed. The stats balance is only
// checked in the single-thread property (magslab_stats is exact only when no
// thread is allocating).
#include <gtest/gtest.h>

#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "model/heap_model.h"
#include "model/rc_support.h"
#include "testing/sanitizers.h"

namespace {

using namespace magslab_model;

constexpr int kThreads = 4;
#ifdef MS_SANITIZED
constexpr int kCases = 60;
#else
constexpr int kCases = 300;
#endif
constexpr int kMaxSize = 100;  // up to 2 * kMaxSize operations per thread

TEST(HeapPropertyMt, ConcurrentSequencesWithHandoff) {
  uint64_t seed_base = uint64_t{1} << 40;
  check_property(
      [&] {
        std::vector<std::vector<Op>> seqs;
        for (int t = 0; t < kThreads; ++t)
          seqs.push_back(*rc::gen::scale(2.0, rc::gen::container<std::vector<Op>>(gen_op(true))));
        IntervalSet intervals;
        Mailbox mailbox;
        Config cfg;  // no strict reuse, no stats: other threads run meanwhile
        std::vector<std::unique_ptr<Interpreter>> models;
        for (int t = 0; t < kThreads; ++t) {
          models.push_back(std::make_unique<Interpreter>(intervals, &mailbox, cfg, seed_base));
          seed_base += uint64_t{1} << 24;
        }
        std::latch start(kThreads);
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
          threads.emplace_back([&, t] {
            start.arrive_and_wait();
            if (models[t]->run(seqs[t])) models[t]->free_all();
          });
        }
        for (auto& th : threads) th.join();
        std::string errors;
        for (int t = 0; t < kThreads; ++t)
          if (models[t]->failed())
            errors += "thread " + std::to_string(t) + ": " + models[t]->error() + "\n";
        if (!errors.empty()) RC_FAIL(errors);
        // Blocks still in the mailbox: verified and freed by this thread.
        Interpreter rest(intervals, nullptr, cfg, seed_base);
        for (const Block& b : mailbox.drain())
          if (!rest.adopt(b)) RC_FAIL(rest.error());
        if (!rest.free_all()) RC_FAIL(rest.error());
        RC_ASSERT(intervals.size() == 0u);
      },
      kCases, kMaxSize);
}

}  // namespace
