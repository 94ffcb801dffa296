// small/depot: the lock-free magazine exchange.
#include "small/depot.h"

#include <new>

#include "base/lock.h"
#include "chunks/decay_event.h"
#include "chunks/meta_arena.h"
#include "platform/check.h"
#include "platform/numa.h"
#include "platform/options.h"
#include "platform/platform.h"
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
// docs/benchmarks.md, "Large blocks"). A program that frees blocks of every
// large class at once leaves about 52 MiB here, which decay gives back over
// its next passes (decay()); a large class may keep up to 16 MiB for a while
// (DepotClass::extra, below). (Option depot_bytes, default 1 MiB: a division
// per magazine handed over.)
//
// And a small class's magazines there take at most an eighth of depot_bytes
// in metadata (kDepotMetadataShare). A magazine is 2 KiB of metadata (256
// slots), made when a free needs an empty one and none is free, and kept for
// good; 1 MiB of objects fills 256 of them for 16 B objects (528 KiB), 128 for
// 32 B. A program that frees a large structure at its end (200,000 nodes of
// one class) made them for the depot: its RSS rose by 152-612 KiB while it
// freed (16-64 B objects; docs/benchmarks.md, stop 37). Now 62 magazines of
// the classes of 8-64 B (the 64 B burst above still fits: 15,872 objects);
// from 128 B (256 slots are 32 KiB) the objects' limit comes first.
constexpr int64_t kDepotMetadataShare = 8;

// Bytes of metadata a magazine of capacity cap takes (meta::alloc rounds up
// to a cache line: the next magazine made may start right there).
size_t magazine_bytes(uint32_t cap) {
  return align_up(sizeof(Magazine) + size_t{cap} * sizeof(void*), kCacheLine);
}

int64_t limit_for(unsigned cls) {
  const uint32_t cap = mag_cap(cls);
  const auto bytes = static_cast<int64_t>(opt::get(opt::kDepotBytes));
  int64_t n = bytes / (int64_t{cap} * kClasses[cls].size);
  if (cls < kNumSmallClasses) {
    int64_t most = bytes / kDepotMetadataShare / static_cast<int64_t>(magazine_bytes(cap));
    if (n > most) n = most;
  }
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
  // Large classes only: magazines this class may keep above limit_for(), and
  // whether push_full refused one since the last decay pass. A refusal sends
  // blocks to the slabs (one-block slabs: unpublished, their pages back to
  // the page heap); when a thread then finds the depot empty, it carves them
  // again, so the depot was too small for this traffic: each such refusal
  // followed by a miss allows one magazine more, up to kMaxLargeDepotBytes of
  // blocks in at most 64 magazines, and every decay pass halves the extra.
  // A producer handing 256 KiB buffers to a consumer through a 16-slot ring,
  // the consumer freeing in bursts, overflowed the 8 magazines at every
  // burst. What the extra keeps and nobody takes goes back with the depot's
  // decay like the rest. relaxed: heuristics, as low.
  std::atomic<int64_t> extra{0};
  std::atomic<bool> refused{false};
  // Empty magazines on `empty`, and how many were ever taken off it: for
  // decay_empty() to give back the pages of those nobody takes (a spike of
  // threads leaves thousands; stop 52). relaxed: heuristics, as low.
  std::atomic<int64_t> nempty{0};
  std::atomic<uint64_t> taken{0};
};

// The most blocks' bytes a large class's depot keeps with its extra.
constexpr int64_t kMaxLargeDepotBytes = int64_t{16} << 20;

int64_t max_extra(unsigned cls) {
  int64_t most = kMaxLargeDepotBytes / (int64_t{mag_cap(cls)} * kClasses[cls].size);
  int64_t n = (most < 64 ? most : 64) - limit_for(cls);
  return n > 0 ? n : 0;
}

// [node][class]; with one node, g_depot[0] alone is used.
DepotClass g_depot[numa::kMaxNodes][kNumClasses];

// The node whose depot may hold m: its objects' node, or -1 if they are of
// several nodes. One node: 0, without looking.
int home_of(const Magazine* m) {
  if (numa::nodes() == 1) return 0;
  return slab::home_node(m->objs, m->count);
}

Magazine* as_magazine(StackLink* l) { return reinterpret_cast<Magazine*>(l); }

// Hollow magazines: empty magazines whose first page hollow_empty() gave
// back. They are on no depot stack (pushing one would write its link into
// that page again); get_empty() takes them before making new ones. The list
// lives apart from them, in nodes of the metadata arena, recycled here.
struct HollowNode {
  Magazine* mag;
  uint32_t slots;
  HollowNode* next;
};
// One hollow_empty() at a time; it holds this one for its whole pass (the
// sort, the madvise calls). get_empty() never takes it.
Lock g_hollow_pass_lock;
// The lists below, held only for a few list operations: get_empty() takes
// it, so hollow_empty() builds its hollow magazines' list privately and
// takes it only to splice that in (stop 54's bug hunt: a taker waited for a
// whole pass, 6.2 ms for 30,000 magazines). Inside g_hollow_pass_lock.
Lock g_hollow_lock;
HollowNode* g_hollow[kNumClasses] = {};  // under g_hollow_lock
HollowNode* g_spare_nodes = nullptr;     // under g_hollow_lock
// Hollow magazines on the lists. relaxed: lets get_empty() skip the lock when
// there are none; a stale 0 only makes a new magazine instead.
std::atomic<size_t> g_hollow_count{0};

// The fields of a magazine of class cls with `slots` slots that get_empty()
// hands out (made, or hollow made whole): all its slots usable, the free key.
void set_identity(Magazine* m, unsigned cls, uint32_t slots) {
  m->cap = slots;
  m->cls = static_cast<uint16_t>(cls);
  m->slots = static_cast<uint16_t>(slots);
  m->free_key = g_free_key.load(std::memory_order_relaxed);
}

// A hollow magazine of class cls made whole again (count 0), or nullptr.
Magazine* take_hollow(unsigned cls) {
  if (g_hollow_count.load(std::memory_order_relaxed) == 0) return nullptr;
  Magazine* m;
  uint32_t slots;
  {
    LockGuard g(g_hollow_lock);
    HollowNode* h = g_hollow[cls];
    if (h == nullptr) return nullptr;
    // Read before the node goes to the spares: once the lock is dropped, a
    // hollow_empty() may take it for another magazine.
    m = h->mag;
    slots = h->slots;
    g_hollow[cls] = h->next;
    h->next = g_spare_nodes;
    g_spare_nodes = h;
    g_hollow_count.fetch_sub(1, std::memory_order_relaxed);
  }
  // Fields by stores, not a constructor: a pop that read this magazine off a
  // stack long ago may still load its link (ds/tagged_stack.h).
  m->link.next.store(nullptr, std::memory_order_relaxed);
  set_mag_count(m, 0);
  set_identity(m, cls, slots);
  return m;
}

// pop_full without the demand signal: for flushes, which pop until a miss.
Magazine* take_full(unsigned cls, unsigned node) {
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

}  // namespace

Magazine* pop_full(unsigned cls, unsigned node) {
  Magazine* m = take_full(cls, node);
  if (m == nullptr && cls >= kNumSmallClasses) {
    DepotClass& d = g_depot[node][cls];
    // relaxed: see DepotClass::extra. The load first keeps the common miss
    // (nothing refused) from writing the shared line.
    if (d.refused.load(std::memory_order_relaxed) &&
        d.refused.exchange(false, std::memory_order_relaxed) &&
        d.extra.load(std::memory_order_relaxed) < max_extra(cls))
      d.extra.fetch_add(1, std::memory_order_relaxed);
  }
  return m;
}

bool push_full(unsigned cls, Magazine* m) {
  MAGSLAB_CHECK(m->count > 0 && m->count <= m->cap && m->cls == cls, "depot: bad full magazine");
  int home = home_of(m);
  if (home < 0) return false;  // mixed nodes: the slabs sort it out, object by object
  DepotClass& d = g_depot[home][cls];
  if (d.nfull.fetch_add(1, std::memory_order_relaxed) >=
      limit_for(cls) + d.extra.load(std::memory_order_relaxed)) {
    d.nfull.fetch_sub(1, std::memory_order_relaxed);
    if (cls >= kNumSmallClasses) d.refused.store(true, std::memory_order_relaxed);
    stats::count(cls, stats::kDepotOverflow);
    return false;
  }
  d.full_objects.fetch_add(m->count, std::memory_order_relaxed);
  d.full.push(&m->link);
  decay_event::note();
  stats::count(cls, stats::kDepotPut);
  return true;
}

namespace {

// An empty magazine off d's stack, counted (nempty), or nullptr.
Magazine* pop_empty(DepotClass& d) {
  Magazine* m = as_magazine(d.empty.pop());
  if (m != nullptr) d.nempty.fetch_sub(1, std::memory_order_relaxed);
  return m;
}
// m onto d's stack of empty magazines, counted.
void put_empty(DepotClass& d, Magazine* m) {
  d.nempty.fetch_add(1, std::memory_order_relaxed);
  d.empty.push(&m->link);
}

}  // namespace

Magazine* get_empty(unsigned cls, unsigned node) {
  // Several nodes: another node's empty one before a new one. The emptier
  // gives a magazine back to its own node's stack, while its objects went to
  // theirs: a consumer on node 1 freeing a node-0 producer's blocks found
  // none on node 1 and made one at every trade, while the producer piled its
  // empties on node 0 (stop 53's bug hunt: 92 MiB of metadata in 5,400
  // rounds of NumaMt.ProducerAndConsumerOnTwoNodesReuseTheirEmptyMagazines).
  for (unsigned i = 0, n = numa::nodes(), o = node; i < n; ++i, o = o + 1 < n ? o + 1 : 0) {
    DepotClass& d = g_depot[o][cls];
    if (Magazine* m = pop_empty(d)) {
      d.taken.fetch_add(1, std::memory_order_relaxed);  // demand (hollowing's pops are not)
      return m;
    }
  }
  if (Magazine* m = take_hollow(cls)) return m;
  uint32_t cap = mag_cap(cls);
  void* mem = meta::alloc_apart(magazine_bytes(cap));
  if (mem == nullptr) return nullptr;
  auto* m = new (mem) Magazine();
  set_identity(m, cls, cap);
  return m;
}

void push_empty(unsigned cls, Magazine* m, unsigned node) {
  MAGSLAB_CHECK(m->count == 0 && m->cap != 0 && m->cls == cls, "depot: bad empty magazine");
  // All its slots again (a thread may have loaded it with fewer,
  // thread_cache.cc "Magazine limits").
  m->cap = m->slots;
  put_empty(g_depot[node][cls], m);
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
  Magazine* m = take_full(c, node);
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
      if (int64_t x = d.extra.load(std::memory_order_relaxed); x != 0)
        d.extra.store(x / 2, std::memory_order_relaxed);
      // Loaded first: most passes find nothing refused and write no line.
      if (d.refused.load(std::memory_order_relaxed))
        d.refused.store(false, std::memory_order_relaxed);
      int64_t idle = d.low.load(std::memory_order_relaxed);
      for (int64_t k = (idle + 1) / 2; k > 0 && flush_one(c, node, &moved); --k) {
      }
      int64_t now = d.nfull.load(std::memory_order_relaxed);
      // Stored only if it changed: a pass then writes no line of a class nobody
      // used (one that stored each dirtied all of g_depot in every process).
      if (now != idle) d.low.store(now, std::memory_order_relaxed);
      if (now > 0) *pending = true;
    }
  }
  return moved;
}

namespace {

// Singly linked lists of magazines through their links, while hollow_empty()
// owns them (off every stack).
Magazine* next_of(Magazine* m) { return as_magazine(m->link.next.load(std::memory_order_relaxed)); }
void set_next(Magazine* m, Magazine* n) {
  m->link.next.store(n == nullptr ? nullptr : &n->link, std::memory_order_relaxed);
}

// Sort list l by address (merge sort: no memory needed).
Magazine* sort_by_address(Magazine* l) {
  if (l == nullptr || next_of(l) == nullptr) return l;
  Magazine* mid = l;
  for (Magazine* fast = next_of(l); fast != nullptr && next_of(fast) != nullptr;
       fast = next_of(next_of(fast)))
    mid = next_of(mid);
  Magazine* b = next_of(mid);
  set_next(mid, nullptr);
  Magazine* a = sort_by_address(l);
  b = sort_by_address(b);
  Magazine* head = nullptr;
  Magazine* tail = nullptr;
  while (a != nullptr || b != nullptr) {
    Magazine*& from = b == nullptr || (a != nullptr && a < b) ? a : b;
    Magazine* m = from;
    from = next_of(m);
    if (tail == nullptr)
      head = m;
    else
      set_next(tail, m);
    tail = m;
  }
  set_next(tail, nullptr);
  return head;
}

// A node for the hollow lists off *spare (hollow_empty's private spares),
// more from the metadata arena when it has none; g_hollow_pass_lock held.
// nullptr when out of metadata.
HollowNode* new_hollow_node(HollowNode** spare) {
  if (*spare == nullptr) {
    constexpr size_t kBatch = kPageSize / sizeof(HollowNode);
    auto* nodes = static_cast<HollowNode*>(meta::alloc(kBatch * sizeof(HollowNode)));
    if (nodes == nullptr) return nullptr;
    for (size_t i = 0; i < kBatch; ++i) {
      nodes[i].next = *spare;
      *spare = &nodes[i];
    }
  }
  HollowNode* h = *spare;
  *spare = h->next;
  return h;
}

}  // namespace

size_t hollow_empty() {
  LockGuard pass(g_hollow_pass_lock);
  // What this pass makes hollow, per class, and the spare nodes it takes
  // them from: its own until the splice at the end, under g_hollow_lock.
  HollowNode* head[kNumClasses] = {};
  HollowNode* tail[kNumClasses] = {};
  size_t made = 0;
  HollowNode* spare;
  {
    LockGuard g(g_hollow_lock);
    spare = g_spare_nodes;
    g_spare_nodes = nullptr;
  }
  // Every empty magazine of every depot, ours until pushed back; pad holds
  // the node each came from meanwhile.
  Magazine* all = nullptr;
  for (unsigned node = 0, nodes = numa::nodes(); node < nodes; ++node)
    for (unsigned c = 0; c < kNumClasses; ++c)
      while (Magazine* m = pop_empty(g_depot[node][c])) {
        m->pad = node;
        set_next(m, all);
        all = m;
      }
  size_t bytes = 0;
  // Runs of magazines back to back in memory: the whole pages inside a run
  // hold nothing else.
  for (Magazine* m = sort_by_address(all); m != nullptr;) {
    Magazine* last = m;
    uintptr_t begin = reinterpret_cast<uintptr_t>(m), end = begin + magazine_bytes(m->slots);
    while (next_of(last) != nullptr && reinterpret_cast<uintptr_t>(next_of(last)) == end) {
      last = next_of(last);
      end += magazine_bytes(last->slots);
    }
    Magazine* after = next_of(last);
    uintptr_t lo = align_up(begin, kPageSize), hi = end & ~(uintptr_t{kPageSize} - 1);
    // A magazine with any byte in a page given back goes on the hollow lists
    // (read before the page is gone), the others back to their depot (after:
    // someone may take one and use its objs at once). Any byte, not only its
    // first line: one of more than two pages (mag_max 1024) spans a page
    // without it, and back on its stack, alone between held ones, it had that
    // page given back, and counted, by every hollowing after (stop 53's bug
    // hunt: magslab_trim_all returned 4096 at each call).
    Magazine* keep = nullptr;
    for (Magazine* x = m; x != after;) {
      Magazine* next = next_of(x);
      auto at = reinterpret_cast<uintptr_t>(x);
      const bool gone = lo < hi && at < hi && at + magazine_bytes(x->slots) > lo;
      HollowNode* h = gone ? new_hollow_node(&spare) : nullptr;
      if (h != nullptr) {
        *h = HollowNode{x, x->slots, head[x->cls]};
        if (head[x->cls] == nullptr) tail[x->cls] = h;
        head[x->cls] = h;
        ++made;
      } else {
        set_next(x, keep);
        keep = x;
        if (gone) hi = lo;  // no node for it: give back nothing here
      }
      x = next;
    }
    // Refused: they stay resident (and hollow all the same), and are not
    // counted as given back (stop 54's bug hunt: magslab_trim_all counted
    // them under a seccomp filter that refuses madvise).
    if (lo < hi && platform::decommit(reinterpret_cast<void*>(lo), hi - lo)) bytes += hi - lo;
    while (keep != nullptr) {
      Magazine* next = next_of(keep);
      put_empty(g_depot[keep->pad][keep->cls], keep);
      keep = next;
    }
    m = after;
  }
  // The spares left, found outside the lock; then the splice.
  HollowNode* spare_tail = spare;
  while (spare_tail != nullptr && spare_tail->next != nullptr) spare_tail = spare_tail->next;
  LockGuard g(g_hollow_lock);
  for (unsigned c = 0; c < kNumClasses; ++c)
    if (head[c] != nullptr) {
      tail[c]->next = g_hollow[c];
      g_hollow[c] = head[c];
    }
  g_hollow_count.fetch_add(made, std::memory_order_relaxed);
  if (spare_tail != nullptr) {
    spare_tail->next = g_spare_nodes;
    g_spare_nodes = spare;
  }
  return bytes;
}

namespace {

// Under decay's pass lock (decay_empty): the sum of every DepotClass::taken
// at the last pass, and the empty magazines' bytes left after the last
// hollowing (those it could not give back: they share pages with others).
uint64_t g_taken_seen = 0;
size_t g_empty_kept = 0;

size_t empty_bytes() {
  size_t bytes = 0;
  for (unsigned node = 0, nodes = numa::nodes(); node < nodes; ++node)
    for (unsigned c = 0; c < kNumClasses; ++c)
      if (int64_t n = g_depot[node][c].nempty.load(std::memory_order_relaxed); n > 0)
        bytes += static_cast<size_t>(n) * magazine_bytes(mag_cap(c));
  return bytes;
}

}  // namespace

size_t decay_empty() {
  // When no thread took an empty magazine from any depot since the last pass,
  // and 16 pages or more of them came since the last hollowing, all of them,
  // as magslab_trim_all() does. All or none, never part: hollowing those of
  // some classes, or some of a class (off the top of its stack), left the
  // others sharing pages with the hollow ones, and neither these passes nor
  // a trim_all could give those pages back afterwards (a spike of 500
  // threads: 17-20 MiB kept, against 11.7 with one pass that takes all). An
  // empty magazine hollowed and then needed costs a page fault, not a refill.
  uint64_t taken = 0;
  for (unsigned node = 0, nodes = numa::nodes(); node < nodes; ++node)
    for (unsigned c = 0; c < kNumClasses; ++c)
      taken += g_depot[node][c].taken.load(std::memory_order_relaxed);
  const bool idle = taken == g_taken_seen;
  g_taken_seen = taken;
  const size_t bytes = empty_bytes();
  if (!idle || bytes < g_empty_kept + 16 * kPageSize) {
    if (bytes < g_empty_kept) g_empty_kept = bytes;  // some were taken: count from here
    return 0;
  }
  const size_t given = hollow_empty();
  g_empty_kept = empty_bytes();
  return given;
}

void lock_for_fork() {
  g_hollow_pass_lock.lock_for_fork();
  g_hollow_lock.lock_for_fork();
}
void unlock_after_fork() {
  g_hollow_lock.unlock_after_fork();
  g_hollow_pass_lock.unlock_after_fork();
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
