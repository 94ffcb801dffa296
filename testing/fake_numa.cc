// testing/fake_numa.cc: see fake_numa.h.
#include "testing/fake_numa.h"

#include <atomic>

#include "chunks/chunk_map.h"
#include "platform/numa.h"

namespace mstest::fake_numa {

namespace {

namespace numa = magslab::numa;

// relaxed throughout: counters and a record table read by the test after the
// threads that wrote them were joined (join orders them).
std::atomic<unsigned> g_nodes{1};
std::atomic<uint64_t> g_cpu_node_calls{0};
constinit thread_local unsigned t_node = 0;

struct Bind {
  std::atomic<uintptr_t> addr{0};
  std::atomic<size_t> size{0};
  std::atomic<unsigned> node{0};
};
constexpr size_t kMaxBinds = 1 << 14;
Bind g_binds[kMaxBinds];
std::atomic<size_t> g_nbinds{0};

unsigned fake_node_count() { return g_nodes.load(std::memory_order_relaxed); }

unsigned fake_cpu_node() {
  g_cpu_node_calls.fetch_add(1, std::memory_order_relaxed);
  return t_node;
}

bool fake_bind(void* addr, size_t size, unsigned node) {
  size_t i = g_nbinds.fetch_add(1, std::memory_order_relaxed);
  if (i < kMaxBinds) {
    g_binds[i].addr.store(reinterpret_cast<uintptr_t>(addr), std::memory_order_relaxed);
    g_binds[i].size.store(size, std::memory_order_relaxed);
    g_binds[i].node.store(node, std::memory_order_relaxed);
  }
  return true;
}

constexpr numa::NumaOps kFake{fake_node_count, fake_cpu_node, fake_bind};

}  // namespace

void install(unsigned nodes) {
  g_nodes.store(nodes, std::memory_order_relaxed);
  g_cpu_node_calls.store(0, std::memory_order_relaxed);
  g_nbinds.store(0, std::memory_order_relaxed);
  numa::set_ops_for_testing(&kFake);
}

void set_thread_node(unsigned node) { t_node = node; }

uint64_t cpu_node_calls() { return g_cpu_node_calls.load(std::memory_order_relaxed); }
uint64_t bind_calls() { return g_nbinds.load(std::memory_order_relaxed); }

int bound_node(const void* p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  size_t n = g_nbinds.load(std::memory_order_relaxed);
  if (n > kMaxBinds) n = kMaxBinds;
  for (size_t i = n; i-- > 0;) {
    uintptr_t b = g_binds[i].addr.load(std::memory_order_relaxed);
    if (a >= b && a - b < g_binds[i].size.load(std::memory_order_relaxed))
      return static_cast<int>(g_binds[i].node.load(std::memory_order_relaxed));
  }
  return -1;
}

unsigned chunk_node(const void* p) {
  magslab::ChunkMeta* c = magslab::pagemap::lookup(reinterpret_cast<uintptr_t>(p)).chunk();
  return c != nullptr ? c->node : kNoChunk;
}

}  // namespace mstest::fake_numa
