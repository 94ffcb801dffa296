// small/thread_cache: per thread and class, a loaded and a previous magazine
// (Bonwick & Adams 2001). The fast paths below touch only the calling thread's
// cache: no atomics (relaxed atomic_ref stores are plain moves), no locks, no
// system calls, and no "is this thread initialised" test — a new thread's cache
// pointer is the shared sentinel, whose magazines are the empty sentinel
// magazine, so its first call misses into the slow path, which sets it up.
#pragma once

#include <pthread.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "platform/platform.h"
#include "small/depot.h"
#include "small/magazine.h"
#include "small/size_classes.h"
#include "small/slab.h"

namespace magslab {

// Objects the thread frees that came from slabs another thread refilled from
// (the owner tag in their page words, slab.h) go to the `remote` magazine, never to `loaded`: this
// thread does not hand them out again itself. A full remote magazine goes to its objects' owner
// (ThreadCache::inbox) or to the depot, whence it reaches whichever thread runs out next —
// producer/consumer traffic still circulates as whole magazines — but a thread that frees an
// object it was handed does not keep reusing that object
// next to the cache lines its allocating thread still works on (passive false sharing: Hoard's
// cache-scratch).
struct alignas(kCacheLine) ThreadCache {
  struct alignas(32) Pair {  // 32 bytes: indexing by class is a shift
    Magazine* loaded;        // alloc pops from / free of an own object pushes to this one
    Magazine* previous;      // the one before: full or empty, swapped in on a miss
    Magazine* remote;        // frees of other threads' objects; full, to their owner or the depot
    // Objects the last slab refill of this class asked for; 0 before the first.
    // Refills start small and double up to the magazine's capacity (slow
    // start, thread_cache.cc), so a thread that uses a few objects of a class
    // does not take a whole magazine of them. Owner only; in the padding.
    uint16_t refilled = 0;
    // The capacity this thread gives the magazines it loads (limit) and its
    // remote magazines (rlimit), at most a magazine's slots; 0: not set yet,
    // the initial limit. They follow the traffic (thread_cache.cc, "Magazine
    // limits"): `swaps` counts loaded/previous swaps since the last trade with
    // the depot or the slabs (up to 4), `seen` notes the own-side traffic
    // since the last remote trade. Owner only; in the padding.
    uint16_t limit = 0;
    uint16_t rlimit = 0;
    uint8_t swaps = 0;
    uint8_t seen = 0;
  };
  // This cache's tag in the page words of the slabs it refills from (slab.h),
  // new each time the cache is given to a thread; 0 in the two sentinels.
  // Owner only. First, so that cls[c] lies at 32 × (c + 1): free indexes it
  // with the page word's class bits as they are.
  uint64_t owner_tag = 0;
  Pair cls[kNumClasses];
  ThreadCache* reg_next = nullptr;  // registry of live caches (for stats)
  // Exact mode (lib/small/requested.h): requested bytes of slab-class blocks this
  // thread allocated minus those it freed (negative for a consumer). Written
  // by the owner only, read by magslab_stats: relaxed atomic_ref accesses.
  int64_t requested = 0;
  ThreadCache* reg_prev = nullptr;
  StackLink recycle;
  // The flush request (cache::request_flush_all) this thread last honoured.
  // Owner only.
  uint64_t flush_epoch = 0;
  // Large classes whose slots may hold a real magazine: bit c - kNumSmallClasses.
  // Set by every large-class slow path that installs one, cleared only when all
  // three slots hold the empty sentinel (cache::bound_large_classes), so the
  // walk over the thread's large classes skips the ones it never used.
  // Owner only.
  uint32_t large_held = 0;
  // g_tags_ended (thread_cache.cc) when a full remote magazine last held no
  // object of an exited thread's slab: until another thread exits, no later
  // one is searched (slab::adopt). Owner only.
  uint64_t adopt_quiet = ~uint64_t{0};
  // Check mode's quarantine ring of this cache's threads (api/check.cc); nullptr
  // until the first free in check mode, and always in release builds. It stays
  // with the cache across thread exit and recycling. Owner only.
  void* check_ring = nullptr;
  // Per small class, at most one full magazine of this thread's own objects
  // that another thread freed (send_to_owner in thread_cache.cc hands it here
  // instead of to the depot), taken by this thread's next alloc miss of the
  // class. nullptr: none. Only ever exchanged (by senders, the owner, trim,
  // the exit); on lines of their own, away from the Pairs.
  alignas(kCacheLine) Magazine* inbox[kNumClasses] = {};
  // Per small class, how many magazines senders displaced from the inbox
  // since this thread last missed in the class and looked there
  // (send_to_owner: past a few, a sender that allocates the class itself
  // sends its full remote magazines, and what waits in the inbox, back to
  // their slabs, not to the inbox and the depot). Senders
  // count it up, the owner's alloc_slow clears it; a lost update only moves
  // the count by one. Relaxed atomic_ref accesses; next to the inboxes, which
  // senders write anyway.
  uint8_t inbox_unclaimed[kNumClasses] = {};
  // Per class, the decay tick (1..255) at which a pass found a magazine in
  // the inbox, 0: none; the owner clears it when it looks at its inbox
  // (claimed_inbox). A pass at least a tick later that finds it still set and
  // a magazine there takes that magazine to the depot: an owner that makes no
  // call any more does not keep what others freed for it (thread_cache.cc,
  // decay_stashes). Relaxed atomic_ref accesses.
  uint8_t inbox_aged[kNumClasses] = {};  // as inbox_unclaimed: claimed_inbox runs for every class
  // Per small class, this thread's own full magazines that its frees
  // overflowed, which would otherwise go to the depot, where whichever thread
  // misses next takes them (thread_cache.cc, "The stash"): a list through
  // Magazine::link, newest first, whose head's `pad` holds the list's length;
  // nullptr: empty. Taken whole by an exchange, by the owner (which puts back
  // what it leaves), by magslab_trim_all (take_previous_all), by decay
  // passes (decay_stashes) and, in a fork child, by the forking thread.
  Magazine* stash[kNumSmallClasses] = {};
  // Bytes of objects the owner put in its stash and has not taken out (owner
  // only), less stash_taken: those magslab_trim_all and decay took meanwhile
  // (added by them with relaxed atomic_ref accesses, subtracted by the owner).
  size_t stash_bytes = 0;
  size_t stash_taken = 0;
  // Per small class, 1 once the owner took from or added to its stash since
  // the last decay pass, which clears it; a pass that finds it 0 moves the
  // stash to the depot (thread_cache.cc, decay_stashes). Relaxed atomic_ref
  // accesses, by the owner and the decay pass.
  uint8_t stash_used[kNumSmallClasses] = {};
  // Per class, 1 once an own slow path of the owner (alloc_slow, free_slow)
  // ran for the class since the last decay pass, which clears it; a pass that
  // finds it 0 takes the class's previous magazine to the depot
  // (thread_cache.cc, decay_stashes). Relaxed atomic_ref accesses, by the
  // owner and the decay pass.
  uint8_t class_used[kNumClasses] = {};
  // Per class, how long the owner has not used it, for its loaded and remote
  // magazines, which no other thread may take (the fast paths use them
  // without an atomic): 0 while in use (class_used seen set), the decay tick
  // (1..254) at which a pass first found it unused while one of them held a
  // magazine, kIdleStale once a pass a whole tick later found it still so.
  // Written by decay passes, read by the owner. `idle_flush`: set by a pass
  // that made a class stale, cleared by the owner, whose next slow path (any
  // class) then gives those magazines back (thread_cache.cc, flush_idle).
  // Relaxed atomic_ref accesses: hints, as class_used.
  uint8_t class_idle[kNumClasses] = {};
  uint8_t idle_flush = 0;
  // A robust mutex its thread locks when it is given the cache and unlocks in
  // its exit destructor. Should the thread end without that destructor (its
  // first allocation came in the last round of pthread key destructors, after
  // which glibc runs none), the kernel marks the mutex's owner dead, and a
  // decay pass that finds it so retires the cache (cache::reap_exited). On a
  // line of its own: only those passes touch it while its thread runs.
  // `held` is written by the thread before the cache enters the registry and
  // after it leaves, and by a pass that finds the owner gone; read under
  // g_registry_lock.
  alignas(kCacheLine) platform::ThreadAlive alive;

  constexpr explicit ThreadCache(Magazine* empty) : cls{} {
    for (Pair& p : cls) p = Pair{empty, empty, empty, 0, 0, 0, 0, 0};
  }
};

static_assert(sizeof(ThreadCache::Pair) == 32, "the adaptive limits fit the Pair's padding");
static_assert(offsetof(ThreadCache, cls) == sizeof(ThreadCache::Pair) &&
                  sizeof(ThreadCache::Pair) == (size_t{1} << kWordSlotScale),
              "cls[c] lies at the byte offset 32 x (c + 1) that page words hold (slab.h)");

extern ThreadCache g_sentinel_cache;
// A thread's cache pointer after its exit destructor has flushed and recycled
// its cache. Like the sentinel, every magazine is the empty one, so alloc and
// free miss into the slow paths; unlike it, those never create a cache again
// (nothing would flush or unregister it: glibc runs the destructors of other
// keys, and its own per-thread cleanup, after ours). They work on the slabs
// directly, one object at a time.
extern ThreadCache g_exited_cache;

// A real cache, owned by the calling thread (not one of the two sentinels).
inline bool is_owned_cache(const ThreadCache* tc) {
  return tc != &g_sentinel_cache && tc != &g_exited_cache;
}
// initial-exec (MAGSLAB_TLS_MODEL, base/config.h): a fixed offset from %fs, no
// __tls_get_addr call (and no allocation by the dynamic loader) in the override
// and the static library; TLS descriptors in libmagslab.so, so that it can be
// dlopen()ed. constinit: no dynamic initialisation, so no TLS wrapper call on access.
extern constinit thread_local ThreadCache* t_cache MAGSLAB_TLS_MODEL;

namespace cache {

// Slow paths: never inlined, so the fast paths stay a few instructions.
MAGSLAB_NOINLINE void* alloc_slow(unsigned cls);
MAGSLAB_NOINLINE void free_slow(void* p, unsigned cls, uint64_t owner);
// A freed object's first word matched the key: double free, or a coincidence.
MAGSLAB_NOINLINE void free_key_match(void* p, unsigned cls, uint64_t owner);

// An object of the class whose Pair lies `off` bytes into a ThreadCache
// (32 × (class + 1): kSmallPairOffsets for malloc, which then needs no shift);
// when the loaded magazine is empty, slow(class) (alloc_slow, or a caller's
// variant of it: operator new's).
template <class Slow>
[[gnu::always_inline]] inline void* alloc_at(uint32_t off, Slow slow) {
  Magazine* m =
      reinterpret_cast<ThreadCache::Pair*>(reinterpret_cast<char*>(t_cache) + off)->loaded;
  uint32_t n = m->count;
  if (MAGSLAB_UNLIKELY(n == 0)) return slow(off / sizeof(ThreadCache::Pair) - 1);
  return mag_pop(m, n);
}
inline void* alloc_at(uint32_t off) {
  return alloc_at(off, [](unsigned cls) { return alloc_slow(cls); });
}
inline void* alloc(unsigned cls) {
  return alloc_at(static_cast<uint32_t>((cls + 1) * sizeof(ThreadCache::Pair)));
}

// kSmallLookup (size_classes.h) as Pair offsets: malloc's table.
inline constexpr std::array<uint16_t, kSmallLookup.size()> kSmallPairOffsets = [] {
  std::array<uint16_t, kSmallLookup.size()> t{};
  for (size_t i = 0; i < t.size(); ++i)
    t[i] = static_cast<uint16_t>((kSmallLookup[i] + 1) * sizeof(ThreadCache::Pair));
  return t;
}();

// The Pair of the class in page word w (slab.h): its class bits are the
// Pair's byte offset in the cache.
inline ThreadCache::Pair& pair_of_word(ThreadCache* tc, uint64_t w) {
  return *reinterpret_cast<ThreadCache::Pair*>(reinterpret_cast<char*>(tc) + word_slot(w));
}

// Free p, an object (validated by the caller) of a slab whose page word
// (slab.h) is w. The routing lives here: an object of a slab this thread
// refilled from last (the word's owner tag is the cache's) goes to the loaded
// magazine, any other to the remote one.
inline void free(void* p, uint64_t w) {
  ThreadCache* tc = t_cache;
  ThreadCache::Pair& pr = pair_of_word(tc, w);
  // Branch-free: which magazine a free goes to depends on data, not on a
  // pattern the predictor can learn (a thread that took over another's
  // objects frees a mix of both), and a mispredict costs more than the select.
  // Both loads (one line), then a conditional move: the owner bits of w and
  // the cache's tag agree iff their xor is below the owner field; the 50 %
  // probability keeps GCC from turning the select into a branch. 6
  // instructions; 8 for the shifted-index select before.
  Magazine* loaded = pr.loaded;
  Magazine* remote = pr.remote;
  bool own = (w ^ tc->owner_tag) < (uint64_t{1} << kOwnerTagShift);
  Magazine* m = __builtin_expect_with_probability(own, 1, 0.5) ? loaded : remote;
  uint32_t n = m->count;
  if (MAGSLAB_UNLIKELY(n == m->cap)) return free_slow(p, word_class(w), word_owner(w));
  if (MAGSLAB_UNLIKELY(*static_cast<uint64_t*>(p) == m->free_key))
    return free_key_match(p, word_class(w), word_owner(w));
  mag_push(m, n, p);
}

// Give the calling thread's magazines back (to the slabs); used by trim and
// at thread exit.
void flush_current();
// The calling thread's magazines go to the depot while it has room (warm for
// other threads; decay takes what nobody takes), the rest to the slabs, and
// the slabs kept for it to every thread: magslab_thread_idle().
void retire_current();
// Every thread with a cache flushes it (to the slabs) at its next slow path:
// magslab_trim_all(). A thread that makes no more calls keeps its loaded and
// remote magazines (its fast paths use them without a lock or an atomic) ...
void request_flush_all();
// ... but not its previous magazines: these every thread's cache gives up
// here, at once, to the depot (or the slabs, past its limit), whatever the
// owner is doing (thread_cache.cc, take_previous), and so do its inboxes
// (ThreadCache::inbox). Returns objects moved. Like decay_stashes, it holds
// the registry lock only for its walk.
size_t take_previous_all();
// A decay pass: every running thread's stash of a class its owner has not
// used since the previous call goes to the depot, and so do its previous
// magazine of a class whose slow paths it has not run since the previous
// call, and a magazine waiting in its inbox since the previous call that the
// owner has not looked at. true: stashes in use, previous magazines of
// classes in use, or inbox magazines remain. It holds the registry lock only
// for its walk, and retires what it took after it (since stop 54).
bool decay_stashes(uint64_t now);
// A decay pass: caches whose thread is gone without running its exit
// destructor (its first allocation came in the last round of pthread key
// destructors, after which glibc runs none) are retired as that destructor
// would have: objects to the depot, the cache out of the registry and back to
// the pool. One sweep of the registry after each new cache (a trylock per
// cache, no system call). true: a new cache is waiting for its sweep.
bool reap_exited();

// fork(): the registry lock is held across fork(); in the child only the
// forking thread exists, so the other threads' caches leave the registry
// (their magazines' objects are unreachable in the child: a bounded leak).
void lock_for_fork();
void unlock_after_fork_parent();
void reset_after_fork_child();

struct CachedCounts {
  size_t objects[kNumClasses];
  size_t remote[kNumClasses];  // of those, in remote magazines (frees not yet in stats events)
  // Not in `objects`: free objects a fork() child lost with the other threads'
  // loaded and remote magazines (neither live nor reusable there).
  size_t lost[kNumClasses];
};
// Thread caches in the registry (threads that own one now).
size_t live_caches();

// Objects held in all live threads' magazines, per class.
void cached_objects(CachedCounts* out);

// Tests only (nullptr otherwise), so a test can act at a point another
// thread may reach at any time, between two steps a race would otherwise hit
// for nanoseconds. Each runs on the thread it names, may block it (waiting
// for another thread to act), and must not allocate or free on it.
//  * g_swap_hook(cls): alloc_slow has just taken the previous magazine of
//    class cls out of its slot (take_previous) to look inside; a
//    magslab_trim_all() on another thread now finds the slot empty.
//  * g_exit_hook(tc): an exiting thread's cache tc is out of the registry and
//    its magazines and inboxes drained (retire_all), but its owner tag still
//    runs, so other threads may still send their full remote magazines to
//    its inboxes; give_back takes those after tag_ended.
//  * g_taken_retire_hook(m): a decay pass (decay_stashes) or
//    magslab_trim_all (take_previous_all) took magazine m off another
//    thread's cache (its previous slot, its inbox or its stash) and is about
//    to retire it to the depot or the slabs.
extern std::atomic<void (*)(unsigned)> g_swap_hook;
extern std::atomic<void (*)(ThreadCache*)> g_exit_hook;
extern std::atomic<void (*)(Magazine*)> g_taken_retire_hook;

// Exact mode: the sum of every thread's ThreadCache::requested and of what
// exited threads (and, in a forked child, the parent's other threads) left
// in requested::g_folded — live requested bytes of slab-class blocks.
int64_t requested_sum();

}  // namespace cache
}  // namespace magslab
