// Multithreaded stress of the tagged Treiber stack (lib/ds/tagged_stack.h).
//
// N threads (2, 4, 8, 16) repeatedly pop k nodes (k = 1..4) and push them back.
// Nodes come from a fixed array (type-stable, like magslab's metadata), fewer
// than threads * 4, so the stack runs empty and nodes circulate quickly between
// threads: the setting in which ABA and lost/duplicated nodes show up. Half
// the pops go through pop_with_hook with a hook that sometimes yields inside
// the read-next/CAS window, so that ABA interleavings really occur.
//
// Each node has an atomic "owned" flag, which must go 0 -> 1 when a thread pops
// it and 1 -> 0 before it is pushed back: a pop that returns a node another
// thread still holds (handed out twice) fails the exchange. The owner field is
// written with a plain store after the pop and read back before the push: if
// the stack did not order a push before the pop that returns the node, TSan
// reports the race. At the end every node is in the stack exactly once.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "ds/tagged_stack.h"

#include "testing/rng.h"
#include "testing/sanitizers.h"
#include "testing/threads.h"

namespace {

using magslab::StackLink;
using magslab::TaggedStack;

#ifdef MS_SANITIZED
constexpr long kTotalOpsPerRun = 300'000;  // pop+push batches over all threads
#else
constexpr long kTotalOpsPerRun = 1'500'000;
#endif

constexpr int kMaxBatch = 4;

struct Node {
  StackLink link;             // first: a StackLink* is the Node*
  std::atomic<int> owned{0};  // 1 while a thread holds it
  int owner = -1;             // plain: written by the holder only
  uint64_t uses = 0;          // plain: how often it was handed out
};

struct Failures {
  std::atomic<long> double_handout{0};  // popped while owned by someone
  std::atomic<long> lost_ownership{0};  // owned flag cleared by someone else
  std::atomic<long> wrong_owner{0};     // owner field changed while we held it
  std::atomic<long> foreign_node{0};    // pop returned a pointer not in the array
};

// Called by pop_with_hook between the read of top->next and the CAS: yielding
// there now and then lets other threads pop and push in that window, which is
// where ABA happens (a stale CAS that succeeds would hand a node out twice).
void maybe_yield(void* arg) {
  auto* rng = static_cast<mstest::Rng*>(arg);
  if ((*rng)() % 8 == 0) std::this_thread::yield();
}

void run_stress(int nthreads) {
  const size_t nnodes = static_cast<size_t>(nthreads) * kMaxBatch / 2 + 1;  // < threads * k
  std::vector<Node> nodes(nnodes);
  TaggedStack stack;
  for (Node& n : nodes) stack.push(&n.link);

  Failures f;
  std::atomic<long> empty_pops{0};
  std::atomic<long> total_popped{0};
  mstest::StartGate go;
  const long batches_per_thread = kTotalOpsPerRun / nthreads;

  auto worker = [&](int id) {
    mstest::Rng rng(static_cast<unsigned>(id) * 7919u + 1);
    Node* held[kMaxBatch];
    long popped = 0, empties = 0;
    go.wait();
    for (long it = 0; it < batches_per_thread; ++it) {
      int k = 1 + static_cast<int>(rng() % kMaxBatch);
      int got = 0;
      for (int i = 0; i < k; ++i) {
        StackLink* l = (rng() & 1) != 0 ? stack.pop() : stack.pop_with_hook(maybe_yield, &rng);
        if (l == nullptr) {
          ++empties;
          break;
        }
        Node* n = reinterpret_cast<Node*>(l);
        if (n < nodes.data() || n >= nodes.data() + nodes.size()) {
          f.foreign_node.fetch_add(1);
          return;  // cannot touch it safely
        }
        if (n->owned.exchange(1, std::memory_order_relaxed) != 0) {
          f.double_handout.fetch_add(1);
        }
        n->owner = id;  // plain store: races (TSan) if the node is shared
        ++n->uses;
        held[got++] = n;
      }
      popped += got;
      // Hold the nodes a little while so that others run into the empty stack.
      if ((it & 7) == 0) std::this_thread::yield();
      for (int i = got - 1; i >= 0; --i) {
        Node* n = held[i];
        if (n->owner != id) f.wrong_owner.fetch_add(1);
        if (n->owned.exchange(0, std::memory_order_relaxed) != 1) f.lost_ownership.fetch_add(1);
        stack.push(&n->link);
      }
    }
    empty_pops.fetch_add(empties);
    total_popped.fetch_add(popped);
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t) threads.emplace_back(worker, t);
  go.open();
  for (auto& t : threads) t.join();

  EXPECT_EQ(f.foreign_node.load(), 0) << "pop returned a pointer that was never pushed";
  EXPECT_EQ(f.double_handout.load(), 0) << "a node was handed to two threads at once";
  EXPECT_EQ(f.lost_ownership.load(), 0);
  EXPECT_EQ(f.wrong_owner.load(), 0);
  EXPECT_GT(total_popped.load(), batches_per_thread) << "the threads did no work";

  // Every node is in the stack exactly once, and nothing else is.
  std::vector<int> seen(nnodes, 0);
  size_t count = 0;
  uint64_t uses = 0;
  while (StackLink* l = stack.pop()) {
    Node* n = reinterpret_cast<Node*>(l);
    ASSERT_TRUE(n >= nodes.data() && n < nodes.data() + nodes.size()) << "foreign node";
    size_t idx = static_cast<size_t>(n - nodes.data());
    ++seen[idx];
    EXPECT_EQ(n->owned.load(), 0) << "node " << idx << " still marked owned";
    uses += n->uses;
    ASSERT_LE(++count, nnodes) << "more pops than nodes: the stack holds a node twice or a cycle";
  }
  EXPECT_EQ(count, nnodes) << "nodes lost by the stack";
  for (size_t i = 0; i < nnodes; ++i) EXPECT_EQ(seen[i], 1) << "node " << i;
  // Each handout was counted by the thread that held the node.
  EXPECT_EQ(uses, static_cast<uint64_t>(total_popped.load()));
  EXPECT_TRUE(stack.empty());
  ::testing::Test::RecordProperty("empty_pops", static_cast<int>(empty_pops.load()));
}

class TaggedStackStress : public ::testing::TestWithParam<int> {};

TEST_P(TaggedStackStress, PopPushNoDoubleHandoutNoLoss) { run_stress(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Threads, TaggedStackStress, ::testing::Values(2, 4, 8, 16),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::to_string(i.param) + "threads";
                         });

// Single-node ping-pong: two threads fight over one node, the tightest ABA
// window (the same node is the top over and over).
TEST(TaggedStackStress, SingleNodePingPong) {
  TaggedStack stack;
  Node node;
  stack.push(&node.link);
  std::atomic<long> doubles{0}, got_total{0};
#ifdef MS_SANITIZED
  const long iters = 100'000;
#else
  const long iters = 400'000;
#endif
  auto worker = [&](int id) {
    long got = 0;
    for (long i = 0; i < iters; ++i) {
      StackLink* l = stack.pop();
      if (l == nullptr) continue;
      Node* n = reinterpret_cast<Node*>(l);
      if (n != &node || n->owned.exchange(1, std::memory_order_relaxed) != 0) doubles.fetch_add(1);
      n->owner = id;
      ++got;
      if (n->owner != id) doubles.fetch_add(1);
      n->owned.store(0, std::memory_order_relaxed);
      stack.push(l);
    }
    got_total.fetch_add(got);
  };
  std::thread a(worker, 0), b(worker, 1), c(worker, 2);
  a.join();
  b.join();
  c.join();
  EXPECT_EQ(doubles.load(), 0);
  EXPECT_GT(got_total.load(), 0);
  EXPECT_EQ(stack.pop(), &node.link);
  EXPECT_EQ(stack.pop(), nullptr);
}

}  // namespace
