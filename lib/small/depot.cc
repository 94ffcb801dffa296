// small/depot: the lock-free magazine exchange.
#include "small/depot.h"

#include <new>

#include "chunks/decay_event.h"
#include "chunks/meta_arena.h"
#include "platform/check.h"
#include "platform/numa.h"
#include "platform/options.h"
#include "small/slab.h"
#include "stats/events.h"

namespace magslab {

namespace depot {
namespace {

// The most full magazines a class keeps in the depot: about 1 MiB of objects,
// at least 4 magazines (8 for a large class: up to 8 MiB of 1 MiB blocks).
// More than that is returned to the slabs, so memory freed by a thread that
// exits or stops allocating becomes reclaimable. 1 MiB, not less: a burst that
// frees 10,000 × 64 B and allocates them again then stays in magazines instead
// of going through the slab bitmaps under the class lock (256 KiB: 118 → 79
// instructions per pair; macro workloads' peak RSS unchanged —
// docs/benchmarks.md, "Depot limit per class"). 8 for large classes: their
// magazines hold one or two blocks, and a producer handing 1 MiB blocks to a
// consumer through a 16-slot ring overflowed a 2-magazine depot into the
// slabs and the page heap (madvise and chunk maps: 0.4 M blocks/s; 2.2 with 8,
// docs/benchmarks.md, "Large blocks"). Worst case, a program that frees blocks
// of every large class at once leaves about 52 MiB here until magslab_trim().
// (Option depot_bytes, default 1 MiB: a division per magazine handed over.)
int64_t limit_for(unsigned cls) {
  int64_t per_mag = int64_t{mag_cap(cls)} * kClasses[cls].size;
  int64_t n = static_cast<int64_t>(opt::get(opt::kDepotBytes)) / per_mag;
  int64_t min = cls >= kNumSmallClasses ? 8 : 4;
  return n < min ? min : n;
}

struct alignas(kCacheLine) DepotClass {
  TaggedStack full;
  TaggedStack empty;
  // relaxed: counters for the limit and for stats; the stacks themselves carry
  // the synchronisation of the magazines' contents.
  std::atomic<int64_t> nfull{0};
  std::atomic<int64_t> full_objects{0};
  // The lowest nfull since the last decay pass (lowered by pop_full, reset by
  // decay). relaxed: a heuristic; a stale value only moves a magazine early
  // or late.
  std::atomic<int64_t> low{0};
};

// [node][class]; with one node, g_depot[0] alone is used.
DepotClass g_depot[numa::kMaxNodes][kNumClasses];

// The node whose depot may hold m: its objects' node, or -1 if they are of
// several nodes. One node: 0, without looking.
int home_of(const Magazine* m) {
  if (numa::nodes() == 1) return 0;
  return slab::home_node(m->objs, m->count);
}

Magazine* as_magazine(StackLink* l) { return reinterpret_cast<Magazine*>(l); }

}  // namespace

Magazine* pop_full(unsigned cls, unsigned node) {
  DepotClass& d = g_depot[node][cls];
  Magazine* m = as_magazine(d.full.pop());
  if (m != nullptr) {
    int64_t n = d.nfull.fetch_sub(1, std::memory_order_relaxed) - 1;
    d.full_objects.fetch_sub(m->count, std::memory_order_relaxed);
    int64_t lo = d.low.load(std::memory_order_relaxed);
    while (n < lo && !d.low.compare_exchange_weak(lo, n, std::memory_order_relaxed)) {
    }
    stats::count(cls, stats::kDepotGet);
  }
  return m;
}

bool push_full(unsigned cls, Magazine* m) {
  MAGSLAB_CHECK(m->count > 0 && m->count <= m->cap && m->cls == cls, "depot: bad full magazine");
  int home = home_of(m);
  if (home < 0) return false;  // mixed nodes: the slabs sort it out, object by object
  DepotClass& d = g_depot[home][cls];
  if (d.nfull.fetch_add(1, std::memory_order_relaxed) >= limit_for(cls)) {
    d.nfull.fetch_sub(1, std::memory_order_relaxed);
    stats::count(cls, stats::kDepotOverflow);
    return false;
  }
  d.full_objects.fetch_add(m->count, std::memory_order_relaxed);
  d.full.push(&m->link);
  decay_event::note();
  stats::count(cls, stats::kDepotPut);
  return true;
}

Magazine* get_empty(unsigned cls, unsigned node) {
  if (StackLink* l = g_depot[node][cls].empty.pop()) return as_magazine(l);
  uint32_t cap = mag_cap(cls);
  void* mem = meta::alloc(sizeof(Magazine) + cap * sizeof(void*));
  if (mem == nullptr) return nullptr;
  auto* m = new (mem) Magazine();
  m->cap = cap;
  m->cls = cls;
  m->free_key = g_free_key.load(std::memory_order_relaxed);
  return m;
}

void push_empty(unsigned cls, Magazine* m, unsigned node) {
  MAGSLAB_CHECK(m->count == 0 && m->cap != 0 && m->cls == cls, "depot: bad empty magazine");
  g_depot[node][cls].empty.push(&m->link);
}

size_t cached_objects_on(unsigned cls, unsigned node) {
  if (node >= numa::kMaxNodes) return 0;
  int64_t n = g_depot[node][cls].full_objects.load(std::memory_order_relaxed);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

size_t cached_objects(unsigned cls) {
  size_t sum = 0;
  for (unsigned node = 0, n = numa::nodes(); node < n; ++node) sum += cached_objects_on(cls, node);
  return sum;
}

// Flush one full magazine of class c of node `node` to the slabs; false if
// there was none.
bool flush_one(unsigned c, unsigned node, size_t* moved) {
  Magazine* m = pop_full(c, node);
  if (m == nullptr) return false;
  slab::release(c, m->objs, m->count);
  *moved += m->count;
  set_mag_count(m, 0);
  push_empty(c, m, node);
  return true;
}

// Every node that may hold magazines: numa::nodes() never decreases, so none
// is missed.
size_t decay(bool* pending) {
  size_t moved = 0;
  for (unsigned node = 0, nodes = numa::nodes(); node < nodes; ++node) {
    for (unsigned c = 0; c < kNumClasses; ++c) {
      DepotClass& d = g_depot[node][c];
      int64_t idle = d.low.load(std::memory_order_relaxed);
      for (int64_t k = (idle + 1) / 2; k > 0 && flush_one(c, node, &moved); --k) {
      }
      int64_t now = d.nfull.load(std::memory_order_relaxed);
      d.low.store(now, std::memory_order_relaxed);
      if (now > 0) *pending = true;
    }
  }
  return moved;
}

size_t drain() {
  size_t moved = 0;
  for (unsigned node = 0, nodes = numa::nodes(); node < nodes; ++node)
    for (unsigned c = 0; c < kNumClasses; ++c)
      while (flush_one(c, node, &moved)) {
      }
  return moved;
}

}  // namespace depot
}  // namespace magslab
