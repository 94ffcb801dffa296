// stress/dtorchurn.cc: the dtorchurn workload. Threads start and exit
// continuously, and each exiting thread allocates and frees in its
// destructors: a C++ thread_local object whose destructor frees blocks the
// thread left to it and allocates/frees a few more, and a pthread key
// destructor that allocates and frees and re-sets its key, so it runs in every
// destructor round (PTHREAD_DESTRUCTOR_ITERATIONS) - also after magslab's own
// thread-exit handler. Some blocks are handed to the surviving spawner
// threads, which check and free them. With --allocator magslab the workload
// also checks that magslab's metadata does not grow with the number of threads
// that have exited.
#include <limits.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <new>

#include "harness.h"
#include "magslab/magslab.h"

namespace stress {

namespace {

constexpr size_t kKiB = 1024;

// Destructor rounds the key destructor runs in. ThreadSanitizer tears down its
// per-thread state in the last round (its own key destructor re-sets itself
// until then), and instrumented code in a later destructor of that round
// crashes it - including magslab's thread-exit handler, which runs one round
// after a destructor that allocated. So under TSan: two rounds fewer.
#ifdef MS_TSAN
constexpr unsigned kRounds = PTHREAD_DESTRUCTOR_ITERATIONS - 2;
#else
constexpr unsigned kRounds = PTHREAD_DESTRUCTOR_ITERATIONS;
#endif

struct Mailbox {  // blocks handed to one surviving (spawner) thread
  static constexpr size_t kCap = 64;
  std::mutex mu;
  Block ring[kCap];
  size_t n = 0;
};

struct DtorChurn {
  pthread_key_t key;
  RawArray<Mailbox> mail;  // one per spawner
  uint64_t warm = 0;       // threads each spawner runs before the metadata baseline
  std::atomic<uint64_t> exited{0}, handed{0}, dtor_ops{0};
  // The baseline is taken at a barrier of all spawners (no worker alive, no
  // allocation running), so magslab_stats() is read quiescent, as at the end.
  std::atomic<unsigned> arrived{0};
  std::atomic<bool> released{false};
  bool base_taken = false;  // written by the last spawner to arrive
  uint64_t base_exited = 0;
  size_t base_meta = 0;
};

// One per spawner, reused by its threads one after another.
struct Worker {
  DtorChurn* dc;
  unsigned t;
  uint64_t gen;
  uint64_t ops;
  Rng r{0};
  static constexpr size_t kLeft = 8;
  Block left[kLeft];  // freed (or handed on) by the thread_local destructor
  size_t nleft;
  // Written by the exiting thread's destructors, read by the spawner after
  // the join. Atomic (release/acquire) although the join orders them: TSan
  // does not see that order for destructor rounds that run after its own
  // thread-exit handling.
  std::atomic<unsigned> rounds;  // key destructor calls
  std::atomic<bool> tls_ran;
};

size_t metadata_bytes() {
  static std::mutex mu;
  static struct magslab_stats st;  // large; not on the stack
  std::lock_guard<std::mutex> l(mu);
  magslab_stats(&st);
  return st.metadata_bytes;
}

void drain_mail(int ti, unsigned counter, Mailbox& m) {
  Block batch[Mailbox::kCap];
  size_t n;
  {
    std::lock_guard<std::mutex> l(m.mu);
    n = m.n;
    std::copy(m.ring, m.ring + n, batch);
    m.n = 0;
  }
  for (size_t i = 0; i < n; ++i) {
    free_block(ti, batch[i]);
    count(counter, 1, -static_cast<int64_t>(batch[i].size));
  }
}

// Hands b to a random surviving thread (usually not this thread's spawner),
// or frees it here if that one's mailbox is full.
void give_to_survivor(Worker& w, const Block& b) {
  Mailbox& m = w.dc->mail[w.r.below(w.dc->mail.capacity())];
  {
    std::lock_guard<std::mutex> l(m.mu);
    if (m.n < Mailbox::kCap) {
      m.ring[m.n++] = b;
      w.dc->handed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  free_block(static_cast<int>(w.t), b);
  count(w.t, 1, -static_cast<int64_t>(b.size));
}

// What the destructors do: allocate n blocks (small, some medium and large),
// hand some to survivors, check and free the rest.
void destructor_work(Worker& w, unsigned n) {
  int ti = static_cast<int>(w.t);
  Block mine[8];
  size_t k = 0;
  for (unsigned i = 0; i < n && i < 8; ++i) {
    size_t sz =
        w.r.chance(8) ? w.r.log_uniform(64 * kKiB, 256 * kKiB) : random_size(w.r, 64 * kKiB);
    Block b = alloc_block(ti, w.r, sz, w.r.chance(8) ? Kind::Calloc : Kind::Malloc, 0);
    ++w.ops;
    if (b.p == nullptr) continue;  // fault mode
    count(w.t, 1, static_cast<int64_t>(b.size));
    if (w.r.chance(4))
      give_to_survivor(w, b);
    else
      mine[k++] = b;
  }
  while (k > 0) {
    Block b = mine[--k];
    free_block(ti, b);
    count(w.t, 1, -static_cast<int64_t>(b.size));
    ++w.ops;
  }
  w.dc->dtor_ops.fetch_add(n, std::memory_order_relaxed);
}

struct TlsObject {
  Worker* w = nullptr;
  ~TlsObject() {
    if (w == nullptr) return;
    Worker& wk = *w;
    wk.tls_ran.store(true, std::memory_order_release);
    while (wk.nleft > 0) {
      Block b = wk.left[--wk.nleft];
      if (wk.r.chance(3)) {
        give_to_survivor(wk, b);
      } else {
        free_block(static_cast<int>(wk.t), b);
        count(wk.t, 1, -static_cast<int64_t>(b.size));
      }
    }
    destructor_work(wk, 4);
  }
};
thread_local TlsObject t_object;

void key_destructor(void* v) {
  auto& w = *static_cast<Worker*>(v);
  destructor_work(w, 3);
  unsigned round = w.rounds.load(std::memory_order_relaxed) + 1;
  w.rounds.store(round, std::memory_order_release);
  // Set again: the next round calls this again, up to the last round.
  if (round < kRounds) pthread_setspecific(w.dc->key, v);
}

void* dtor_worker(void* p) {
  auto& w = *static_cast<Worker*>(p);
  t_worker = static_cast<int>(w.t);
  w.r = Rng(thread_seed(w.t, w.gen));
  w.nleft = 0;
  w.rounds.store(0, std::memory_order_relaxed);
  w.tls_ran.store(false, std::memory_order_relaxed);
  int ti = static_cast<int>(w.t);
  Block live[32];
  size_t n = 0;
  size_t burst = 20 + w.r.below(200);
  size_t max = std::min<size_t>(g.opt.max_size, 64 * kKiB);
  for (size_t i = 0; i < burst && !g.stop.load(std::memory_order_relaxed); ++i, ++w.ops) {
    if (n == 32 || (n > 0 && w.r.chance(2))) {
      size_t k = w.r.below(n);
      Block b = live[k];
      live[k] = live[--n];
      free_block(ti, b);
      count(w.t, 1, -static_cast<int64_t>(b.size));
    } else {
      Block b = alloc_block(ti, w.r, random_size(w.r, max), Kind::Malloc, 0);
      if (b.p == nullptr) continue;  // fault mode
      live[n++] = b;
      count(w.t, 1, static_cast<int64_t>(b.size));
    }
  }
  // Leave some blocks to the thread_local destructor, free the rest.
  while (n > 0) {
    Block b = live[--n];
    if (w.nleft < Worker::kLeft && w.r.chance(2)) {
      w.left[w.nleft++] = b;
    } else {
      free_block(ti, b);
      count(w.t, 1, -static_cast<int64_t>(b.size));
    }
  }
  t_object.w = &w;  // constructs it in this thread; its destructor runs at exit
  pthread_setspecific(w.dc->key, &w);
  return nullptr;
}

void dtor_spawner(unsigned t, void* arg) {
  auto& dc = *static_cast<DtorChurn*>(arg);
  Worker w{};
  w.dc = &dc;
  w.t = t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256u << 10);
  uint64_t mine = 0;  // threads this spawner has joined
  bool arrived = false;
  for (;;) {
    bool stop = should_stop(w.ops);
    if (!arrived && (stop || mine >= dc.warm)) {
      arrived = true;
      if (dc.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == g.opt.threads) {
        if (g.api->is_magslab && !stop) {
          dc.base_meta = metadata_bytes();
          dc.base_exited = dc.exited.load(std::memory_order_relaxed);
          dc.base_taken = true;
        }
        dc.released.store(true, std::memory_order_release);
      }
      while (!dc.released.load(std::memory_order_acquire)) usleep(100);
    }
    if (stop) break;
    ++w.gen;
    run_one_thread(&attr, dtor_worker, &w, t, "dtorchurn");
    unsigned rounds = w.rounds.load(std::memory_order_acquire);
    bool tls_ran = w.tls_ran.load(std::memory_order_acquire);
    if (rounds != kRounds || !tls_ran) {
      Failure f;
      f.op = "thread-exit";
      f.thread = static_cast<int>(t);
      static char msg[128];
      snprintf(msg, sizeof msg,
               "harness: key destructor ran %u rounds (expected %u), thread_local destructor %s",
               rounds, kRounds, tls_ran ? "ran" : "did not run");
      f.detail = msg;
      fail(f);
    }
    dc.exited.fetch_add(1, std::memory_order_relaxed);
    ++mine;
    drain_mail(static_cast<int>(t), t, dc.mail[t]);
  }
  pthread_attr_destroy(&attr);
}

}  // namespace

void wl_dtorchurn() {
  DtorChurn dc;
  unsigned n = g.opt.threads;
  // The allocator's own thread-exit key (magslab makes it on first use) comes
  // first, so this workload's key destructor also runs after it in each round.
  g.api->free(g.api->malloc(1));
  if (pthread_key_create(&dc.key, key_destructor) != 0) {
    Failure f;
    f.op = "pthread_key_create";
    f.detail = "cannot create a pthread key";
    fail(f);
  }
  dc.mail.reset(n);
  for (unsigned i = 0; i < n; ++i) new (&dc.mail[i]) Mailbox();
  dc.warm = std::max<uint64_t>(4, (64 + n - 1) / n);  // max(64, 4n) threads in all
  run_threads(n, dtor_spawner, &dc);
  for (unsigned i = 0; i < n; ++i) {
    drain_mail(-1, 0, dc.mail[i]);
    dc.mail[i].~Mailbox();
  }
  pthread_key_delete(dc.key);

  uint64_t exited = dc.exited.load();
  if (!g.api->is_magslab) return;
  if (!dc.base_taken) {
    if (!g.opt.quiet)
      fprintf(stderr,
              "magslab-stress: dtorchurn: %llu threads exited, too few for the metadata check "
              "(needs %llu per spawner)\n",
              static_cast<unsigned long long>(exited), static_cast<unsigned long long>(dc.warm));
    return;
  }
  // Metadata legitimately grows with the peak heap (chunk and slab metadata)
  // and with the threads alive at once (two per spawner: their caches and
  // magazines): allow a fixed 8 MiB (two metadata regions) plus 64 KiB per
  // spawner; a per-exited-thread leak of a few KiB exceeds that after a few
  // thousand threads (at 4 spawners: ~2000).
  size_t end = metadata_bytes();
  uint64_t after = exited - dc.base_exited;
  double growth = static_cast<double>(end) - static_cast<double>(dc.base_meta);
  size_t bound = (size_t{8} << 20) + size_t{n} * 64 * kKiB;
  if (!g.opt.quiet)
    fprintf(stderr,
            "magslab-stress: dtorchurn: %llu threads exited, %llu blocks handed to survivors; "
            "metadata_bytes %.1f MiB after %llu exits, %.1f MiB at the end (%+.0f B per exit "
            "since; bound +%zu KiB)\n",
            static_cast<unsigned long long>(exited),
            static_cast<unsigned long long>(dc.handed.load()),
            static_cast<double>(dc.base_meta) / 1048576.0,
            static_cast<unsigned long long>(dc.base_exited), static_cast<double>(end) / 1048576.0,
            after ? growth / static_cast<double>(after) : 0.0, bound >> 10);
  if (end > dc.base_meta && end - dc.base_meta > bound) {
    Failure f;
    f.op = "metadata-growth";
    f.size = end - dc.base_meta;
    static char msg[200];
    snprintf(msg, sizeof msg,
             "magslab_stats().metadata_bytes grew by %zu KiB (%.0f B per exited thread) over %llu "
             "exited threads, bound %zu KiB: per-thread metadata is not reclaimed",
             (end - dc.base_meta) >> 10, growth / static_cast<double>(after ? after : 1),
             static_cast<unsigned long long>(after), bound >> 10);
    f.detail = msg;
    fail(f);
  }
}

}  // namespace stress
