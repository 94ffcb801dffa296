// small/thread_cache: the slow paths — magazine swaps, depot trades, slab refills,
// thread-cache creation and thread exit.
#include "small/thread_cache.h"

#include <errno.h>
#include <pthread.h>

#include <algorithm>
#include <new>

#include "base/lock.h"
#include "chunks/decay_event.h"
#include "chunks/meta_arena.h"
#include "chunks/page_heap.h"
#include "platform/numa.h"
#include "platform/options.h"
#include "platform/platform.h"
#include "small/decay.h"
#include "small/requested.h"
#include "small/slab.h"
#include "stats/events.h"

namespace magslab {

constinit ThreadCache g_sentinel_cache(&g_empty_magazine);
constinit ThreadCache g_exited_cache(&g_empty_magazine);
// relaxed: a statistic; the registry lock orders folds against requested_sum().
constinit std::atomic<int64_t> requested::g_folded{0};
constinit thread_local ThreadCache* t_cache MAGSLAB_TLS_MODEL = &g_sentinel_cache;

namespace cache {

constinit std::atomic<void (*)(unsigned)> g_swap_hook{nullptr};
constinit std::atomic<void (*)(ThreadCache*)> g_exit_hook{nullptr};
constinit std::atomic<void (*)(Magazine*)> g_taken_retire_hook{nullptr};

namespace {

Lock g_registry_lock;
std::atomic<uint64_t> g_owner_tags{0};  // owner tags handed out so far
ThreadCache* g_registry = nullptr;      // live caches, under g_registry_lock
// Per class, objects a fork() child lost with the other threads' loaded and
// remote magazines (reset_after_fork_child): free in the parent, neither live
// nor reusable here. Under g_registry_lock (the child writes them holding it).
size_t g_lost_in_fork[kNumClasses] = {};
TaggedStack g_cache_pool;  // caches of exited threads, for reuse

// The owner tags of running threads: slot n % kRunningSlots holds the n-th tag
// from its cache's creation to its thread's exit (0: none), so that a free can
// tell slabs whose refilling thread has gone (free_remote adopts them). A hint
// only, like the tags: a tag whose slot a later one took (kRunningSlots caches
// created while its thread runs) reads as gone and its slabs may be adopted
// while it still uses their lines, which costs sharing, never correctness.
// relaxed everywhere: a stale value changes a routing decision, nothing else.
constexpr size_t kRunningSlots = 4096;
std::atomic<uint64_t> g_running[kRunningSlots];
std::atomic<uint64_t> g_tags_ended{0};  // tags whose thread has exited so far
// Caches given to a thread so far (current): a new one asks for a sweep of the
// registry for caches whose thread is gone (reap_exited).
constinit std::atomic<uint64_t> g_caches_made{0};
// Beside g_running: the cache of the slot's tag (send_to_owner), set before
// the tag is published there; a stale pointer (the slot's tag changed between
// the two reads) only sends a magazine to another live or pooled cache.
// release/acquire: such a pointer may be to a cache made since (a tag 4096
// later took the slot), and the sender then exchanges in its inbox, which the
// constructor wrote; caches are never unmapped.
std::atomic<ThreadCache*> g_running_cache[kRunningSlots];

std::atomic<uint64_t>& running_slot(uint64_t tag) {
  return g_running[(tag >> kOwnerTagShift) % kRunningSlots];
}
std::atomic<ThreadCache*>& running_cache(uint64_t tag) {
  return g_running_cache[(tag >> kOwnerTagShift) % kRunningSlots];
}
bool tag_gone(uint64_t tag) { return running_slot(tag).load(std::memory_order_relaxed) != tag; }
void tag_ended(uint64_t tag) {
  uint64_t expected = tag;  // unless a later tag has taken the slot
  // seq_cst: with the exit's inbox drain after it and send_to_owner's
  // exchange and recheck (all seq_cst), a magazine sent to an exiting thread
  // is taken by one of the two (send_to_owner).
  running_slot(tag).compare_exchange_strong(expected, 0, std::memory_order_seq_cst,
                                            std::memory_order_relaxed);
  g_tags_ended.fetch_add(1, std::memory_order_relaxed);
}
pthread_key_t g_exit_key;
pthread_once_t g_once = PTHREAD_ONCE_INIT;
bool g_key_ok = false;
// mag_cap() per class as init_once (which every thread passes through before
// its first slow path) found it: what "Magazine limits" measure limits in.
// The options are normally loaded by then; if not (no environment yet, a
// static program's very first allocation), a magazine made later may have
// other slots, and fit() keeps each within its own.
uint16_t g_slots[kNumClasses];
inline uint32_t slots_of(unsigned cls) { return g_slots[cls]; }

bool is_real(const Magazine* m) { return m != &g_empty_magazine; }

// Pair fields are written only by the owner, through atomic_ref stores, so
// that magslab_stats may read them from another thread. release/acquire (plain
// moves on x86): a magazine is built (placement-new, a plain write of its
// count) or filled by its new owner before it is installed here, and a reader
// that finds it here then reads its count; the release store orders the two.
void set_loaded(ThreadCache::Pair& p, Magazine* m) {
  std::atomic_ref<Magazine*>(p.loaded).store(m, std::memory_order_release);
}
void set_previous(ThreadCache::Pair& p, Magazine* m) {
  std::atomic_ref<Magazine*>(p.previous).store(m, std::memory_order_release);
}
void set_remote(ThreadCache::Pair& p, Magazine* m) {
  std::atomic_ref<Magazine*>(p.remote).store(m, std::memory_order_release);
}
Magazine* read_loaded(ThreadCache::Pair& p) {
  return std::atomic_ref<Magazine*>(p.loaded).load(std::memory_order_acquire);
}
Magazine* read_previous(ThreadCache::Pair& p) {
  return std::atomic_ref<Magazine*>(p.previous).load(std::memory_order_acquire);
}
Magazine* read_remote(ThreadCache::Pair& p) {
  return std::atomic_ref<Magazine*>(p.remote).load(std::memory_order_acquire);
}
// The n frees of a remote magazine that has just left its slot (set_remote
// came first): magslab_stats reads these events, then the slots, so it never
// counts a magazine both ways (api/stats.cc, remote_frees_floor; stop 51's bug
// hunt: counted before it left, remote_frees went back by up to a magazine).
// release: pairs with stats' acquire load of the count, so a reader that
// sees this count sees the slot's new magazine. Slow paths only.
void count_remote_frees(unsigned c, uint32_t n) {
  if (n == 0) return;
  stats::count_release(c, stats::kRemoteFree, n);
}
// The previous magazine is the one slot another thread may empty: a
// process-wide trim takes idle threads' previous magazines (take_previous_all),
// and a decay pass those of classes their owner stopped using (decay_stashes).
// Neither fast path touches it, and every slow path of the owner takes it with
// this exchange before it looks inside, and puts it back (set_previous) or
// installs another; whoever's exchange returns a real magazine owns it. So a
// magazine is never used by two threads, and a thread that finds the empty
// sentinel there owns nothing. acquire: the owner's put (release) ordered its
// count and objects before; release: not needed by anyone, part of the RMW.
Magazine* take_previous(ThreadCache::Pair& p) {
  return std::atomic_ref<Magazine*>(p.previous)
      .exchange(&g_empty_magazine, std::memory_order_acq_rel);
}
// The magazine in tc's inbox for class c, now the caller's; nullptr if none.
// The load first: most misses find none, and a plain read keeps the line
// shared. acquire: pairs with send_to_owner's release (the objects, the count).
Magazine* take_inbox(ThreadCache* tc, unsigned c) {
  std::atomic_ref<Magazine*> in(tc->inbox[c]);
  if (in.load(std::memory_order_relaxed) == nullptr) return nullptr;
  return in.exchange(nullptr, std::memory_order_acquire);
}
// tc's owner missed in class c and looked at its inbox for objects: senders
// start counting unclaimed magazines afresh (send_to_owner). relaxed: a hint,
// as the count is; the load first, so the line stays shared while 0.
static_assert(sizeof(ThreadCache::inbox_aged) == kNumClasses &&
                  sizeof(ThreadCache::inbox_unclaimed) == kNumClasses,
              "alloc_slow calls claimed_inbox for every class, large ones too");
void claimed_inbox(ThreadCache* tc, unsigned c) {
  std::atomic_ref<uint8_t> n(tc->inbox_unclaimed[c]);
  if (n.load(std::memory_order_relaxed) != 0) n.store(0, std::memory_order_relaxed);
  // relaxed: a hint for decay_stashes, as the count is for the senders.
  std::atomic_ref<uint8_t> aged(tc->inbox_aged[c]);
  if (aged.load(std::memory_order_relaxed) != 0) aged.store(0, std::memory_order_relaxed);
}

void on_thread_exit(void* arg);

// Move tc's requested-byte count into the global one (exact mode; a no-op
// otherwise, the count stays 0). Caller holds g_registry_lock.
void fold_requested(ThreadCache* tc) {
  std::atomic_ref<int64_t> r(tc->requested);
  requested::g_folded.fetch_add(r.load(std::memory_order_relaxed), std::memory_order_relaxed);
  r.store(0, std::memory_order_relaxed);
}

void init_once() {
  opt::ensure_loaded();  // options before the first small block is served (the first cache)
  for (unsigned c = 0; c < kNumClasses; ++c) g_slots[c] = static_cast<uint16_t>(mag_cap(c));
  // pthread_key_create does not allocate; keys below PTHREAD_KEYS_MAX live in
  // the thread descriptor, so setspecific for an early key does not either.
  g_key_ok = pthread_key_create(&g_exit_key, on_thread_exit) == 0;
  uint64_t expected = 0;
  // relaxed: the key's value matters only to this process; any thread sees it
  // no later than its own cache creation, which goes through init_once.
  g_free_key.compare_exchange_strong(expected, platform::random_u64(), std::memory_order_relaxed);
}

// The calling thread's real cache, created on first use. nullptr when out of
// memory, and after the thread's exit destructor ran (no cache ever again).
ThreadCache* current() {
  ThreadCache* tc = t_cache;
  if (MAGSLAB_LIKELY(tc != &g_sentinel_cache)) return tc != &g_exited_cache ? tc : nullptr;
  pthread_once(&g_once, init_once);
  if (StackLink* l = g_cache_pool.pop()) {
    tc =
        reinterpret_cast<ThreadCache*>(reinterpret_cast<char*>(l) - offsetof(ThreadCache, recycle));
  } else {
    void* mem = meta::alloc(sizeof(ThreadCache));
    if (mem == nullptr) return nullptr;
    tc = new (mem) ThreadCache(&g_empty_magazine);
  }
  // relaxed: only makes tags unique; a new one also for a recycled cache, so
  // that slabs its previous thread refilled from are not taken for this one's.
  tc->owner_tag = owner_tag(g_owner_tags.fetch_add(1, std::memory_order_relaxed) + 1);
  // release: a sender that reads this pointer (acquire) reads the cache as made.
  running_cache(tc->owner_tag).store(tc, std::memory_order_release);
  // release: a sender that reads this tag (acquire) reads this cache above.
  running_slot(tc->owner_tag).store(tc->owner_tag, std::memory_order_release);
  for (ThreadCache::Pair& p : tc->cls) {  // a new thread starts slow, with small magazines
    p.refilled = 0;
    p.limit = p.rlimit = 0;
    p.swaps = p.seen = 0;
  }
  // Counted for the cache's last thread. relaxed atomic_ref stores, as every
  // access: a sender that read that thread's tag as running just before it
  // exited may still be counting here (send_to_owner).
  for (uint8_t& n : tc->inbox_unclaimed)
    std::atomic_ref<uint8_t>(n).store(0, std::memory_order_relaxed);
  for (uint8_t& a : tc->inbox_aged) a = 0;
  for (uint8_t& i : tc->class_idle) i = 0;  // the last thread's marks: no grace tick for this one
  tc->idle_flush = 0;
  // retire_all emptied the stash; no trim_all reaches a cache outside the registry.
  tc->stash_bytes = tc->stash_taken = 0;
  for (uint8_t& u : tc->stash_used) u = 0;
  tc->large_held = 0;  // retire_all left every slot of a recycled cache empty
  tc->adopt_quiet = ~uint64_t{0};
  // Made robust once, when the cache is made (a recycled cache comes back
  // unlocked); a cache whose mutex cannot be is never reaped.
  tc->alive.hold();
  bool multithreaded;
  {
    LockGuard g(g_registry_lock);
    tc->reg_prev = nullptr;
    tc->reg_next = g_registry;
    multithreaded = g_registry != nullptr;
    if (g_registry != nullptr) g_registry->reg_prev = tc;
    g_registry = tc;
  }
  // Install the cache before pthread_setspecific: for a key past glibc's first
  // 32 it calloc()s a second-level block, and that nested allocation must find
  // this cache rather than create another one (and recurse).
  t_cache = tc;
  if (g_key_ok) pthread_setspecific(g_exit_key, tc);
  // A sweep for caches whose thread is gone is due (reap_exited); a parked
  // decay thread wakes for it. relaxed: a count, read by decay passes.
  g_caches_made.fetch_add(1, std::memory_order_relaxed);
  decay_event::note();
  // With no lock held and this cache in place: pthread_create allocates.
  // Counted either way: a thread that frees only huge blocks may be the second.
  decay::note_user(multithreaded);
  return tc;
}

// The fast path's magazine operations, for a magazine known to have an
// object (pop) or room (push).
inline void* pop(Magazine* m) { return mag_pop(m, m->count); }
inline void push(Magazine* m, void* p) { mag_push(m, m->count, p); }

void* out_of_memory() {
  errno = ENOMEM;
  return nullptr;
}

// NUMA (platform/numa.h): the node pool a slow path trades with is the one
// the thread runs on at that moment, asked for here and nowhere on the fast
// path (one node: 0, no system call). A thread that migrates keeps the
// magazines it holds (their objects stay on the old node's memory until
// handed out); objects always go back home: depot::push_full sends a full
// magazine to its objects' node, slab::release each object to its slab's.
inline unsigned node_now() { return numa::current_node(); }

// Return m's objects (if any) to their slabs and m, empty, to node `node`'s
// empty stack, where it belongs to the depot: it must not be read again here.
void release_to_slabs(unsigned cls, Magazine* m, unsigned node) {
  if (m->count != 0) slab::release(cls, m->objs, m->count);
  set_mag_count(m, 0);
  depot::push_empty(cls, m, node);
}

// Empty m into the depot of its objects' node (or, past its limit, the
// slabs) and give m back to node `node`'s empty stack. Once pushed, m belongs
// to the depot: it must not be read again here.
void retire(unsigned cls, Magazine* m, unsigned node) {
  if (!is_real(m)) return;
  if (m->count != 0 && depot::push_full(cls, m)) return;
  release_to_slabs(cls, m, node);
}

// The stash (ThreadCache::stash). A thread whose frees of a class overflow
// its loaded and previous magazines used to hand the full previous one — the
// objects it had just freed, of its own slabs — to the depot, where whichever
// thread missed next took it and handed the objects out: lines of one slab
// then held live blocks of two threads, each write to one of them taking the
// line from the other thread's core, and the taker's frees of them were
// remote. mstress at 2 threads: 41 % of the magazines alloc misses took from
// the depot were another thread's own overflow (counted with
// bench/results/2026-12-04/stop29-tried/own-magazine-stash.patch), and 2-5 %
// of the lines of its live blocks were shared with another thread's, against
// none under mimalloc (docs/benchmarks.md, stop 30). Now up to kStashMags such
// magazines per small class, and `stash_bytes` (option, 8 MiB) of objects in
// all, stay with the thread; its next alloc miss of the class takes the newest
// before its inbox and the depot. Large classes keep the depot and the
// per-thread byte cap (bound_large_classes). The stash goes back to the depot
// (or, past its limit, the slabs) at the thread's exit and
// magslab_thread_idle (retire_all), to the slabs at a flush (magslab_trim),
// and to the depot at magslab_trim_all, which takes every thread's
// (take_previous_all) — and by decay: a class's stash its owner neither took
// from nor added to since the previous decay pass goes to the depot
// (decay_stashes), whose own decay then gives it back. So a thread that
// stopped freeing or allocating a class, running or blocked, holds its stash
// for at most two passes (100-200 ms).
constexpr uint32_t kStashMags = 8;

// The owner notes a use of its stash of class c (decay_stashes clears it).
// relaxed: a hint; a use the decay pass misses only makes it drain a stash
// that was in use, which the owner refills from its next overflow. Read
// first, so that a busy owner does not write the line at every miss.
inline void mark_used(uint8_t& mark) {
  std::atomic_ref<uint8_t> used(mark);
  if (used.load(std::memory_order_relaxed) == 0) used.store(1, std::memory_order_relaxed);
}
inline void note_stash_use(ThreadCache* tc, unsigned c) { mark_used(tc->stash_used[c]); }

// The owner notes a slow path of class c (decay_stashes clears it): the
// class is in use, its previous magazine stays. relaxed: a hint, as above.
inline void note_class_use(ThreadCache* tc, unsigned c) { mark_used(tc->class_used[c]); }

// The owner has just put a full magazine in the previous slot: a decay thread parked
// with nothing left must look again (decay_stashes takes it once the class
// goes unused), or it waits for the parked thread's 10 s bounded sleep (a
// review measured 9.8 s). After the store, not before: a pass woken earlier
// could look before m is there, and park again. Only free's paths leave a full
// previous magazine (alloc's leave an empty one), so a thread that only
// allocates never wakes it (a review measured one that woke it at every slow
// path: 3,600 wake-ups and park cycles for 5 M mallocs, 50 % slower).
inline void note_full_previous() { decay_event::note_hint(); }

// The magazine after m in a stash list. relaxed: the list's head was
// published (put_stash, release) after its links were set.
inline Magazine* stash_next(const Magazine* m) {
  return reinterpret_cast<Magazine*>(m->link.next.load(std::memory_order_relaxed));
}
// The whole stash list of class c, now the caller's; nullptr if empty (and
// for a large class, which has none: stash[] has kNumSmallClasses entries). The
// load first: most misses find none, and a plain read keeps the line shared.
// acquire: pairs with put_stash's release (links, counts, objects).
Magazine* take_stash(ThreadCache* tc, unsigned c) {
  if (c >= kNumSmallClasses) return nullptr;
  std::atomic_ref<Magazine*> s(tc->stash[c]);
  if (s.load(std::memory_order_relaxed) == nullptr) return nullptr;
  return s.exchange(nullptr, std::memory_order_acquire);
}
// The owner puts back a list it took (or built on one it took). Nobody else
// stores here: a taker in between found nullptr. release: see take_stash.
// A decay pass that looked while the owner held the list found none, and may
// have parked meanwhile: a non-empty list put back wakes it.
void put_stash(ThreadCache* tc, unsigned c, Magazine* list) {
  std::atomic_ref<Magazine*>(tc->stash[c]).store(list, std::memory_order_release);
  if (list != nullptr) decay_event::note();
}
inline size_t stash_bytes_of(unsigned c, const Magazine* m) {
  return size_t{m->count} * kClasses[c].size;
}
// The owner's count of its stash's bytes, less what magslab_trim_all and the
// decay passes took since (never below 0: a take that raced with the owner's
// own drain may be counted twice, which only lets the stash hold a little
// more until it is empty again).
size_t stash_bytes(ThreadCache* tc) {
  std::atomic_ref<size_t> taken(tc->stash_taken);
  if (taken.load(std::memory_order_relaxed) != 0) {  // relaxed: a byte count, no data
    size_t t = taken.exchange(0, std::memory_order_relaxed);
    tc->stash_bytes = t < tc->stash_bytes ? tc->stash_bytes - t : 0;
  }
  return tc->stash_bytes;
}
// What one thread's stash may hold: option stash_bytes (8 MiB) while at most
// kStashShare threads run, and kStashShare × stash_bytes shared evenly among
// them past that. A stash is the thread's own and nobody else reuses it
// before a decay pass, so a spike of threads each holding 8 MiB held
// threads × 8 MiB: 500 threads freeing 64 blocks of every size up to 32 KiB
// (stop 53) peaked at 0.8-1.3 GiB of RSS, against 0.57-0.70 GiB with this
// share and mimalloc's 0.6 (a share of 8 × stash_bytes: 0.43-0.54 GiB, but
// mstress at 16 threads ran 15 % slower in 5 interleaved rounds; with 16 it
// ran as without a share). The count of running threads is a hint
// (tags handed out less tags ended, each read relaxed: ended first, so it is
// at most the tags read after it).
constexpr uint64_t kStashShare = 16;
size_t stash_limit() {
  const size_t bytes = opt::get(opt::kStashBytes);
  const uint64_t ended = g_tags_ended.load(std::memory_order_relaxed);
  const uint64_t tags = g_owner_tags.load(std::memory_order_relaxed);
  const uint64_t running = tags > ended ? tags - ended : 1;
  return running <= kStashShare ? bytes : static_cast<size_t>(bytes / running * kStashShare);
}
// The owner: m, a real magazine its frees filled (count > 0), into the stash
// of class c if there is room. false: not taken.
bool stash_put(ThreadCache* tc, unsigned c, Magazine* m) {
  if (c >= kNumSmallClasses || m->count == 0) return false;
  const size_t bytes = stash_bytes_of(c, m);
  if (stash_bytes(tc) + bytes > stash_limit()) return false;
  Magazine* list = take_stash(tc, c);
  const uint32_t depth = list != nullptr ? list->pad : 0;
  if (depth >= kStashMags) {
    put_stash(tc, c, list);
    return false;
  }
  m->link.next.store(reinterpret_cast<StackLink*>(list), std::memory_order_relaxed);
  m->pad = depth + 1;  // the list's length while m is its head
  put_stash(tc, c, m);
  tc->stash_bytes += bytes;
  note_stash_use(tc, c);
  return true;
}
// The owner: the newest magazine of class c's stash, or nullptr.
Magazine* stash_take(ThreadCache* tc, unsigned c) {
  Magazine* list = take_stash(tc, c);
  if (list == nullptr) return nullptr;
  put_stash(tc, c, stash_next(list));  // whose `pad` still holds its length
  note_stash_use(tc, c);
  const size_t bytes = stash_bytes_of(c, list), held = stash_bytes(tc);
  tc->stash_bytes = bytes < held ? held - bytes : 0;
  return list;
}
// The owner emptied its whole stash: nothing is counted, and what takers
// added for lists they took before is settled. (A take that raced with the
// drain may still add afterwards: see stash_bytes() for what that costs.)
// relaxed: see stash_bytes().
inline void clear_stash_bytes(ThreadCache* tc) {
  tc->stash_bytes = 0;
  std::atomic_ref<size_t>(tc->stash_taken).store(0, std::memory_order_relaxed);
}
// Every magazine of tc's stash of class c (none for a large class) to
// sink(m), which may hand it on (m's link is read first). Returns their bytes.
template <class Sink>
size_t drain_stash(ThreadCache* tc, unsigned c, Sink sink) {
  size_t bytes = 0;
  for (Magazine* m = take_stash(tc, c); m != nullptr;) {
    Magazine* next = stash_next(m);
    bytes += stash_bytes_of(c, m);
    sink(m);
    m = next;
  }
  return bytes;
}
// Another thread than tc's (magslab_trim_all, a decay pass, a fork child's
// reset) takes tc's stash of class c, each magazine to sink(m), which retires
// it to the depot (or, past its limit, the slabs) then or later (add_taken);
// the owner subtracts the bytes from its count. Returns the objects.
template <class Sink>
size_t take_stash_of(ThreadCache* tc, unsigned c, Sink sink) {
  size_t moved = 0;
  const size_t bytes = drain_stash(tc, c, [&](Magazine* m) {
    moved += m->count;
    sink(m);
  });
  // relaxed: see stash_bytes().
  if (bytes != 0)
    std::atomic_ref<size_t>(tc->stash_taken).fetch_add(bytes, std::memory_order_relaxed);
  return moved;
}

void flush(ThreadCache* tc) {
  const unsigned node = node_now();
  for (unsigned c = 0; c < kNumClasses; ++c) {
    ThreadCache::Pair& p = tc->cls[c];
    const uint32_t remote_frees = p.remote->count;
    for (Magazine* m : {p.loaded, take_previous(p), p.remote, take_inbox(tc, c)}) {
      if (m == nullptr || !is_real(m)) continue;  // (nullptr: no inbox magazine)
      release_to_slabs(c, m, node);
    }
    set_loaded(p, &g_empty_magazine);
    set_remote(p, &g_empty_magazine);
    count_remote_frees(c, remote_frees);
    drain_stash(tc, c, [&](Magazine* m) { release_to_slabs(c, m, node); });
  }
  clear_stash_bytes(tc);
}

// The owner's loaded and remote magazines of class c go to the depot (or the
// slabs, past its limit); the slots get the empty sentinel.
void retire_loaded_and_remote(unsigned c, ThreadCache::Pair& p, unsigned node) {
  retire(c, p.loaded, node);
  const uint32_t remote_frees = p.remote->count;
  retire(c, p.remote, node);
  set_loaded(p, &g_empty_magazine);
  set_remote(p, &g_empty_magazine);
  count_remote_frees(c, remote_frees);
}

// The thread gives up everything it holds (its exit, magslab_thread_idle):
// objects go to the depot while it has room (the next thread reuses them
// warm), the rest to the slabs, and the partial slabs kept for its refills
// become anyone's. Only its own refills keep slabs for it.
void retire_all(ThreadCache* tc) {
  const unsigned node = node_now();
  for (unsigned c = 0; c < kNumClasses; ++c) {
    ThreadCache::Pair& p = tc->cls[c];
    retire(c, take_previous(p), node);
    retire_loaded_and_remote(c, p, node);
    if (Magazine* m = take_inbox(tc, c)) retire(c, m, node);
    drain_stash(tc, c, [&](Magazine* m) { retire(c, m, node); });
  }
  clear_stash_bytes(tc);
  slab::disown(tc->owner_tag);
}

// Raised by request_flush_all(). relaxed: a request, honoured at the next slow
// path; the flush itself synchronises through the slab locks and the depot.
constinit std::atomic<uint64_t> g_flush_epoch{0};

// A slow path's check: flush if a flush was requested since this thread's last.
inline void honour_flush_request(ThreadCache* tc) {
  uint64_t e = g_flush_epoch.load(std::memory_order_relaxed);
  if (MAGSLAB_UNLIKELY(e != tc->flush_epoch)) {
    tc->flush_epoch = e;
    flush(tc);
  }
}

// Loaded and remote magazines of classes the owner stopped using. A decay pass
// takes the previous magazine of a class whose slow paths the owner did not
// run since the pass before, but it cannot take these two: the fast paths use
// them without an atomic. So a thread that moved on to other classes (a
// working set whose sizes drift, a program past a phase) kept up to two
// magazines of objects of every class it ever used, each object holding its
// slab: 4 threads whose 16 MiB working sets drifted from 16 B to 8 KiB and
// then kept 256 KiB of 16-byte blocks held 147-149 MiB for good, glibc 81,
// mimalloc 8 (stop 41's bug hunt). Now a pass marks such a class
// (ThreadCache::class_idle: the tick it first found it unused, kIdleStale a
// whole tick later) and raises idle_flush, and the owner's next slow path —
// of any class: the thread still runs — gives their magazines to the depot
// (or the slabs, past its limit), whose own decay gives them back. A class in
// use only through the fast paths (a steady alloc/free pair never misses)
// looks unused too: it then pays one depot trade a tick or two (a refill
// takes a magazine back). relaxed: hints; the magazines are the owner's.
constexpr uint8_t kIdleStale = 255;

MAGSLAB_NOINLINE void flush_idle(ThreadCache* tc, unsigned cur) {
  std::atomic_ref<uint8_t>(tc->idle_flush).store(0, std::memory_order_relaxed);
  const unsigned node = node_now();
  for (unsigned c = 0; c < kNumClasses; ++c) {
    if (c == cur ||
        std::atomic_ref<uint8_t>(tc->class_idle[c]).load(std::memory_order_relaxed) != kIdleStale ||
        std::atomic_ref<uint8_t>(tc->class_used[c]).load(std::memory_order_relaxed) != 0)
      continue;
    retire_loaded_and_remote(c, tc->cls[c], node);
  }
}

// A slow path's check (any class; `cur`, its own, stays): give back the
// magazines of the classes a decay pass found stale.
inline void flush_idle_if_asked(ThreadCache* tc, unsigned cur) {
  if (MAGSLAB_UNLIKELY(std::atomic_ref<uint8_t>(tc->idle_flush).load(std::memory_order_relaxed) !=
                       0))
    flush_idle(tc, cur);
}

// tc's thread holds nothing any more: its objects go back, the cache leaves
// the registry for the pool. Run by the thread itself in its exit destructor
// (`own`: it also stops using the cache), or by a decay pass for a thread that
// is gone without one (reap_exited).
void give_back(ThreadCache* tc, bool own) {
  // Exited threads hold nothing. Before it leaves the registry: a fork()
  // meanwhile either finds it there, and the child disowns its kept slabs
  // (reset_after_fork_child), or finds nothing kept for it (it makes no
  // refill after retire_all).
  retire_all(tc);
  {
    LockGuard g(g_registry_lock);
    fold_requested(tc);  // under the lock: requested_sum() sees it exactly once
    if (tc->reg_prev != nullptr)
      tc->reg_prev->reg_next = tc->reg_next;
    else
      g_registry = tc->reg_next;
    if (tc->reg_next != nullptr) tc->reg_next->reg_prev = tc->reg_prev;
  }
  // Out of the registry, no pass looks at it: the next thread locks it again.
  // A reaped cache's mutex was made consistent and unlocked by the pass.
  if (own) tc->alive.release();
  // Whatever this thread allocates or frees from now on (another key's
  // destructor, glibc's per-thread cleanup) goes to the slabs directly: a
  // cache made now might never be flushed.
  if (own) t_cache = &g_exited_cache;
  // relaxed: set by a test before the thread exits (thread_cache.h).
  if (auto hook = g_exit_hook.load(std::memory_order_relaxed); MAGSLAB_UNLIKELY(hook)) hook(tc);
  tag_ended(tc->owner_tag);
  // Again, now that senders see the tag gone: what one sent between the
  // drain in retire_all and tag_ended. seq_cst, unconditional: see
  // send_to_owner.
  for (unsigned c = 0; c < kNumSmallClasses; ++c)
    if (Magazine* m = std::atomic_ref<Magazine*>(tc->inbox[c]).exchange(nullptr))
      retire(c, m, node_now());
  g_cache_pool.push(&tc->recycle);
}

void on_thread_exit(void* arg) { give_back(static_cast<ThreadCache*>(arg), true); }

// Large classes (above kMaxSmallSize, up to 1 MiB) keep their blocks in
// magazines like every class, so a thread could hold three magazines of each
// of them: up to ~25 MiB, and a thread that walks through the classes (a
// buffer grown by realloc) leaves blocks in many of them (peak RSS of the
// realloc workload 1.55-1.60x mimalloc's at 8-16 threads, 2026-12-02). Bytes
// a thread holds in other large classes' magazines are capped: past the cap,
// the slow path of a large class hands whole magazines of the others, largest
// class first, to the depot (where other threads find them, and decay takes
// what nobody does) until half the cap is left. The fast path is unchanged: a
// large class's magazines hold one or two blocks, so its slow path runs every
// other operation anyway. Default 512 KiB (2 MiB until stop 17): realloc at
// 16 threads peaked at 86 MiB with 2 MiB, 72 with 512 KiB, 67 with none
// (mimalloc 52); docs/benchmarks.md, stop 17.

static_assert(kNumClasses - kNumSmallClasses <= 32, "ThreadCache::large_held has a bit per class");

// Every slow path that installs a real magazine in a slot of large class cls
// calls this (directly or through bound_if_large) before the fast path can
// put a block in it.
inline void mark_large(ThreadCache* tc, unsigned cls) {
  if (cls >= kNumSmallClasses) tc->large_held |= uint32_t{1} << (cls - kNumSmallClasses);
}

void bound_large_classes(ThreadCache* tc, unsigned cur, unsigned node) {
  const size_t cap = opt::get(opt::kThreadLargeBytes);  // option thread_large_bytes, 512 KiB
  const uint32_t cur_bit = uint32_t{1} << (cur - kNumSmallClasses);
  mark_large(tc, cur);
  size_t bytes = 0;
  // Only the classes whose slots may hold a magazine: a thread that uses one
  // large class (a producer or consumer of 256 KiB buffers, which trades at
  // the depot every operation) reads no other class's magazines.
  for (uint32_t bits = tc->large_held & ~cur_bit; bits != 0; bits &= bits - 1) {
    unsigned c = kNumSmallClasses + static_cast<unsigned>(__builtin_ctz(bits));
    ThreadCache::Pair& p = tc->cls[c];
    // previous: read as stats do (a trim may take it meanwhile: then the
    // count is stale, and only this estimate is off).
    Magazine* prev = read_previous(p);
    if (!is_real(p.loaded) && !is_real(prev) && !is_real(p.remote)) {
      tc->large_held &= ~(bits & -bits);  // a slow path of c sets it again
      continue;
    }
    bytes += size_t{p.loaded->count + mag_count(prev) + p.remote->count} * kClasses[c].size;
  }
  if (bytes <= cap) return;
  for (unsigned c = kNumClasses; c-- > kNumSmallClasses && bytes > cap / 2;) {
    if (c == cur || !(tc->large_held >> (c - kNumSmallClasses) & 1)) continue;
    ThreadCache::Pair& p = tc->cls[c];
    Magazine* prev = take_previous(p);
    if (prev->count == 0) {
      set_previous(p, prev);  // nothing in it (or the sentinel): back in place
    } else {
      bytes -= size_t{prev->count} * kClasses[c].size;
      retire(c, prev, node);
    }
    for (Magazine* ThreadCache::Pair::*slot :
         {&ThreadCache::Pair::remote, &ThreadCache::Pair::loaded}) {
      Magazine* m = p.*slot;
      const uint32_t n = m->count;
      if (n == 0) continue;
      bytes -= size_t{n} * kClasses[c].size;
      retire(c, m, node);
      std::atomic_ref<Magazine*>(p.*slot).store(&g_empty_magazine, std::memory_order_release);
      // A remote magazine's frees, counted as it leaves (until stop 51's bug
      // hunt they were not: remote_frees lost them for good).
      if (slot == &ThreadCache::Pair::remote) count_remote_frees(c, n);
    }
  }
}

inline void bound_if_large(ThreadCache* tc, unsigned cls, unsigned node) {
  if (cls >= kNumSmallClasses) bound_large_classes(tc, cls, node);
}

// Slow start: a thread's first slab refill of a class takes a sixteenth of a
// magazine's slots (at least one object), each later one twice the last, up
// to the magazine's capacity (cap: at most its slots, "Magazine limits" below). A short-lived
// thread that uses a handful of objects of many classes (a request handler, a pool task) would
// otherwise take a full magazine of each — up to 32 KiB per small class, ~0.8 MiB for the classes
// of 1-512 bytes alone — and 50 such threads alive at once held ~60 MiB they never used
// (tests/override/thread_exit.cc). A long-lived thread reaches the full refill after four or five
// more refills per class (two for a capacity of 4); depot trades, which move no new memory out of
// the slabs, stay whole magazines.
// A class of blocks above kOneBlockAbove (16 KiB: the small classes of 18-32
// KiB, whose slabs hold 8 blocks, and the classes from 36 KiB, whose slab is
// one block carved from the page heap at the refill) takes one block a refill,
// whatever came before — it never reaches the full refill: a block more
// is memory the thread then keeps in its magazine, and a thread whose use of
// such classes peaks at two blocks kept a third of each (the realloc
// workload, which walks up through them: peak RSS at one thread 11.2 -> 10.0
// MiB for the large classes, stop 38), while a lock trip costs little next to
// a block this size. (From 8 KiB on, phases — blocks of 16 B-16 KiB — ran 6 %
// more instructions an operation.)
constexpr size_t kOneBlockAbove = 16 * 1024;
inline uint32_t refill_count(unsigned cls, const ThreadCache::Pair& p, uint32_t slots,
                             uint32_t cap) {
  if (kClasses[cls].size > kOneBlockAbove) return 1;
  uint32_t first = slots / 16 > 0 ? slots / 16 : 1;
  uint32_t want = p.refilled == 0 ? first : 2 * uint32_t{p.refilled};
  return want < cap ? want : cap;
}

// Magazine limits. Objects a thread holds in its magazines are memory nobody
// else can use: with every magazine at its full capacity (mag_bytes, 32 KiB of
// objects), a thread whose use of a class goes up and down (larson, a server's
// requests) keeps up to two magazines' worth per class it uses — larson's peak
// RSS at 2 threads was 1.2x mimalloc's, and 8 KiB magazines made it 0.91x
// (docs/benchmarks.md, stop 25). But a thread that only allocates or only
// frees a class (a producer, a consumer, a batch) trades a magazine at the
// depot every `capacity` operations, and there whole magazines are what make
// it cheap (xmalloc 2-2.7x mimalloc). So each thread sets the capacity of the
// magazines it loads, per class, by their traffic (Bonwick & Adams size
// magazines by depot contention; this counts swaps, which needs no clock). It
// starts at a quarter of the slots (kMinAdaptSlots or more slots; fewer keep
// them all, but those of the small classes above 16 KiB start at one:
// initial_limit), and
//  - at a trade with the depot or the slabs, doubles if the loaded and previous
//    magazines swapped at most once since the last trade: one-way traffic
//    empties (or fills) both in turn, while traffic that goes up and down
//    crosses between them many times first;
//  - at the kShrinkSwaps-th swap since the last trade, and every second one
//    after it, halves (down to the initial limit): a thread whose use of a
//    class settles after a one-way phase (a server's start, a program filling
//    a table) lowers its limit without ever trading again.
// A magazine keeps the capacity it was given as it became the loaded one
// until it is loaded again (a swap) or leaves the thread; that capacity is
// never below what it holds (fit), so a magazine filled whole in a one-way
// phase keeps all its slots for as long as it never runs empty — frees fill
// it whole again (a known limit: handing its excess to the depot instead,
// tried in stop 25, made the trades that follow look one-way and the limit
// grow back). Its slots stay, and the depot's empty magazines have all of
// them again (depot::push_empty).
// The remote magazine, which only fills, doubles at its trade when the thread
// shows no traffic of its own in the class since the last one — no own-side
// slow path ran, and its loaded magazine's count is the same modulo 128 (a
// consumer; a thread whose own mallocs and frees of the class happen to cancel
// out is taken for one too) — and halves otherwise (a thread that frees an
// occasional object of another thread's among its own: larson, whose remote
// magazines otherwise grew at each generation's start and held 0.6 MiB more
// at 2 threads).
constexpr uint32_t kMinAdaptSlots = 16;
constexpr uint8_t kShrinkSwaps = 4;
// Pair::seen: the loaded magazine's count at the last remote trade (low 7
// bits), and this bit once an own-side slow path ran since.
constexpr uint8_t kSeenSlowPath = 0x80;

// The magazines of the small classes above kOneBlockAbove (4 slots) start
// at one: a thread that walks up through them (a buffer grown by realloc)
// kept up to eight blocks of each (realloc's peak RSS at 16 threads 76 ->
// 66.5 MiB with the one-block refills, mimalloc 60.6; stop 38). Its remote
// magazine too (blocks a thread got from the depot are remote when it frees
// them: 67 MiB against 74 with the quarter rule there; mstress, whose blocks
// reach 64 KiB, and BM_cross_thread_large/65536 ran as fast either way).
inline uint32_t initial_limit(unsigned cls) {
  const uint32_t slots = slots_of(cls);
  if (slots >= kMinAdaptSlots) return slots / 4;
  return cls < kNumSmallClasses && kClasses[cls].size > kOneBlockAbove ? 1 : slots;
}
// The limit stored (0: initial), within [initial_limit(cls), slots_of(cls)].
inline uint32_t limit_of(uint16_t stored, unsigned cls) {
  uint32_t slots = slots_of(cls);
  uint32_t lo = initial_limit(cls);
  return stored < lo ? lo : stored > slots ? slots : stored;
}
// The next limit: doubled on `grow`, halved on `shrink`.
inline uint16_t adapt(uint16_t stored, unsigned cls, bool grow, bool shrink) {
  uint32_t slots = slots_of(cls);
  uint32_t l = limit_of(stored, cls);
  if (grow)
    l = 2 * l < slots ? 2 * l : slots;
  else if (shrink)
    l = limit_of(static_cast<uint16_t>(l / 2), cls);
  return static_cast<uint16_t>(l);
}
// An own-side swap of loaded and previous. Returns the limit.
inline uint32_t note_swap(ThreadCache::Pair& p, unsigned cls) {
  p.seen |= kSeenSlowPath;
  if (p.swaps < kShrinkSwaps) ++p.swaps;
  if (p.swaps == kShrinkSwaps) {
    p.limit = adapt(p.limit, cls, false, true);
    p.swaps = kShrinkSwaps - 2;  // and again at the second swap from here
  }
  return limit_of(p.limit, cls);
}
// An own-side trade with the depot or the slabs (`first`: the loaded slot
// still holds the empty sentinel, which says nothing of the traffic).
// Returns the limit.
inline uint32_t note_trade(ThreadCache::Pair& p, unsigned cls, bool first) {
  p.seen |= kSeenSlowPath;
  if (!first && p.swaps <= 1) p.limit = adapt(p.limit, cls, true, false);
  p.swaps = 0;
  return limit_of(p.limit, cls);
}
// A remote magazine's trade (`first`: the thread's first remote free of the
// class, which replaces the empty sentinel). Returns the remote limit.
inline uint32_t note_remote_trade(ThreadCache::Pair& p, unsigned cls, bool first) {
  const uint8_t count = static_cast<uint8_t>(p.loaded->count & 0x7f);
  const bool own_traffic = p.seen != count;  // a slow path ran, or the count moved
  if (!first) p.rlimit = adapt(p.rlimit, cls, !own_traffic, own_traffic);
  p.seen = count;
  return limit_of(p.rlimit, cls);
}
// The capacity of m, a real magazine this thread owns, as it becomes the
// loaded one (installed, or swapped in): the limit, never below what m holds
// (free's fast path misses at count == cap) nor above its slots (the limit
// follows mag_cap() as the options were when the first cache was made; a
// magazine made after a late options load may have fewer).
inline void fit(Magazine* m, uint32_t limit) {
  uint32_t cap = limit < m->slots ? limit : m->slots;
  m->cap = cap > m->count ? cap : m->count;
}

// One object straight from the slabs, for a thread without a cache (exited,
// or out of metadata memory).
void* alloc_uncached(unsigned cls) {
  void* p = nullptr;
  if (slab::refill(cls, &p, 1, 0, node_now()) == 0) return out_of_memory();
  *static_cast<uint64_t*>(p) = 0;  // as mag_pop: a free key left here is not a free
  return p;
}

void* alloc_slow_once(unsigned cls) {
  ThreadCache* tc = current();
  if (tc == nullptr) return alloc_uncached(cls);
  honour_flush_request(tc);
  note_class_use(tc, cls);
  flush_idle_if_asked(tc, cls);
  ThreadCache::Pair& p = tc->cls[cls];
  // 1. The previous magazine has objects: swap it in. (Taken out of its slot
  //    first, as every slow path does: take_previous.)
  const uint32_t slots = slots_of(cls);
  Magazine* prev = take_previous(p);
  // relaxed: set by a test before this thread's malloc (thread_cache.h).
  if (auto hook = g_swap_hook.load(std::memory_order_relaxed); MAGSLAB_UNLIKELY(hook)) hook(cls);
  if (prev->count != 0) {
    fit(prev, note_swap(p, cls));
    set_previous(p, p.loaded);
    set_loaded(p, prev);
    return pop(prev);
  }
  const uint32_t limit = note_trade(p, cls, !is_real(p.loaded));
  // 2. Take the inbox's magazine (own objects other threads freed), or trade
  //    at the depot of the node the thread runs on: loaded and previous are
  //    both empty. The empty previous goes back, loaded becomes previous, the
  //    full one is loaded.
  const unsigned node = node_now();
  Magazine* full = stash_take(tc, cls);
  if (full == nullptr) {
    full = take_inbox(tc, cls);
    claimed_inbox(tc, cls);
  }
  if (full == nullptr) full = depot::pop_full(cls, node);
  if (full != nullptr) {
    if (is_real(prev)) depot::push_empty(cls, prev, node);
    fit(full, limit);
    set_previous(p, p.loaded);
    set_loaded(p, full);
    bound_if_large(tc, cls, node);
    return pop(full);
  }
  set_previous(p, prev);  // empty, or the sentinel: back in its slot
  // 3. Fill the loaded magazine from the slabs (a single-threaded process
  //    runs its decay passes here and in free_slow's depot trips).
  decay::maybe_tick();
  Magazine* m = p.loaded;
  if (!is_real(m)) {
    m = depot::get_empty(cls, node);
    if (m == nullptr) return out_of_memory();
    set_loaded(p, m);
    mark_large(tc, cls);  // the refill below may fail and leave m empty in the slot
  }
  fit(m, limit);
  const uint32_t want = refill_count(cls, p, slots, m->cap);
  // A slab is kept for this thread (slab.cc) once its refills of the class
  // have grown to whole magazines (slow start, refill_count): a thread that
  // takes a few objects of many classes (fifty threads at once,
  // tests/override/thread_exit.cc) would otherwise keep a partly used slab of
  // each from the others: 108-113 MiB mapped there against 88-92. Never by a
  // refill of one block (the classes above kOneBlockAbove, whose magazine of
  // a capacity of one it fills: a light user of the class, not a grown one).
  const bool keep = want > 1 && want == m->cap;
  uint32_t n = slab::refill(cls, m->objs, want, tc->owner_tag, node, keep);
  if (n == 0) return out_of_memory();
  p.refilled = want;
  set_mag_count(m, n);
  bound_if_large(tc, cls, node);
  return pop(m);
}

}  // namespace

void* alloc_slow(unsigned cls) {
  // Refused (a slab needed memory the OS would not map): once more, from the
  // top, after magslab gives back what holds address space.
  return heap::or_after_reclaim([cls] { return alloc_slow_once(cls); });
}

namespace {

// A full remote magazine whose first and last objects come from slabs of one
// running thread (the same owner tag in their page words) goes to that
// thread's inbox for the class instead of the depot: the objects go back to
// the thread that refills from their slabs, which hands them out again as its
// own, rather than to whichever thread misses next — usually the freeing
// thread itself, which then hands them out and frees them as remote again,
// for good (larson at 2 threads: 24 % of all frees; docs/benchmarks.md). A
// magazine already in the inbox is displaced to the depot (the newest stays:
// its objects are the most recently touched) — until kUnclaimedSends were
// displaced since the owner last missed in the class (and looked at its
// inbox). Then the owner does not need its objects back: it has enough of its
// own in the class, or is idle (a main thread waiting in pthread_join whose
// blocks the workers free). From the depot they would go to whichever thread
// misses next — usually the sender, which would free them as remote again,
// and send them here again: larson at 2 threads kept 15 % of all its frees
// remote that way, 99.97 % of the inbox magazines never taken
// (docs/benchmarks.md, stop 27). So from then on, until the owner misses, a
// full remote magazine goes back to its slabs, and so does what waits in the
// inbox; the next refill takes the objects with their slab, which becomes the
// refilling thread's own. But only from a sender that allocates the class
// itself (`sender_uses`: it has loaded a magazine of it). A consumer's
// magazines keep going to the inbox and the depot however many the owner
// leaves unclaimed: the consumer never takes them back from the depot, and
// its owner is a producer that is only waiting (a full queue) — the slabs
// cost a class-lock trip in the consumer's free and another in the
// producer's next refill (xmalloc at 2 threads: 71,000 of each a second, 8 %
// of its time in slab::release_pass, free's p99.9 1.4 us against mimalloc's
// 0.13; stop 39). Small classes only: large
// blocks keep the depot, whose per-thread byte bound (bound_large_classes)
// the inbox would escape. The tag is a hint as everywhere: a stale cache
// pointer only gives another thread objects that are not its own. But an
// owner that exits must not keep a magazine in the inbox of its pooled cache
// (nobody would count or take it): the exit ends the tag, then drains its
// inboxes; a sender exchanges, then reads the tag again and takes back
// whatever is in the inbox if the tag has ended. All four are seq_cst, so
// one of the two sees the other's write.
// One NUMA node only: a magazine can hold objects of several owners (only
// the first and last are looked at), which on several nodes could hand the
// owner memory of another node; there the depot sorts magazines by node
// (depot.cc, home_of) as before.
// `ends`: the owner tags of r's first and last objects (0 for none).
constexpr uint8_t kUnclaimedSends = 3;
bool send_to_owner(ThreadCache* tc, unsigned cls, Magazine* r, const uint64_t (&ends)[2],
                   unsigned node, bool sender_uses) {
  const uint64_t owner = ends[0];
  if (cls >= kNumSmallClasses || owner == 0 || ends[1] != owner || numa::nodes() != 1) return false;
  // acquire: pairs with current()'s release; the cache read below is the tag's.
  if (owner == tc->owner_tag || running_slot(owner).load(std::memory_order_acquire) != owner)
    return false;
  // acquire: the cache may be newer than the tag read above (see g_running_cache).
  ThreadCache* dst = running_cache(owner).load(std::memory_order_acquire);
  if (dst == nullptr || dst == tc) return false;
  std::atomic_ref<Magazine*> in(dst->inbox[cls]);
  // relaxed: a hint (claimed_inbox); concurrent senders may lose a count.
  std::atomic_ref<uint8_t> unclaimed(dst->inbox_unclaimed[cls]);
  const uint8_t n = unclaimed.load(std::memory_order_relaxed);
  if (n >= kUnclaimedSends && sender_uses) {
    release_to_slabs(cls, r, node);
    // acquire (the exchange): the waiting magazine's objects and count, from its sender.
    if (in.load(std::memory_order_relaxed) != nullptr) {
      if (Magazine* old = in.exchange(nullptr, std::memory_order_acquire))
        release_to_slabs(cls, old, node);
    }
    return true;
  }
  // seq_cst (and so release: r's objects and count to the taker; acquire:
  // the displaced magazine's, from another sender).
  Magazine* old = in.exchange(r, std::memory_order_seq_cst);
  // A decay thread parked with nothing left looks at the inbox again (a
  // displaced magazine's depot put below would wake it too; a first one does
  // not, and the sender may block right after: a review found it left to the
  // parked thread's 10 s bounded sleep).
  decay_event::note_hint();
  if (old != nullptr) {
    // Counted up to the threshold only (a consumer's sends go on past it).
    if (n < kUnclaimedSends)
      unclaimed.store(static_cast<uint8_t>(n + 1), std::memory_order_relaxed);
    retire(cls, old, node);
  }
  if (running_slot(owner).load(std::memory_order_seq_cst) != owner) {
    // The owner is exiting (or gone): take back what its drain may miss.
    if (Magazine* m = in.exchange(nullptr, std::memory_order_seq_cst)) retire(cls, m, node);
  }
  return true;
}

// Free of another thread's object: to the remote magazine; a full one goes to
// its objects' owner (send_to_owner), else to the depot (or, past its limit,
// to the slabs), and an empty one takes its place.
void free_remote(ThreadCache* tc, ThreadCache::Pair& pr, void* p, unsigned cls) {
  Magazine* r = pr.remote;
  if (r->count < r->cap) return push(r, p);
  const unsigned node = node_now();
  Magazine* e = depot::get_empty(cls, node);
  if (e == nullptr) {
    stats::count(cls, stats::kRemoteFree);
    slab::release(cls, &p, 1);
    return;
  }
  fit(e, note_remote_trade(pr, cls, !is_real(r)));
  // Counted once the magazine has left the slot (count_remote_frees). (0: the
  // sentinel, at the thread's first remote free.)
  const uint32_t remote_frees = r->count;
  auto owner_of = [](void* o) {
    return word_owner(pagemap::lookup_word(reinterpret_cast<uintptr_t>(o)));
  };
  uint64_t ends[2] = {};
  if (r->count != 0) {
    ends[0] = owner_of(r->objs[0]);
    ends[1] = owner_of(r->objs[r->count - 1]);
  }
  // A thread that never loaded a magazine of the class allocates none of it.
  if (send_to_owner(tc, cls, r, ends, node, is_real(pr.loaded))) {
    set_remote(pr, e);
    count_remote_frees(cls, remote_frees);
    push(e, p);
    return;
  }
  // Slabs whose refilling thread has exited: nobody is left to share their
  // lines with, so they become this thread's, and these objects, when it
  // frees them again, its own (larson's generations: 35-46% of all frees were
  // remote, through the depot, before; docs/benchmarks.md). A search that
  // finds none is not repeated until another thread exits: a pool of threads
  // that live on pays for one (mstress at 2 threads: 1.2% of the time in
  // slab::adopt when every full remote magazine was searched). But a
  // magazine whose first or last object's owner has exited is always
  // searched: that slab at least is there to adopt, whatever an earlier
  // magazine of running owners found (larson at 4 threads: 29% of full remote
  // magazines went to the depot unsearched, their owner gone, after a mixed
  // one had quieted the search). Both ends: the first object may be the one
  // whose free found the previous magazine full, and be in a slab adopted then.
  uint64_t ended = g_tags_ended.load(std::memory_order_relaxed);
  bool end_gone = false;
  for (uint64_t t : ends) end_gone |= t != 0 && t != tc->owner_tag && tag_gone(t);
  if ((end_gone || ended != tc->adopt_quiet) && r->count != 0 &&
      slab::adopt(cls, r->objs, r->count, tc->owner_tag, node, tag_gone) == 0)
    tc->adopt_quiet = ended;
  retire(cls, r, node);  // to its objects' node's depot (or their slabs)
  set_remote(pr, e);
  count_remote_frees(cls, remote_frees);
  push(e, p);
  bound_if_large(tc, cls, node);
}

}  // namespace

void free_slow(void* p, unsigned cls, uint64_t owner) {
  // First: an object already in some magazine must not also go to its slab.
  // (The key is set before the first object is handed out; 0 would mean
  // "none yet", and free_key_match clears the word to 0.)
  uint64_t key = g_free_key.load(std::memory_order_relaxed);
  if (key != 0 && *static_cast<uint64_t*>(p) == key) return free_key_match(p, cls, owner);
  ThreadCache* tc = current();
  if (tc == nullptr) {
    slab::release(cls, &p, 1);  // no cache: straight to the slab (which checks for a double free)
    return;
  }
  honour_flush_request(tc);
  // A remote free's trade too: a consumer's class is in use (its remote
  // magazine must not go stale, flush_idle), and so is its previous magazine.
  note_class_use(tc, cls);
  flush_idle_if_asked(tc, cls);
  ThreadCache::Pair& pr = tc->cls[cls];
  // The cache may have just been created: decide again against the real one.
  if (owner != tc->owner_tag) return free_remote(tc, pr, p, cls);
  Magazine* loaded = pr.loaded;
  if (loaded->count < loaded->cap) return push(loaded, p);  // cache just created
  Magazine* prev = take_previous(pr);
  // 1. The previous magazine is empty: swap it in.
  if (is_real(prev) && prev->count == 0) {
    fit(prev, note_swap(pr, cls));
    set_previous(pr, loaded);
    set_loaded(pr, prev);
    push(prev, p);
    return note_full_previous();
  }
  // 2. Loaded (and previous) are full, or not there yet: get an empty magazine,
  //    hand the full previous to the depot (or the slabs, past the depot's
  //    limit), and shift loaded to previous.
  const unsigned node = node_now();
  Magazine* e = depot::get_empty(cls, node);
  if (e == nullptr) {
    set_previous(pr, prev);
    slab::release(cls, &p, 1);
    return;
  }
  decay::maybe_tick();
  if (is_real(prev) && !stash_put(tc, cls, prev)) retire(cls, prev, node);
  fit(e, note_trade(pr, cls, !is_real(loaded)));
  set_previous(pr, loaded);
  set_loaded(pr, e);
  push(e, p);
  if (is_real(loaded)) note_full_previous();
  bound_if_large(tc, cls, node);
}

void free_key_match(void* p, unsigned cls, uint64_t owner) {
  auto holds = [p](const Magazine* m) {
    return std::find(m->objs, m->objs + m->count, p) != m->objs + m->count;
  };
  auto double_free = [&](const char* where) {
    platform::misuse(Misuse::kDoubleFree, p, BlockInfo::small(cls, kClasses[cls].size, where));
  };
  ThreadCache* tc = current();
  if (tc != nullptr) {
    ThreadCache::Pair& pr = tc->cls[cls];
    Magazine* prev = take_previous(pr);
    for (Magazine* m : {pr.loaded, prev, pr.remote})
      if (holds(m)) double_free("already in this thread's magazine");
    set_previous(pr, prev);
    // Its inbox: taken to be searched (senders exchange it), then put back;
    // one sent meanwhile is displaced to the depot, as a sender would.
    if (Magazine* in = take_inbox(tc, cls)) {
      const bool found = holds(in);
      // seq_cst: as send_to_owner's exchange (release: in's objects to a later taker).
      if (Magazine* sent = std::atomic_ref<Magazine*>(tc->inbox[cls]).exchange(in))
        retire(cls, sent, node_now());
      if (found) double_free("already in this thread's inbox");
    }
    // Its stash: taken to be searched, then put back (a trim_all meanwhile finds none).
    if (Magazine* list = take_stash(tc, cls)) {
      bool found = false;
      for (Magazine* m = list; m != nullptr && !found; m = stash_next(m)) found = holds(m);
      put_stash(tc, cls, list);
      if (found) double_free("already in this thread's magazine");
    }
  }
  if (slab::is_free_in_slab(cls, p)) double_free("already free in its slab");
  // The program's data happened to equal the key: a legitimate free. Clear the
  // word so the next check does not take this path, then free normally.
  *static_cast<uint64_t*>(p) = 0;
  free_slow(p, cls, owner);
}

void flush_current() {
  ThreadCache* tc = t_cache;
  if (is_owned_cache(tc)) flush(tc);
}

void retire_current() {
  ThreadCache* tc = t_cache;
  if (is_owned_cache(tc)) retire_all(tc);
}

void request_flush_all() { g_flush_epoch.fetch_add(1, std::memory_order_relaxed); }

namespace {
// tc's magazines of class c that another thread may take while tc's own runs
// — its previous one and its inbox's (each slot exchanged whole; nullptr or
// the empty sentinel: none) and its stash (a list published whole) — retired
// to the depot (or the slabs). Returns the objects moved. For
// take_previous_all, and for a fork child's caches of threads it does not have.
// take_shared_of hands each to sink(m) instead (take_previous_all retires
// them after its walk).
template <class Sink>
size_t take_shared_of(ThreadCache* tc, unsigned c, Sink sink) {
  size_t moved = 0;
  for (Magazine* m : {take_previous(tc->cls[c]), take_inbox(tc, c)}) {
    if (m == nullptr || !is_real(m)) continue;
    moved += m->count;
    sink(m);
  }
  return moved + take_stash_of(tc, c, sink);
}
size_t retire_shared_of(ThreadCache* tc, unsigned c, unsigned node) {
  return take_shared_of(tc, c, [&](Magazine* m) { retire(c, m, node); });
}

// Magazines a walk of the registry took from other threads' caches (each by
// its exchange: whoever exchanges first owns it), on a list of the walker's
// own through their links, retired after the walk without the registry
// lock: a new thread's registration and every thread's exit take it, and
// retiring (class locks, slab bitmaps, the page heap) 500 idle threads' full
// stashes held it for 143 ms of CPU (stop 54's bug hunt). The walkers run
// inside the decay pass lock (a pass, or magslab_trim_all's NoPassScope):
// no stats call, other trim or fork sees the taken ones in between.
void add_taken(Magazine*& list, Magazine* m) {
  if (!is_real(m)) return;  // nullptr, or the empty sentinel: nothing
  // relaxed: the list is the walker's own until retire_taken.
  m->link.next.store(list == nullptr ? nullptr : &list->link, std::memory_order_relaxed);
  list = m;
}
void retire_taken(Magazine* list, unsigned node) {
  for (Magazine* m = list; m != nullptr;) {
    auto* next = reinterpret_cast<Magazine*>(m->link.next.load(std::memory_order_relaxed));
    if (auto hook = g_taken_retire_hook.load(std::memory_order_relaxed); MAGSLAB_UNLIKELY(hook))
      hook(m);
    retire(m->cls, m, node);
    m = next;
  }
}
}  // namespace

size_t take_previous_all() {
  const unsigned node = node_now();
  size_t moved = 0;
  // The walk under the registry lock, so no cache leaves it meanwhile (an
  // exiting thread's retire_all may take the same slots first: whoever
  // exchanges first owns the magazine); the retiring after it (add_taken).
  Magazine* taken = nullptr;
  {
    LockGuard g(g_registry_lock);
    for (ThreadCache* tc = g_registry; tc != nullptr; tc = tc->reg_next)
      for (unsigned c = 0; c < kNumClasses; ++c)
        moved += take_shared_of(tc, c, [&taken](Magazine* m) { add_taken(taken, m); });
  }
  retire_taken(taken, node);
  return moved;
}

bool decay_stashes(uint64_t now) {
  const unsigned node = node_now();
  bool held = false;
  // Inbox marks are tick numbers (1..255, 0: none), not pass counts: passes
  // may run back to back (the background thread's look before it parks, a
  // wake-up for new work), and an inbox must wait a whole tick (100-300 ms)
  // after a pass first found it before one takes it.
  const auto tick_mark = [](uint64_t t) {
    return static_cast<uint8_t>(t / decay::kTickNs % 255 + 1);
  };
  const uint8_t cur = tick_mark(now),
                prev = tick_mark(now >= decay::kTickNs ? now - decay::kTickNs : 0);
  // The same for class_idle, whose marks stop below kIdleStale.
  const auto idle_mark = [](uint64_t t) {
    return static_cast<uint8_t>(t / decay::kTickNs % (kIdleStale - 1) + 1);
  };
  const uint8_t idle_cur = idle_mark(now),
                idle_prev = idle_mark(now >= decay::kTickNs ? now - decay::kTickNs : 0);
  // The walk under the registry lock, the retiring after it (add_taken).
  Magazine* taken = nullptr;
  const auto take = [&taken](Magazine* m) { add_taken(taken, m); };
  {
    LockGuard g(g_registry_lock);
    for (ThreadCache* tc = g_registry; tc != nullptr; tc = tc->reg_next) {
      // The previous magazine of a class whose slow paths the owner did not run
      // since the last pass goes to the depot (a thread that stopped using the
      // class: a pool's worker blocked for its next job, a program past a
      // phase), whose own decay gives it back. 8 such threads that had each
      // used every class up to 8 KiB held 36 MiB three seconds after they
      // stopped (mimalloc 6.5): two magazines of each class (stop 39). Whoever
      // exchanges first owns it (take_previous); a class in use that misses
      // later trades with the depot instead of swapping, once a pass at most.
      // The loaded and remote magazines are the owner's to give back: a class
      // unused for a whole tick is marked stale for it (flush_idle).
      for (unsigned c = 0; c < kNumClasses; ++c) {
        std::atomic_ref<uint8_t> used(tc->class_used[c]);
        std::atomic_ref<uint8_t> idle(tc->class_idle[c]);  // relaxed: see flush_idle
        ThreadCache::Pair& p = tc->cls[c];
        const bool real = is_real(read_previous(p));  // a look: the exchange decides
        const uint8_t since = idle.load(std::memory_order_relaxed);
        if (used.load(std::memory_order_relaxed) != 0) {  // relaxed: see note_class_use
          used.store(0, std::memory_order_relaxed);
          held |= real;
          if (since != 0) idle.store(0, std::memory_order_relaxed);
          continue;
        }
        if (real) take(take_previous(p));
        if (!is_real(read_loaded(p)) && !is_real(read_remote(p))) continue;
        if (since == 0) {
          idle.store(idle_cur, std::memory_order_relaxed);
          held = true;  // passes go on until it is stale (then it is the owner's)
        } else if (since == kIdleStale || (since != idle_cur && since != idle_prev)) {
          // Raised again at every pass that finds a stale class still holding a
          // magazine: the owner's clear (flush_idle) may land after this store
          // while its look at the class came before the mark (relaxed both ways:
          // store buffering), and the class would wait for its next use.
          if (since != kIdleStale) idle.store(kIdleStale, std::memory_order_relaxed);
          std::atomic_ref<uint8_t> flag(tc->idle_flush);
          if (flag.load(std::memory_order_relaxed) == 0) flag.store(1, std::memory_order_relaxed);
        } else {
          held = true;
        }
      }
      for (unsigned c = 0; c < kNumSmallClasses; ++c) {
        // The inbox: a magazine there at passes a whole tick apart that its
        // owner did not look for in between is taken (whoever exchanges first
        // owns it; a sender's newer one taken early only reaches the depot
        // sooner). A magazine there keeps the passes coming until it is gone.
        std::atomic_ref<Magazine*> in(tc->inbox[c]);
        if (in.load(std::memory_order_relaxed) != nullptr) {  // relaxed: a look, as below
          std::atomic_ref<uint8_t> aged(tc->inbox_aged[c]);
          held = true;
          // relaxed: see claimed_inbox.
          const uint8_t mark = aged.load(std::memory_order_relaxed);
          if (mark == 0) {
            aged.store(cur, std::memory_order_relaxed);
          } else if (mark != cur && mark != prev) {
            if (Magazine* m = take_inbox(tc, c)) {
              aged.store(0, std::memory_order_relaxed);
              take(m);
            }
          }
        }
        std::atomic_ref<Magazine*> s(tc->stash[c]);
        if (s.load(std::memory_order_relaxed) == nullptr)
          continue;  // relaxed: a look; the drain exchanges
        std::atomic_ref<uint8_t> used(tc->stash_used[c]);
        // relaxed: see note_stash_use.
        if (used.load(std::memory_order_relaxed) != 0) {
          used.store(0, std::memory_order_relaxed);
          held = true;
          continue;
        }
        take_stash_of(tc, c, take);
      }
    }
  }
  retire_taken(taken, node);
  return held;
}

namespace {
// g_caches_made when the last sweep began (reap_exited; decay passes only,
// one at a time: decay's pass lock).
uint64_t g_reap_swept = 0;
}  // namespace

bool reap_exited() {
  // relaxed: see g_caches_made.
  const uint64_t made = g_caches_made.load(std::memory_order_relaxed);
  if (made == g_reap_swept) return false;  // every cache was looked at since it was made
  g_reap_swept = made;
  // Gone caches are given back outside the registry lock (give_back takes
  // it), a batch at a time; a walk that fills the batch is followed by another.
  constexpr unsigned kBatch = 32;
  for (unsigned n = kBatch; n == kBatch;) {
    ThreadCache* gone[kBatch];
    n = 0;
    {
      LockGuard g(g_registry_lock);
      for (ThreadCache* tc = g_registry; tc != nullptr && n < kBatch; tc = tc->reg_next)
        if (tc->alive.owner_gone()) gone[n++] = tc;
    }
    // Their threads run no code any more, and their exit destructors never
    // will: nothing but this pass reads or writes those caches (a fork()
    // waits for the pass; take_previous_all and stats use the exchanges and
    // relaxed reads they use on a live thread's cache).
    for (unsigned k = 0; k < n; ++k) give_back(gone[k], false);
  }
  return g_caches_made.load(std::memory_order_relaxed) != g_reap_swept;
}

void lock_for_fork() { g_registry_lock.lock_for_fork(); }
void unlock_after_fork_parent() { g_registry_lock.unlock_after_fork(); }

void reset_after_fork_child() {
  ThreadCache* self = t_cache;
  // The other threads' blocks live on in the child (it may free them); their
  // counts must not leave with their caches.
  for (ThreadCache* tc = g_registry; tc != nullptr; tc = tc->reg_next) {
    if (tc == self) continue;
    fold_requested(tc);
    tag_ended(tc->owner_tag);  // its thread does not exist here
    slab::disown(tc->owner_tag);
    // Its stash: consistent here (a list is published whole; one its thread
    // held at the fork reads as empty), and only reachable now. So are its
    // previous magazines and its inbox's: each slot is exchanged whole
    // (take_previous, take_inbox — magslab_trim_all takes them from a running
    // thread the same way), and one its thread had taken out at the fork
    // reads as empty. Its loaded and remote magazines, which its fast paths
    // change without atomics (one may have been mid-push), the child loses:
    // a bounded leak. The slab and depot locks are free again; the
    // registry's order holds.
    const unsigned node = node_now();
    for (unsigned c = 0; c < kNumClasses; ++c) {
      // Its loaded and remote magazines' objects: free, not live (stats
      // subtract them; until stop 51's bug hunt they read as live for good),
      // and the frees into the remote one were made (remote_frees keeps
      // them; it went back). A count read here is within one object of what
      // its thread's fast path was doing at the fork.
      ThreadCache::Pair& p = tc->cls[c];
      const uint32_t remote = mag_count(read_remote(p));
      g_lost_in_fork[c] += mag_count(read_loaded(p)) + remote;
      if (remote != 0) stats::count(c, stats::kRemoteFree, remote);
      retire_shared_of(tc, c, node);
    }
  }
  g_registry = nullptr;
  if (is_owned_cache(self)) {
    // The parent's thread holds its `alive` mutex; this one is a new thread
    // (another id, an empty robust list): it takes a fresh one.
    self->alive.hold(/*fresh=*/true);
    self->reg_prev = self->reg_next = nullptr;
    g_registry = self;
  }
  g_registry_lock.unlock_after_fork();
}

void cached_objects(CachedCounts* out) {
  for (size_t& o : out->objects) o = 0;
  for (size_t& o : out->remote) o = 0;
  LockGuard g(g_registry_lock);
  for (unsigned c = 0; c < kNumClasses; ++c) out->lost[c] = g_lost_in_fork[c];
  for (ThreadCache* tc = g_registry; tc != nullptr; tc = tc->reg_next) {
    for (unsigned c = 0; c < kNumClasses; ++c) {
      out->objects[c] += mag_count(read_loaded(tc->cls[c]));
      out->objects[c] += mag_count(read_previous(tc->cls[c]));
      uint32_t remote = mag_count(read_remote(tc->cls[c]));
      out->objects[c] += remote;
      out->remote[c] += remote;
      // acquire: as take_inbox; the magazine may be taken meanwhile (its
      // count is then read as the thread pops it, like loaded's).
      if (Magazine* in = std::atomic_ref<Magazine*>(tc->inbox[c]).load(std::memory_order_acquire))
        out->objects[c] += mag_count(in);
      // Its stash (acquire: as take_stash). Exact while its owner makes no
      // call; otherwise the owner may take the head meanwhile and the walk
      // read magazines since handed on (type-stable: only counts are off),
      // bounded by the stash's length.
      if (c < kNumSmallClasses) {
        Magazine* m = std::atomic_ref<Magazine*>(tc->stash[c]).load(std::memory_order_acquire);
        for (uint32_t i = 0; m != nullptr && i < kStashMags; ++i, m = stash_next(m))
          out->objects[c] += mag_count(m);
      }
    }
  }
}

size_t live_caches() {
  LockGuard g(g_registry_lock);
  size_t n = 0;
  for (ThreadCache* tc = g_registry; tc != nullptr; tc = tc->reg_next) ++n;
  return n;
}

int64_t requested_sum() {
  LockGuard g(g_registry_lock);
  int64_t sum = requested::g_folded.load(std::memory_order_relaxed);
  for (ThreadCache* tc = g_registry; tc != nullptr; tc = tc->reg_next)
    sum += std::atomic_ref<int64_t>(tc->requested).load(std::memory_order_relaxed);
  return sum;
}

}  // namespace cache
}  // namespace magslab
