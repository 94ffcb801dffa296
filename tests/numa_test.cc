// NUMA awareness (issue #17) on a fake machine (testing/fake_numa.h, behind
// the platform's NUMA seam): per-node chunks, slab lists and depots; a
// thread takes memory from the node it runs on, bound to that node; a full
// magazine goes to the depot of its objects' node and a released object to
// its own node's slab, whoever does it; trim and decay reach every node; the
// option turns it all off; and a one-node machine asks the OS nothing.
// Each test runs in a process of its own (gtest_discover_tests under CTest;
// testing/own_process_main.cc when the binary is run whole), so the fake is
// installed before anything is allocated.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <cstdint>
#include <vector>

#include "chunks/page_heap.h"
#include "magslab/magslab.h"
#include "platform/numa.h"
#include "platform/options.h"
#include "small/depot.h"
#include "small/magazine.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "testing/fake_numa.h"
#include "testing/fake_os.h"
#include "testing/no_decay.h"  // exact depot and slab contents

namespace {

using namespace magslab;
namespace fake = mstest::fake_numa;
using fake::chunk_node;

size_t node_chunks(unsigned node) {
  LockGuard g(heap::g_lock);
  return heap::node_chunks_locked(node);
}

// Small blocks of several classes (one of them a large class) and page runs
// (an alignment beyond a page), allocated by the calling thread.
std::vector<void*> allocate_mix() {
  std::vector<void*> v;
  for (int i = 0; i < 3000; ++i) v.push_back(magslab_malloc(16 + (i % 64) * 24));
  for (int i = 0; i < 8; ++i) v.push_back(magslab_malloc(200 * 1024));
  for (int i = 0; i < 8; ++i) v.push_back(magslab_aligned_alloc(16384, 40000));
  return v;
}

TEST(Numa, OneNodeMachineKeepsOnePoolAndAsksTheOsNothing) {
  fake::install(1);
  EXPECT_EQ(numa::nodes(), 1u);
  fake::set_thread_node(0);
  for (int round = 0; round < 3; ++round) {
    std::vector<void*> v = allocate_mix();
    for (void* p : v) {
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(chunk_node(p), 0u);
    }
    for (void* p : v) magslab_free(p);
  }
  magslab_trim_all();
  // No getcpu on any path, no mbind: exactly the NUMA-unaware allocator.
  EXPECT_EQ(fake::cpu_node_calls(), 0u);
  EXPECT_EQ(fake::bind_calls(), 0u);
}

TEST(Numa, ThreadGetsMemoryOfTheNodeItRunsOnBoundToThatNode) {
  fake::install(2);
  ASSERT_EQ(numa::nodes(), 2u);
  for (unsigned node : {1u, 0u, 1u}) {
    // The thread moves to `node`; what it still holds in magazines stays
    // where it is (a migrating thread's cache is not emptied), so drop it.
    magslab_trim();
    fake::set_thread_node(node);
    std::vector<void*> v = allocate_mix();
    for (void* p : v) {
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(chunk_node(p), node) << p;
      ASSERT_EQ(fake::bound_node(p), static_cast<int>(node)) << p;
    }
    EXPECT_GT(slab::counts_on(class_of(16), node).slabs, 0u);
    EXPECT_GT(node_chunks(node), 0u);
    for (void* p : v) magslab_free(p);
  }
  EXPECT_GT(fake::cpu_node_calls(), 0u);
}

TEST(Numa, FullMagazineGoesToTheDepotOfItsObjectsNode) {
  fake::install(2);
  const unsigned cls = class_of(48);
  fake::set_thread_node(1);  // the caller runs on node 1, the objects are node 0's
  Magazine* m = depot::get_empty(cls, 1);
  ASSERT_NE(m, nullptr);
  set_mag_count(m, slab::refill(cls, m->objs, m->cap, 0, 0));
  ASSERT_EQ(m->count, m->cap);
  for (uint32_t i = 0; i < m->count; ++i) ASSERT_EQ(chunk_node(m->objs[i]), 0u);
  ASSERT_TRUE(depot::push_full(cls, m));
  EXPECT_EQ(depot::cached_objects_on(cls, 0), m->cap);
  EXPECT_EQ(depot::cached_objects_on(cls, 1), 0u);
  EXPECT_EQ(depot::cached_objects(cls), m->cap);  // stats sum the nodes
  EXPECT_EQ(depot::pop_full(cls, 1), nullptr);
  ASSERT_EQ(depot::pop_full(cls, 0), m);

  // A magazine mixing two nodes' objects is refused: the slabs take it, each
  // object to its own node.
  slab::release(cls, m->objs, m->count);
  uint32_t half = m->cap / 2;
  ASSERT_EQ(slab::refill(cls, m->objs, half, 0, 0), half);
  ASSERT_EQ(slab::refill(cls, m->objs + half, m->cap - half, 0, 1), m->cap - half);
  set_mag_count(m, m->cap);
  EXPECT_FALSE(depot::push_full(cls, m));
  EXPECT_EQ(depot::cached_objects(cls), 0u);
  slab::release(cls, m->objs, m->count);
  EXPECT_EQ(slab::counts_on(cls, 0).carved_objects, 0u);
  EXPECT_EQ(slab::counts_on(cls, 1).carved_objects, 0u);
}

TEST(Numa, SlabReleaseSendsEachObjectToItsOwnNodesSlab) {
  fake::install(2);
  const unsigned cls = class_of(256);
  const uint32_t n = 3 * kClasses[cls].objects;  // three slabs per node
  std::vector<void*> a(n), b(n), mixed;
  ASSERT_EQ(slab::refill(cls, a.data(), n, 0, 0), n);
  ASSERT_EQ(slab::refill(cls, b.data(), n, 0, 1), n);
  for (uint32_t i = 0; i < n; ++i) {
    ASSERT_EQ(chunk_node(a[i]), 0u);
    ASSERT_EQ(chunk_node(b[i]), 1u);
    mixed.push_back(b[i]);
    mixed.push_back(a[i]);
  }
  EXPECT_EQ(slab::counts_on(cls, 0).carved_objects, n);
  EXPECT_EQ(slab::counts_on(cls, 1).carved_objects, n);
  EXPECT_EQ(slab::counts(cls).carved_objects, 2 * size_t{n});
  fake::set_thread_node(0);
  slab::release(cls, mixed.data(), static_cast<uint32_t>(mixed.size()));
  for (unsigned node : {0u, 1u}) {
    slab::ClassCounts c = slab::counts_on(cls, node);
    EXPECT_EQ(c.carved_objects, 0u) << "node " << node;
    EXPECT_EQ(c.slabs, 1u) << "node " << node;  // its cached empty slab alone
    EXPECT_EQ(c.empty_cached_slabs, 1u) << "node " << node;
  }
  // Each node's slabs are whole again: a refill of node 1 gets node 1's.
  std::vector<void*> again(n);
  ASSERT_EQ(slab::refill(cls, again.data(), n, 0, 1), n);
  for (void* p : again) EXPECT_EQ(chunk_node(p), 1u);
  slab::release(cls, again.data(), n);
}

TEST(Numa, TrimAndDecayReachEveryNode) {
  fake::install(2);
  const unsigned cls = class_of(64);
  fake::set_thread_node(1);
  std::vector<void*> v;
  for (int i = 0; i < 20000; ++i) v.push_back(magslab_malloc(64));
  for (void* p : v) magslab_free(p);
  magslab_trim();  // this thread's magazines to the slabs; empty the depot
  EXPECT_EQ(slab::counts_on(cls, 1).carved_objects, 0u);

  // Decay: node 1's depot surplus and cached empty slab go back.
  v.clear();
  for (int i = 0; i < 20000; ++i) v.push_back(magslab_malloc(64));
  for (void* p : v) magslab_free(p);
  magslab_thread_idle();  // its magazines to node 1's depot
  ASSERT_GT(depot::cached_objects_on(cls, 1), 0u);
  for (int pass = 0; pass < 64 && depot::cached_objects_on(cls, 1) != 0; ++pass) {
    bool pending = false;
    depot::decay(&pending);
  }
  EXPECT_EQ(depot::cached_objects_on(cls, 1), 0u);
  ASSERT_EQ(slab::counts_on(cls, 1).empty_cached_slabs, 1u);
  bool pending = false;
  slab::decay(UINT64_MAX, 0, &pending);
  EXPECT_EQ(slab::counts_on(cls, 1).empty_cached_slabs, 0u);

  // trim_all: node 1's fully free chunks are unmapped too.
  ASSERT_GT(node_chunks(1), 0u);
  magslab_trim_all();
  EXPECT_EQ(node_chunks(1), 0u);
}

// A node whose chunks are used up, and for which the OS refuses a new one,
// takes a free run of another node's chunks (its memory is farther: locality,
// not correctness) instead of failing while that node's heap has free pages:
// a page run, and a slab, which stays in the class lists of the node it was
// carved for; both go back to their chunk's heap. Found by a bug-hunt helper
// (stop 39): NULL and ENOMEM before.
TEST(Numa, ANodeTheOsRefusesAChunkTakesAnotherNodesFreeRun) {
  fake::install(2);
  const unsigned cls = class_of(3500);  // a class nothing here used before
  fake::set_thread_node(0);
  // Node 0: page runs taken and given back (its chunks stay mapped, free),
  // and a slab of another class (so that slab records exist: metadata is
  // mapped too, and the fake OS below refuses every map).
  std::vector<void*> v;
  for (int i = 0; i < 14; ++i) v.push_back(magslab_aligned_alloc(8192, 512 * 1024));
  v.push_back(magslab_malloc(3000));
  for (void* p : v) {
    ASSERT_NE(p, nullptr);
    magslab_free(p);
  }
  ASSERT_EQ(node_chunks(1), 0u);
  mstest::fake_os::Guard os;
  mstest::fake_os::refuse_maps(true);
  fake::set_thread_node(1);
  void* run = magslab_aligned_alloc(8192, 512 * 1024);
  ASSERT_NE(run, nullptr) << "node 1 got nothing while node 0's heap had free pages";
  EXPECT_EQ(chunk_node(run), 0u);
  void* obj = magslab_malloc(3500);
  ASSERT_NE(obj, nullptr);
  EXPECT_EQ(chunk_node(obj), 0u);
  EXPECT_GT(slab::counts_on(cls, 1).slabs, 0u) << "the slab is node 1's";
  EXPECT_EQ(node_chunks(1), 0u);
  magslab_free(obj);
  magslab_free(run);
  mstest::fake_os::refuse_maps(false);
  magslab_trim_all();
  EXPECT_EQ(slab::counts_on(cls, 1).carved_objects, 0u);
}

TEST(Numa, OptionOffKeepsOnePoolOnATwoNodeMachine) {
  setenv("MAGSLAB_NUMA", "off", 1);
  opt::reset_for_testing();
  opt::load();
  ASSERT_EQ(opt::get(opt::kNuma), 0u);
  fake::install(2);
  EXPECT_EQ(numa::nodes(), 1u);
  fake::set_thread_node(1);
  std::vector<void*> v = allocate_mix();
  for (void* p : v) EXPECT_EQ(chunk_node(p), 0u);
  for (void* p : v) magslab_free(p);
  EXPECT_EQ(fake::cpu_node_calls(), 0u);
  EXPECT_EQ(fake::bind_calls(), 0u);
}

TEST(Numa, OptionSpellings) {
  const char* texts[] = {"0", "off", "1", "on", "auto", "2"};
  const uint64_t want[] = {0, 0, 1, 1, 2, 2};
  for (size_t i = 0; i < std::size(texts); ++i) {
    setenv("MAGSLAB_NUMA", texts[i], 1);
    opt::reset_for_testing();
    opt::load();
    EXPECT_EQ(opt::get(opt::kNuma), want[i]) << texts[i];
  }
  unsetenv("MAGSLAB_NUMA");
  opt::reset_for_testing();
  opt::load();
  EXPECT_EQ(opt::get(opt::kNuma), 2u);  // auto by default
  char buf[64];
  opt::format_value(opt::kNuma, buf, sizeof buf);
  EXPECT_STREQ(buf, "numa=auto");
  EXPECT_NE(magslab_option_set("numa", 0), 0);  // fixed once allocation starts
}

}  // namespace
