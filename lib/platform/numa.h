// platform/numa: the machine's NUMA topology as the layers above see it — how
// many node pools magslab keeps, which one the calling thread runs on, and
// binding memory to a node. On a one-node machine (or with MAGSLAB_NUMA=off)
// nodes() is 1, current_node() returns 0 without a system call and bind()
// does nothing: every per-node structure above is then its node-0 element
// alone, exactly the single-pool allocator (docs/design.md, "NUMA").
//
// Topology: /sys/devices/system/node/online (read once, no allocation); the
// calling thread's node: getcpu() (the vDSO, no system call); binding: the
// mbind system call with MPOL_PREFERRED. No libnuma. Tests replace all three
// through NumaOps (the seam), e.g. a fake two-node machine.
#pragma once

#include <atomic>
#include <cstddef>

namespace magslab::numa {

// Per-node structures are arrays of this many elements. Node ids at or above
// it share pools (id % kMaxNodes); binding then uses the pool's index.
inline constexpr unsigned kMaxNodes = 8;

// The replaceable part. None may allocate.
struct NumaOps {
  unsigned (*node_count)();                              // highest online node id + 1
  unsigned (*cpu_node)();                                // node of the CPU this thread runs on
  bool (*bind)(void* addr, size_t size, unsigned node);  // prefer node for these pages
};
const NumaOps& os_ops();
// Install `ops` (tests only; nullptr: the real machine) and raise nodes() to
// its node count (MAGSLAB_NUMA permitting). Call before the memory under test
// is allocated; pools already in use stay valid (nodes() never decreases).
// Returns the previous ops.
const NumaOps* set_ops_for_testing(const NumaOps* ops);

// Node pools in use, 1..kMaxNodes. Never decreases: every node index below it
// may own chunks, slabs and depot magazines, so loops over nodes go this far.
// relaxed: one word, set by init() (before the first allocation is served,
// from opt::load) or a test; the per-node state it indexes is statically
// allocated, so a thread that still reads 1 just uses pool 0.
extern std::atomic<unsigned> g_nodes;
inline unsigned nodes() { return g_nodes.load(std::memory_order_relaxed); }

// Read the MAGSLAB_NUMA option and the topology; set nodes(). Called once by
// opt::load() after the options are parsed. Never allocates.
void init();

// The pool index of the node the calling thread runs on now (0 when nodes()
// is 1, without asking the OS). Slow paths only: it may be stale as soon as
// it returns (the thread can migrate), which costs locality, never correctness.
unsigned current_node();

// Ask the OS to place [addr, addr+size) on pool `node`'s node. Nothing when
// nodes() is 1. false when the OS refuses (the memory stays usable, unbound).
bool bind(void* addr, size_t size, unsigned node);

}  // namespace magslab::numa
