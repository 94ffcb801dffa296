// stress/hugerealloc.cc: the hugerealloc workload. Large (64 KiB .. 1 MiB) and
// huge (> 1 MiB, up to 48 MiB) blocks are reallocated across threads: shrunk,
// grown in place, grown so that they move, and moved between the two kinds;
// blocks change hands between threads, and beside them some threads map and
// unmap huge blocks with plain malloc/calloc/free (so the address space next
// to a huge block keeps changing under its mremap).
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <new>

#include "harness.h"

namespace stress {

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kLargeMin = size_t{64} << 10;
constexpr size_t kHugeCap = 48 * kMiB;
constexpr size_t kChains = 2;  // blocks held by a realloc thread

// Total live bytes the workload aims to stay under, whatever the thread count.
size_t total_budget() {
#ifdef MS_SANITIZED
  return 256 * kMiB;
#else
  return 2048 * kMiB;
#endif
}

// A block whose pattern key stays with it through every realloc (the pattern
// is a function of key and offset only), so a realloc costs one pass over the
// kept prefix plus writing the bytes it adds. Keys are random per block, so a
// realloc that hands back another block's bytes still shows up.
struct Chain {
  void* p;
  size_t size;
  uint64_t key;
};

struct Hand {  // a hand-off slot
  std::mutex mu;
  Chain c{};
};

struct HugeRealloc {
  size_t max = 0;      // largest request of most threads
  size_t max_big = 0;  // of every 16th thread (blocks spanning several chunks at any count)
  size_t cap(unsigned t) const { return t % 16 == 0 ? max_big : max; }
  RawArray<Hand> slots;
  std::atomic<uint64_t> reallocs{0}, in_place{0}, moved{0}, failed{0}, handed{0}, mapped{0};
};

// The first wrong byte of [from, to) (offsets into the block) is reported.
void check_range(int ti, const Chain& c, size_t from, size_t to, const char* op,
                 const char* detail) {
  check_key_range(ti, c.p, c.size, from, to, c.key, op, detail);
}

void chain_alloc(unsigned t, Rng& r, Chain& c, size_t n) {
  int ti = static_cast<int>(t);
  errno = 0;
  void* p = g.api->malloc(n);
  if (p == nullptr) {  // fault mode only (else null_result fails)
    null_result(ti, "malloc", n, errno);
    c = Chain{};
    return;
  }
  check_result(ti, "malloc", p, n);
  index_block(ti, p, n, "new");
  c = Chain{p, n, r.next()};
  fill_pattern_range(p, 0, n, c.key);
  count(t, 1, static_cast<int64_t>(n));
}

void chain_free(unsigned t, Chain& c) {
  int ti = static_cast<int>(t);
  check_range(ti, c, 0, c.size, "free-check", "block contents changed before free");
  unindex_block(ti, Block{c.p, c.size, 0});
  g.api->free(c.p);
  count(t, 1, -static_cast<int64_t>(c.size));
  c = Chain{};
}

void chain_realloc(unsigned t, HugeRealloc& h, Chain& c, size_t ns) {
  int ti = static_cast<int>(t);
  // The bytes a shrink drops are checked now; the kept ones after the realloc.
  if (ns < c.size)
    check_range(ti, c, ns, c.size, "realloc-precheck", "block contents changed while it was live");
  unindex_block(ti, Block{c.p, c.size, 0});
  errno = 0;
  void* q = g.api->realloc(c.p, ns);
  if (q == nullptr) {
    // Fault mode: the old block must be untouched and still ours.
    null_result(ti, "realloc", ns, errno);
    h.failed.fetch_add(1, std::memory_order_relaxed);
    check_range(ti, c, 0, c.size, "realloc-failed", "a failed realloc changed the old block");
    index_block(ti, c.p, c.size, "failed realloc's old");
    return;
  }
  check_result(ti, "realloc", q, ns);
  Chain old = c;
  c.p = q;
  c.size = ns;
  static thread_local char msg[128];
  snprintf(msg, sizeof msg, "realloc from %p size %zu to %zu did not preserve the old contents",
           old.p, old.size, ns);
  check_range(ti, c, 0, std::min(old.size, ns), "realloc-prefix", msg);
  index_block(ti, q, ns, "realloc'd");
  if (ns > old.size) fill_pattern_range(q, old.size, ns, c.key);
  count(t, 1, static_cast<int64_t>(ns) - static_cast<int64_t>(old.size));
  h.reallocs.fetch_add(1, std::memory_order_relaxed);
  (q == old.p ? h.in_place : h.moved).fetch_add(1, std::memory_order_relaxed);
}

size_t next_size(Rng& r, size_t cur, size_t max) {
  size_t ns;
  switch (r.below(20)) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:  // grow up to 2x
      ns = cur + 1 + r.below(cur);
      break;
    case 6:
    case 7:  // grow a little (often in place)
      ns = cur + 1 + r.below(kLargeMin);
      break;
    case 8:
    case 9:
    case 10:
    case 11:  // shrink to 1/2 .. 1/4
      ns = cur / (2 + r.below(3));
      break;
    case 12:
    case 13:  // shrink a little
      ns = cur - r.below(cur / 8 + 1);
      break;
    case 14:  // out of the large range (slab sizes), to come back later
      ns = r.log_uniform(1, kLargeMin);
      break;
    default:  // anywhere in large .. max (across the huge threshold both ways)
      ns = r.log_uniform(kLargeMin, max);
      break;
  }
  return std::clamp<size_t>(ns, 1, max);
}

// Realloc thread: kChains blocks, each reallocated, freed and replaced, or
// traded through a hand-off slot for a block another thread made.
void realloc_loop(unsigned t, HugeRealloc& h) {
  int ti = static_cast<int>(t);
  const size_t max = h.cap(t);
  Chain ch[kChains] = {};
  Rng r(thread_seed(t));
  uint64_t ops = 0;
  while (!should_stop(ops)) {
    ++ops;
    Chain& c = ch[r.below(kChains)];
    if (c.p == nullptr) {
      chain_alloc(t, r, c, r.log_uniform(kLargeMin, max));
      continue;
    }
    uint64_t x = r.below(32);
    if (x == 0) {
      chain_free(t, c);
      continue;
    }
    if (x < 3) {  // trade with a slot: the next owner reallocs or frees it
      Hand& s = h.slots[r.below(h.slots.capacity())];
      {
        std::lock_guard<std::mutex> l(s.mu);
        std::swap(c, s.c);
      }
      // Live-byte counters need no change: only their sum matters, and a
      // block stays counted once whichever thread frees it.
      h.handed.fetch_add(1, std::memory_order_relaxed);
      if (c.p != nullptr)
        check_range(ti, c, 0, c.size, "handoff-check", "block contents changed while handed over");
      continue;
    }
    chain_realloc(t, h, c, next_size(r, c.size, max));
  }
  for (auto& c : ch)
    if (c.p != nullptr) chain_free(t, c);
}

// Mapper thread: plain huge malloc/calloc/free, up to two blocks held.
void mapper_loop(unsigned t, HugeRealloc& h) {
  int ti = static_cast<int>(t);
  Block live[2];
  size_t n = 0;
  Rng r(thread_seed(t));
  uint64_t ops = 0;
  while (!should_stop(ops)) {
    ++ops;
    if (n == 2 || (n > 0 && r.chance(2))) {
      size_t k = r.below(n);
      Block b = live[k];
      live[k] = live[--n];
      free_block(ti, b);
      count(t, 1, -static_cast<int64_t>(b.size));
    } else {
      size_t sz = r.log_uniform(kMiB + 1, h.cap(t));
      Block b = alloc_block(ti, r, sz, r.chance(4) ? Kind::Calloc : Kind::Malloc, 0);
      if (b.p == nullptr) continue;  // fault mode
      live[n++] = b;
      count(t, 1, static_cast<int64_t>(b.size));
      h.mapped.fetch_add(1, std::memory_order_relaxed);
    }
  }
  while (n > 0) {
    Block b = live[--n];
    free_block(ti, b);
    count(t, 1, -static_cast<int64_t>(b.size));
  }
}

void hugerealloc_thread(unsigned t, void* arg) {
  auto& h = *static_cast<HugeRealloc*>(arg);
  if (g.opt.threads >= 2 && t % 4 == 1)
    mapper_loop(t, h);
  else
    realloc_loop(t, h);
}

}  // namespace

void wl_hugerealloc() {
  HugeRealloc h;
  unsigned n = g.opt.threads;
  // Per thread at most ~3.5 blocks of its cap live at once (2 chains, its
  // share of the slots, a moving copy). A quarter of the budget goes to every
  // 16th thread, the rest to all: cap = share / (4 threads), in [2 MiB, 48 MiB].
  // (n = 4: 48 MiB; 64: 32 MiB and 6 MiB; 256: 8 MiB and 2 MiB.)
  size_t nbig = (n + 15) / 16;
  h.max = std::clamp<size_t>(total_budget() / 4 * 3 / (size_t{4} * n), 2 * kMiB, kHugeCap);
  h.max_big = std::clamp<size_t>(total_budget() / 4 / (size_t{4} * nbig), 2 * kMiB, kHugeCap);
  h.max_big = std::max(h.max_big, h.max);
  size_t nslots = std::max(2u, n / 2);
  h.slots.reset(nslots);
  for (size_t i = 0; i < nslots; ++i) new (&h.slots[i]) Hand();
  run_threads(n, hugerealloc_thread, &h);
  for (size_t i = 0; i < nslots; ++i) {
    Chain& c = h.slots[i].c;
    if (c.p != nullptr) chain_free(0, c);
    h.slots[i].~Hand();
  }
  if (!g.opt.quiet)
    fprintf(stderr,
            "magslab-stress: hugerealloc: %llu reallocs (%llu in place, %llu moved, %llu NULL), "
            "%llu hand-offs, %llu huge mallocs beside them, blocks up to %zu KiB (%zu KiB in "
            "every 16th thread)\n",
            static_cast<unsigned long long>(h.reallocs.load()),
            static_cast<unsigned long long>(h.in_place.load()),
            static_cast<unsigned long long>(h.moved.load()),
            static_cast<unsigned long long>(h.failed.load()),
            static_cast<unsigned long long>(h.handed.load()),
            static_cast<unsigned long long>(h.mapped.load()), h.max >> 10, h.max_big >> 10);
}

}  // namespace stress
