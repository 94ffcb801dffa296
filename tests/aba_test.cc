// Deterministic ABA test of the tagged Treiber stack (lib/ds/tagged_stack.h).
//
// The classic ABA interleaving is replayed in one thread through
// pop_with_hook(): the hook runs inside the popper's window, after it has read
// top (A) and A->next (B) but before its CAS. In that window the "other thread"
// (the hook) pops A, pops B and pushes A back: the top is A again, B is gone.
//
//   tagged:   the head is (A, tag+3), the popper expected (A, tag): the CAS
//             fails, the pop retries, returns A, and the stack holds [C].
//   untagged: the CAS compares only the pointer, succeeds and installs B — a
//             node that is no longer in the stack — as the new top: the stack
//             then reads [B, C].
//
// CMake builds this file a second time with MAGSLAB_TEST_NO_ABA_TAG=1 as
// aba_untagged_test and registers it with WILL_FAIL: the ABA test must fail
// there, which proves it detects ABA.
#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include "ds/tagged_stack.h"

#ifndef MAGSLAB_TEST_NO_ABA_TAG
#define MAGSLAB_TEST_NO_ABA_TAG 0
#endif

namespace {

constexpr bool kTagged = !MAGSLAB_TEST_NO_ABA_TAG;
using Stack = magslab::TaggedStackT<kTagged>;
using magslab::StackLink;

struct Node {
  StackLink link;  // first member: a StackLink* is the Node*
  char name;
};
static_assert(offsetof(Node, link) == 0);

Node* as_node(StackLink* l) { return reinterpret_cast<Node*>(l); }

// Pops until empty; the names in pop order (top first). Bounded, so that a
// corrupted (cyclic) stack ends the test instead of looping forever.
std::string drain(Stack& s, size_t limit = 16) {
  std::string out;
  while (StackLink* l = s.pop()) {
    out.push_back(as_node(l)->name);
    if (out.size() > limit) break;
  }
  return out;
}

struct AbaState {
  Stack* stack;
  Node* a;
  Node* b;
  int calls = 0;          // times the hook ran
  bool replayed = false;  // the ABA interleaving was played (first call only)
  StackLink* popped_a = nullptr;
  StackLink* popped_b = nullptr;
};

void aba_hook(void* arg) {
  auto* st = static_cast<AbaState*>(arg);
  ++st->calls;
  if (st->replayed) return;  // act on the first call only
  st->replayed = true;
  // Another "thread" runs in the popper's window: pop A, pop B, push A.
  st->popped_a = st->stack->pop();
  st->popped_b = st->stack->pop();
  st->stack->push(&st->a->link);
}

TEST(TaggedStackAba, PopHookReplaysAbaAndTagRejectsStaleCas) {
  Stack s;
  Node a{{}, 'A'}, b{{}, 'B'}, c{{}, 'C'};
  s.push(&c.link);
  s.push(&b.link);
  s.push(&a.link);  // stack: A B C (top first)

  AbaState st{&s, &a, &b};
  StackLink* got = s.pop_with_hook(aba_hook, &st);

  // The hook did replay the interleaving as intended.
  ASSERT_TRUE(st.replayed);
  ASSERT_EQ(st.popped_a, &a.link) << "hook's first pop should have returned A";
  ASSERT_EQ(st.popped_b, &b.link) << "hook's second pop should have returned B";

  // The popper returns A (the top when its successful CAS happened)...
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(as_node(got)->name, 'A');

  // ...and the stack holds exactly [C]: B was taken by the "other thread" and
  // must not come back. Without the tag the stale CAS installs B as the top.
  std::string rest = drain(s);
  EXPECT_EQ(rest, "C") << "stack after the ABA interleaving (top first); 'B' here means the "
                          "stale CAS installed an already-popped node: ABA not prevented";
  EXPECT_EQ(rest.find('B'), std::string::npos) << "B was handed out twice";

  // With the tag the first CAS fails and the pop retries once: the hook runs twice.
  EXPECT_EQ(st.calls, 2) << "the CAS after the ABA window must fail and be retried exactly once";
  EXPECT_TRUE(s.empty());
}

TEST(TaggedStackAba, LifoOrder) {
  Stack s;
  std::vector<Node> nodes(10);
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].name = static_cast<char>('a' + i);
    s.push(&nodes[i].link);
    EXPECT_FALSE(s.empty());
  }
  EXPECT_EQ(drain(s), "jihgfedcba");
  EXPECT_TRUE(s.empty());

  // Interleaved pushes and pops keep LIFO order and lose nothing.
  s.push(&nodes[0].link);
  s.push(&nodes[1].link);
  EXPECT_EQ(s.pop(), &nodes[1].link);
  s.push(&nodes[2].link);
  s.push(&nodes[1].link);
  EXPECT_EQ(s.pop(), &nodes[1].link);
  EXPECT_EQ(s.pop(), &nodes[2].link);
  EXPECT_EQ(s.pop(), &nodes[0].link);
  EXPECT_EQ(s.pop(), nullptr);

  // A popped node can be pushed again (reuse, as the allocator does).
  s.push(&nodes[3].link);
  EXPECT_EQ(s.pop(), &nodes[3].link);
  s.push(&nodes[3].link);
  EXPECT_EQ(s.pop(), &nodes[3].link);
  EXPECT_TRUE(s.empty());
}

void count_hook(void* arg) { ++*static_cast<int*>(arg); }

TEST(TaggedStackAba, EmptyPop) {
  Stack s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.pop(), nullptr);
  int calls = 0;
  EXPECT_EQ(s.pop_with_hook(count_hook, &calls), nullptr);
  EXPECT_EQ(calls, 0) << "the hook runs only when there is a top to pop";
  EXPECT_TRUE(s.empty());

  // Becomes empty again after its only node is popped.
  Node n{{}, 'n'};
  s.push(&n.link);
  EXPECT_FALSE(s.empty());
  EXPECT_EQ(s.pop_with_hook(count_hook, &calls), &n.link);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.pop(), nullptr);
}

}  // namespace
