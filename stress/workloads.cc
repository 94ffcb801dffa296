// stress/workloads.cc: the workloads of magslab-stress. Each keeps its blocks
// in harness-owned memory (RawArray, stack arrays, packed atomics), so nothing
// but the blocks under test goes through the allocator under test.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <mutex>

#include "harness.h"

namespace stress {

namespace {

size_t total_live_target() {
#ifdef MS_SANITIZED
  return 2048;
#else
  return 8192;
#endif
}
size_t per_thread_cap(unsigned threads) {
  return std::max<size_t>(32, total_live_target() / std::max(1u, threads));
}

// Packed (pointer, size) for lock-free slots: user pointers fit in 48 bits on
// x86-64; sizes in slots stay below 64 KiB.
constexpr size_t kSlotMaxSize = 65535;
uint64_t pack(const Block& b) {
  return (uint64_t{b.size} << 48) | reinterpret_cast<uintptr_t>(b.p);
}
Block unpack(uint64_t v) {
  return Block{reinterpret_cast<void*>(v & ((uint64_t{1} << 48) - 1)), static_cast<size_t>(v >> 48),
               0};
}

// ---------------------------------------------------------------------------
// Random alloc/free on a thread-private live set: mixed, aligned, calloc, and
// the background threads of fork.
// ---------------------------------------------------------------------------
enum class Mode { Mixed, Aligned, Calloc };

// The largest request of the aligned workload.
size_t aligned_max() { return std::min<size_t>(g.opt.max_size, 256 << 10); }

Block random_alloc(unsigned t, Rng& r, Mode mode) {
  size_t max = g.opt.max_size;
  switch (mode) {
    case Mode::Mixed: {
      size_t sz = random_size(r, max);
      uint64_t y = r.below(100);
      if (y < 5) return alloc_block(t, r, sz, Kind::Calloc, 0);
      if (y < 8) return alloc_block(t, r, sz, Kind::PosixMemalign, size_t{8} << r.below(7));
      if (y < 9) return alloc_block(t, r, sz, Kind::ReallocNull, 0);
      return alloc_block(t, r, sz, Kind::Malloc, 0);
    }
    case Mode::Aligned: {
      size_t sz = random_size(r, aligned_max());
      // 1 in 256: an alignment of 4–32 MiB, past the chunk's (a huge block
      // mapped for its alignment: a mutation review, stop 34, found nothing
      // asked for more than 2 MiB).
      if (r.chance(256))
        return alloc_block(t, r, sz, Kind::AlignedAlloc, size_t{4} << (20 + r.below(4)));
      if (r.chance(2)) return alloc_block(t, r, sz, Kind::PosixMemalign, size_t{8} << r.below(14));
      return alloc_block(t, r, sz, Kind::AlignedAlloc, size_t{1} << r.below(17));
    }
    case Mode::Calloc: {
      size_t sz = random_size(r, std::min<size_t>(max, 1 << 20));
      return alloc_block(t, r, sz, Kind::Calloc, 0);
    }
  }
  return {};
}

void random_ops(unsigned t, Mode mode) {
  size_t cap = per_thread_cap(g.opt.threads);
  RawArray<Block> live(cap);
  size_t n = 0;
  Rng r(thread_seed(t));
  uint64_t ops = 0;
  while (!should_stop(ops)) {
    if (n == cap || (n > 0 && r.below(100) < 50)) {
      size_t i = r.below(n);
      Block b = live[i];
      live[i] = live[--n];
      // Mixed: a quarter of the frees sized (free_sized / free_aligned_sized).
      free_block(static_cast<int>(t), b, mode == Mode::Mixed && r.chance(4));
      count(t, 1, -static_cast<int64_t>(b.size));
    } else if (mode != Mode::Calloc && n > 0 && r.chance(16)) {
      // realloc of a live block of any kind (calloc's and the aligned ones'
      // too), to any size; 1 in 64 to size 0, which frees it. Aligned: within
      // a quarter of its size half the time, so that page runs (aligned past
      // a page, up to 1 MiB) shrink and grow in place too — nothing
      // reallocated one until stop 34 (a mutation review: a broken in-place
      // shrink of page runs went unnoticed).
      size_t i = r.below(n);
      size_t old = live[i].size;
      size_t ns = 0;  // 1 in 64
      if (!r.chance(64)) {
        if (mode == Mode::Aligned) {
          ns = r.chance(2) ? old - old / 4 + r.below(old / 2 + 1) : random_size(r, aligned_max());
          ns = std::clamp<size_t>(ns, 1, aligned_max());  // repeated growth stays within the cap
        } else {
          ns = random_size(r, g.opt.max_size);
        }
      }
      if (realloc_block(static_cast<int>(t), live[i], ns)) {
        count(t, 1, static_cast<int64_t>(live[i].size) - static_cast<int64_t>(old));
      } else {
        live[i] = live[--n];
        count(t, 1, -static_cast<int64_t>(old));
      }
    } else {
      Block b = random_alloc(t, r, mode);
      if (b.p != nullptr) {  // NULL only in fault mode (ENOMEM): skipped
        live[n++] = b;
        count(t, 1, static_cast<int64_t>(b.size));
      }
    }
    ++ops;
    if (n != 0 && r.chance(32)) check_block(static_cast<int>(t), live[r.below(n)], "recheck");
    // Memory given back while this thread and the others hold live blocks:
    // what the checks above and at free then verify was not taken with it.
    if (mode == Mode::Mixed && r.chance(16384)) g.api->trim(r.chance(4));
    if (mode == Mode::Mixed && r.chance(16384)) g.api->idle();
    if (mode == Mode::Calloc && r.chance(1024)) {
      // calloc(n, m) with n*m overflowing must fail with ENOMEM.
#ifndef MS_SANITIZED
      errno = 0;
      void* p = g.api->calloc((SIZE_MAX >> 3) + 1, 16);
      if (p != nullptr || errno != ENOMEM) {
        Failure f;
        f.op = "calloc-overflow";
        f.thread = static_cast<int>(t);
        f.addr = p;
        f.detail = "calloc with count*size overflowing did not return NULL/ENOMEM";
        fail(f);
      }
#endif
    }
  }
  while (n > 0) {
    Block b = live[--n];
    free_block(static_cast<int>(t), b);
    count(t, 1, -static_cast<int64_t>(b.size));
  }
}

void mixed_thread(unsigned t, void*) { random_ops(t, Mode::Mixed); }
void aligned_thread(unsigned t, void*) { random_ops(t, Mode::Aligned); }
void calloc_thread(unsigned t, void*) { random_ops(t, Mode::Calloc); }

// ---------------------------------------------------------------------------
// larson: a shared array of slots; each op replaces a random slot's block, so
// most blocks are freed by a thread other than the one that allocated them.
// ---------------------------------------------------------------------------
struct Slots {
  RawArray<std::atomic<uint64_t>> s;
};

void drain_slots(Slots& sl) {
  for (size_t i = 0; i < sl.s.capacity(); ++i) {
    uint64_t v = sl.s[i].exchange(0, std::memory_order_acq_rel);
    if (v != 0) {
      Block b = unpack(v);
      free_block(-1, b);
      count(0, 1, -static_cast<int64_t>(b.size));
    }
  }
}

void larson_thread(unsigned t, void* arg) {
  auto& sl = *static_cast<Slots*>(arg);
  size_t nslots = sl.s.capacity();
  size_t max = std::min<size_t>(g.opt.max_size, 8192);
  Rng r(thread_seed(t));
  uint64_t ops = 0;
  while (!should_stop(ops)) {
    Block b = alloc_block(static_cast<int>(t), r, r.log_uniform(1, max), Kind::Malloc, 0);
    if (b.p == nullptr) {  // fault mode
      ++ops;
      continue;
    }
    count(t, 1, static_cast<int64_t>(b.size));
    uint64_t old = sl.s[r.below(nslots)].exchange(pack(b), std::memory_order_acq_rel);
    if (old != 0) {
      Block ob = unpack(old);
      free_block(static_cast<int>(t), ob);
      count(t, 1, -static_cast<int64_t>(ob.size));
    }
    ops += 2;
    if (r.chance(64)) {  // take a block out, check it while live, put it back
      auto& slot = sl.s[r.below(nslots)];
      uint64_t v = slot.exchange(0, std::memory_order_acq_rel);
      if (v != 0) {
        check_block(static_cast<int>(t), unpack(v), "recheck");
        uint64_t o = slot.exchange(v, std::memory_order_acq_rel);
        if (o != 0) {
          Block ob = unpack(o);
          free_block(static_cast<int>(t), ob);
          count(t, 1, -static_cast<int64_t>(ob.size));
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// prodcons: producers allocate and push to bounded queues; consumers check and
// free. With one thread, that thread alternates between the two roles.
// ---------------------------------------------------------------------------
struct Queue {
  static constexpr size_t kCap = 1024;
  std::mutex mu;
  Block ring[kCap];
  size_t head = 0, tail = 0;  // tail - head = count
  bool push(const Block& b) {
    std::lock_guard<std::mutex> l(mu);
    if (tail - head == kCap) return false;
    ring[tail++ % kCap] = b;
    return true;
  }
  size_t pop(Block* out, size_t max) {
    std::lock_guard<std::mutex> l(mu);
    size_t n = std::min(max, tail - head);
    for (size_t i = 0; i < n; ++i) out[i] = ring[head++ % kCap];
    return n;
  }
};

struct ProdCons {
  unsigned nprod = 1, ncons = 1;
  RawArray<Queue> q;
  std::atomic<unsigned> producers_done{0};
};

void consume(unsigned t, Queue& q, uint64_t* ops, bool* got) {
  Block batch[32];
  size_t n = q.pop(batch, 32);
  *got = n != 0;
  for (size_t i = 0; i < n; ++i) {
    free_block(static_cast<int>(t), batch[i]);
    count(t, 1, -static_cast<int64_t>(batch[i].size));
    ++*ops;
  }
}

void prodcons_thread(unsigned t, void* arg) {
  auto& pc = *static_cast<ProdCons*>(arg);
  Rng r(thread_seed(t));
  uint64_t ops = 0;
  bool single = g.opt.threads == 1;
  if (t < pc.nprod) {  // producer
    size_t max = std::min<size_t>(g.opt.max_size, 64 << 10);
    unsigned k = t;
    while (!should_stop(ops)) {
      Block b =
          alloc_block(static_cast<int>(t), r,
                      r.chance(8) ? random_size(r, max) : r.log_uniform(1, 512), Kind::Malloc, 0);
      ++ops;
      if (b.p == nullptr) continue;  // fault mode
      count(t, 1, static_cast<int64_t>(b.size));
      Queue& q = pc.q[k++ % pc.ncons];
      while (!q.push(b)) {
        if (single) {
          bool got;
          consume(t, q, &ops, &got);
        } else if (g.stop.load(std::memory_order_relaxed)) {
          free_block(static_cast<int>(t), b);  // consumers may be gone soon: keep it simple
          count(t, 1, -static_cast<int64_t>(b.size));
          break;
        } else {
          sched_yield();
        }
      }
    }
    pc.producers_done.fetch_add(1, std::memory_order_acq_rel);
    if (!single) return;
  }
  // consumer (or the single thread after producing)
  unsigned c = single ? 0 : t - pc.nprod;
  for (;;) {
    bool got;
    unsigned done = pc.producers_done.load(std::memory_order_acquire);
    consume(t, pc.q[c], &ops, &got);
    if (!got) {
      if (done == pc.nprod) break;  // all producers finished before this empty pop
      sched_yield();
    }
  }
}

// ---------------------------------------------------------------------------
// realloc: chains of growing and shrinking reallocs; the old prefix must
// survive every move.
// ---------------------------------------------------------------------------
void realloc_thread(unsigned t, void*) {
  constexpr size_t kChains = 32;
  Block chain[kChains] = {};
  Rng r(thread_seed(t));
  uint64_t ops = 0;
  size_t max = g.opt.max_size;
  int ti = static_cast<int>(t);
  while (!should_stop(ops)) {
    Block& b = chain[r.below(kChains)];
    ++ops;
    if (b.p == nullptr) {
      b = alloc_block(ti, r, 1 + r.below(256), Kind::Malloc, 0);
      if (b.p == nullptr)
        b = Block{};  // fault mode
      else
        count(t, 1, static_cast<int64_t>(b.size));
      continue;
    }
    if (r.chance(16)) {
      free_block(ti, b);
      count(t, 1, -static_cast<int64_t>(b.size));
      b = Block{};
      continue;
    }
    size_t ns;
    uint64_t x = r.below(10);
    if (x < 4)
      ns = b.size + 1 + r.below(b.size * 3 + 64);  // grow
    else if (x < 8)
      ns = b.size / (1 + r.below(4));  // shrink
    else
      ns = random_size(r, max);
    ns = std::clamp<size_t>(ns, 1, max);
    size_t old = b.size;
    realloc_block(ti, b, ns);  // ns >= 1: b stays a block
    count(t, 1, static_cast<int64_t>(b.size) - static_cast<int64_t>(old));
  }
  for (auto& b : chain)
    if (b.p != nullptr) {
      free_block(ti, b);
      count(t, 1, -static_cast<int64_t>(b.size));
    }
}

// ---------------------------------------------------------------------------
// churn: each of N spawners creates short-lived threads one after another;
// each does a burst of work, hands some blocks to later threads through shared
// slots, and exits with everything else freed.
// ---------------------------------------------------------------------------
struct Churn {
  Slots handoff;
};
struct ChurnWorker {
  Churn* churn;
  unsigned t;
  uint64_t gen;
  uint64_t ops;
};

void* churn_worker(void* p) {
  auto& w = *static_cast<ChurnWorker*>(p);
  t_worker = static_cast<int>(w.t);
  Rng r(thread_seed(w.t, w.gen));
  int ti = static_cast<int>(w.t);
  Block live[64];
  size_t n = 0;
  size_t burst = 100 + r.below(1000);
  size_t max = std::min<size_t>(g.opt.max_size, 64 << 10);
  auto& slots = w.churn->handoff.s;
  for (size_t i = 0; i < burst && !g.stop.load(std::memory_order_relaxed); ++i) {
    if (n == 64 || (n > 0 && r.chance(2))) {
      size_t k = r.below(n);
      Block b = live[k];
      live[k] = live[--n];
      if (b.size <= kSlotMaxSize && r.chance(4)) {  // hand it to some later thread
        uint64_t old =
            slots[r.below(slots.capacity())].exchange(pack(b), std::memory_order_acq_rel);
        if (old == 0) continue;
        b = unpack(old);
      }
      free_block(ti, b);
      count(w.t, 1, -static_cast<int64_t>(b.size));
    } else {
      Block b = alloc_block(ti, r, random_size(r, max), Kind::Malloc, 0);
      if (b.p != nullptr) {  // NULL: fault mode
        live[n++] = b;
        count(w.t, 1, static_cast<int64_t>(b.size));
      }
    }
    ++w.ops;
  }
  while (n > 0) {
    Block b = live[--n];
    free_block(ti, b);
    count(w.t, 1, -static_cast<int64_t>(b.size));
  }
  return nullptr;
}

void churn_spawner(unsigned t, void* arg) {
  auto* churn = static_cast<Churn*>(arg);
  ChurnWorker w{churn, t, 0, 0};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256u << 10);
  while (!should_stop(w.ops)) {
    ++w.gen;
    run_one_thread(&attr, churn_worker, &w, t, "churn");
  }
  pthread_attr_destroy(&attr);
}

// ---------------------------------------------------------------------------
// fork: one thread forks while the others allocate. The child checks the
// forking thread's blocks, allocates and frees a burst of its own, frees the
// inherited blocks, and exits 0; alarm() turns a hang into SIGALRM. Its
// blocks go through the overlap index, which still holds what the other
// threads had live at the fork (OverlapIndex::after_fork_child): a child
// handed a block the parent's threads held fails as an overlap.
// ---------------------------------------------------------------------------
#ifdef MS_SANITIZED
constexpr unsigned kChildSeconds = 60;
constexpr int kChildOps = 2000;
#else
constexpr unsigned kChildSeconds = 20;
constexpr int kChildOps = 20000;
#endif

[[noreturn]] void fork_child(Block* held, size_t nheld, Rng r) {
  alarm(kChildSeconds);
  g.index->after_fork_child();
  for (size_t i = 0; i < nheld; ++i) {
    if (held[i].p == nullptr) continue;
    check_block(-2, held[i], "fork-child-inherited");
    // Entered again whole: part of it may lie in a shard started again.
    g.index->erase(held[i].p, indexed_length(held[i].p, held[i].size));
    index_block(-2, held[i].p, held[i].size, "fork-child-inherited");
  }
  Block live[64];
  size_t n = 0;
  size_t max = std::min<size_t>(g.opt.max_size, 1 << 20);
  for (int i = 0; i < kChildOps; ++i) {
    if (n == 64 || (n > 0 && r.chance(2))) {
      size_t k = r.below(n);
      Block b = live[k];
      live[k] = live[--n];
      free_block(-2, b);
    } else {
      Block b =
          alloc_block(-2, r, random_size(r, max), r.chance(8) ? Kind::Calloc : Kind::Malloc, 0);
      if (b.p != nullptr) live[n++] = b;  // NULL: fault mode
    }
  }
  while (n > 0) free_block(-2, live[--n]);
  for (size_t i = 0; i < nheld; ++i)
    if (held[i].p != nullptr) free_block(-2, held[i]);
  _exit(0);
}

void fork_thread(unsigned t, void*) {
  if (t + 1 < g.opt.threads) {  // background allocators
    random_ops(t, Mode::Mixed);
    return;
  }
  Rng r(thread_seed(t));
  int ti = static_cast<int>(t);
  uint64_t ops = 0;
  constexpr size_t kHeld = 16;
  Block held[kHeld];
  size_t max = std::min<size_t>(g.opt.max_size, 256 << 10);
  while (!should_stop(ops)) {
    for (auto& b : held) b = alloc_block(ti, r, random_size(r, max), Kind::Malloc, 0);
    pid_t pid = fork();
    if (pid < 0) {
      Failure f;
      f.op = "fork";
      f.thread = ti;
      f.detail = "fork failed";
      fail(f);
    }
    if (pid == 0) fork_child(held, kHeld, Rng(r.next()));
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 1) _exit(1);  // the child reported it
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      Failure f;
      f.op = "fork-wait";
      f.thread = ti;
      static char msg[96];
      if (WIFSIGNALED(st))
        snprintf(msg, sizeof msg, "fork child (pid %d) killed by signal %d%s", pid, WTERMSIG(st),
                 WTERMSIG(st) == SIGALRM ? " (SIGALRM: hung, deadlock after fork?)" : "");
      else
        snprintf(msg, sizeof msg, "fork child (pid %d) exited with status %d", pid,
                 WEXITSTATUS(st));
      f.detail = msg;
      fail(f);
    }
    for (auto& b : held)
      if (b.p != nullptr) free_block(ti, b);
    ops += 2 * kHeld + kChildOps + 1;
    count(t, 2 * kHeld + kChildOps + 1, 0);
  }
}

}  // namespace

void wl_mixed() { run_threads(g.opt.threads, mixed_thread, nullptr); }
void wl_aligned() { run_threads(g.opt.threads, aligned_thread, nullptr); }
void wl_calloc() { run_threads(g.opt.threads, calloc_thread, nullptr); }
void wl_realloc() { run_threads(g.opt.threads, realloc_thread, nullptr); }

void wl_larson() {
  Slots sl;
  sl.s.reset(std::max<size_t>(1024, size_t{128} * g.opt.threads));
  run_threads(g.opt.threads, larson_thread, &sl);
  drain_slots(sl);
}

void wl_prodcons() {
  ProdCons pc;
  unsigned n = g.opt.threads;
  pc.nprod = n == 1 ? 1 : n / 2;
  pc.ncons = n == 1 ? 1 : n - pc.nprod;
  pc.q.reset(pc.ncons);
  for (unsigned i = 0; i < pc.ncons; ++i) new (&pc.q[i]) Queue();
  run_threads(n, prodcons_thread, &pc);
  for (unsigned i = 0; i < pc.ncons; ++i) pc.q[i].~Queue();
}

void wl_churn() {
  Churn c;
  c.handoff.s.reset(256);
  run_threads(g.opt.threads, churn_spawner, &c);
  drain_slots(c.handoff);
}

void wl_fork() { run_threads(g.opt.threads, fork_thread, nullptr); }

}  // namespace stress
