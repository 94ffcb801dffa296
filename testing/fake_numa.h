// testing/fake_numa.h: a fake NUMA machine behind magslab's NUMA seam
// (numa::set_ops_for_testing): `nodes` nodes, each thread "pinned" to the node
// it chose with set_thread_node (0 until then), and an mbind that records its
// calls instead of making them. Never allocates; callable from any thread.
// Install it before the memory under test is allocated (numa.h: the node
// count only grows, and pools already in use stay valid).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mstest::fake_numa {

// A machine of `nodes` nodes (1..8); clears the records and the counters.
void install(unsigned nodes);

// The calling thread runs on `node` from now on (as if pinned there).
void set_thread_node(unsigned node);

// Calls magslab made: "which node am I on" (getcpu), and mbind.
uint64_t cpu_node_calls();
uint64_t bind_calls();

// The node the newest recorded bind covering p asked for, or -1 if none.
int bound_node(const void* p);

// The node pool of the chunk p lies in (ChunkMeta::node), or kNoChunk.
inline constexpr unsigned kNoChunk = 99;
unsigned chunk_node(const void* p);

}  // namespace mstest::fake_numa
