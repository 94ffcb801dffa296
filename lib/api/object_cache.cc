// api/object_cache: typed object caches (Bonwick 1994, kmem_cache) with per-thread
// magazines and a per-cache lock-free depot (Bonwick & Adams 2001), built from the
// heap's primitives: Magazine (small/magazine.h), TaggedStack (ds/), the metadata
// arena, and slabs that are blocks of the heap itself.
//
// Where an object is (the cache's equation, exact when the cache is quiescent):
//   slabs * objects_per_slab == free in slabs + carved
//   carved == live (handed out) + in thread magazines + in the depot
// Every object in a slab is constructed, free or not: constructors run when a
// slab is populated, destructors when it is reaped or the cache destroyed.
//
// Structures and who may touch them:
//  - magslab_cache: its geometry is constant after creation (read by the fast
//    paths of any thread); the slab lists and counts are under its `lock`; the
//    depot is lock-free.
//  - CacheTable: one per thread, reached through magslab_objcache_table_v2;
//    slot[id] holds the thread's loaded and previous magazine of the cache
//    with that id. Written by its thread (fast and slow paths, the inline ones
//    of magslab.hpp included), and by destroy() and a thread's exit under
//    g_lock. The registry of tables and the id -> cache table are under
//    g_lock.
//  - Magazines live in the metadata arena (never unmapped) and are recycled
//    through g_mag_pool (one TaggedStack per capacity), never freed.
//
// Lock order: g_lock -> a cache's lock -> the heap's locks (magslab_* calls).
// Constructors and destructors run with no magslab lock held, so they may use
// the heap and any cache, this one included — but for the destructors that
// destroy() runs, which must not use the cache they destroy (reported).
#include "api/object_cache.h"

#include <errno.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include "api/check.h"
#include "api/entry.h"
#include "base/config.h"
#include "base/format.h"
#include "base/lock.h"
#include "chunks/chunk_map.h"
#include "chunks/meta_arena.h"
#include "ds/tagged_stack.h"
#include "magslab/magslab.hpp"
#include "platform/check.h"
#include "platform/platform.h"
#include "small/magazine.h"

namespace magslab::objcache {
namespace {

// Objects above this are refused (EINVAL): slab offsets must fit 32 bits for
// the one-multiply offset check (slab_of_object()).
constexpr size_t kMaxObjectSize = size_t{256} << 20;
constexpr size_t kMaxAlign = kPageSize;
constexpr size_t kMinAlign = 8;
// The smallest slab, and the most objects one slab holds (bounds its bitmap).
constexpr size_t kMinSlab = size_t{16} << 10;
constexpr uint32_t kMaxObjectsPerSlab = 4096;
constexpr uint32_t kMinSlabObjects = 8;
// Magazine capacities, one pool of recycled magazines each: about 32 KiB of
// objects per magazine (as the heap's classes), 4 to 256 objects.
constexpr uint32_t kMagCaps[] = {4, 16, 64, 256};
constexpr unsigned kNumMagBuckets = sizeof(kMagCaps) / sizeof(kMagCaps[0]);
constexpr size_t kNameMax = 47;

}  // namespace

// At the start of every slab. The slab is a block of the heap aligned to its
// size, so an object's slab is its address masked (magslab_cache::slab_mask).
struct CacheSlab {
  // g_slab_key ^ the slab's address while it belongs to a cache; 0 once the
  // cache gives it up (reap, destroy), so a stale pointer is reported, never
  // taken for an object. Written before any object of the slab is handed out.
  uint64_t magic;
  magslab_cache* cache;
  // Under the cache's lock:
  CacheSlab* next;  // all slabs of the cache
  CacheSlab* prev;
  CacheSlab* pnext;  // slabs with a free object (partial or empty)
  CacheSlab* pprev;
  uint32_t nfree;        // == set bits of free_bits
  bool in_partial;       // == nfree > 0
  uint64_t free_bits[];  // bit i set: object i is free in the slab
};

}  // namespace magslab::objcache

using magslab::Lock;
using magslab::Magazine;
using magslab::TaggedStack;
using magslab::objcache::CacheSlab;

// The public handle (magslab.h).
struct magslab_cache {
  // Constant after creation; read by the fast paths.
  uint32_t id = 0;          // index of this cache's slot in every CacheTable
  uint32_t bucket = 0;      // magazine capacity: kMagCaps[bucket]
  uintptr_t slab_mask = 0;  // ~(slab_bytes - 1)
  uint64_t first_off = 0;   // offset of object 0 in its slab
  uint64_t span = 0;        // objects_per_slab * stride
  uint64_t div_magic = 0;  // ceil(2^64 / stride): off % stride == 0 <=> off * div_magic < div_magic
  size_t stride = 0;       // object size rounded up to the alignment
  size_t size = 0;
  size_t align = 0;
  size_t slab_bytes = 0;
  uint32_t nobj = 0;  // objects per slab
  uint32_t bitmap_words = 0;
  magslab_cache_ctor ctor = nullptr;
  magslab_cache_dtor dtor = nullptr;
  void* arg = nullptr;
  int64_t depot_limit = 0;  // most full magazines in the depot
  char name[magslab::objcache::kNameMax + 1] = {};
  // Set by destroy() before it gives anything up; its destructors' nested
  // calls on this cache (on the destroying thread: no other may use the cache
  // then, the caller's contract) read it and stop — an alloc in alloc_slow
  // (destroy empties the thread's slot first), a release in release_checked
  // (destroy moves the slab epoch, so every release goes there first), a
  // reap or a second destroy at their start.
  bool destroying = false;

  // The depot: full magazines, lock-free. relaxed counters: the limit and
  // stats; the stack itself publishes the magazines' contents.
  alignas(magslab::kCacheLine) TaggedStack full;
  std::atomic<int64_t> nfull{0};
  std::atomic<int64_t> full_objects{0};
  // relaxed: statistics; constructors run outside the lock.
  std::atomic<size_t> ctor_calls{0};
  std::atomic<size_t> dtor_calls{0};

  // Slabs, under lock.
  alignas(magslab::kCacheLine) Lock lock;
  CacheSlab* slabs = nullptr;
  CacheSlab* partial = nullptr;
  size_t nslabs = 0;
  size_t carved = 0;  // objects out of slabs: live + in magazines
};

namespace magslab::objcache {
namespace {

// A thread's magazines of one cache, and the two slabs this thread last found
// to be the cache's (check_release()), as the address of their first object:
// a thread's objects straddle a slab boundary as soon as other threads refill
// from the same slabs, and one entry then missed on every other release
// (pmr::map churn at 4 threads: 1 release in 7). Owner only but for the
// magazines, which destroy() and stats read under g_lock.
struct Slot {
  Magazine* loaded;              // acquire pops from / release pushes to this one
  Magazine* previous;            // the one before: full or empty, swapped in on a miss
  uintptr_t checked_first = 0;   // a slab of this cache as of slab_epoch() == checked_epoch
  uint64_t checked_epoch = 0;    // 0: nothing checked (the epoch starts at 1)
  uintptr_t checked_first2 = 0;  // the slab checked before, as of the same epoch; or checked_first
};

// Per thread: a slot per cache id below cap. Grown (replaced) under g_lock.
// (A plain aggregate: the two sentinels below are zero-initialised statics,
// which a flexible array member keeps from being constinit.)
struct CacheTable {
  uint32_t cap;
  CacheTable* reg_next;  // registry of live tables, under g_lock
  CacheTable* reg_prev;
  Slot slot[];
};

// A real table's thread holds a robust mutex (platform::ThreadAlive) from the
// table's making to its exit destructor (on_thread_exit), kept in front of the
// table in the same block (the table's layout is the header's:
// detail::cache_abi). A thread whose first cache call comes in the last round
// of pthread key destructors arms g_exit_key after glibc passed it, and glibc
// runs no further round: its table stayed registered, its magazines full, for
// good (a bug hunt of stop 47: 2000 such threads kept 2001 tables, 32 MiB of
// objects). reap_exited_tables() gives the table of a thread found gone back
// as the exit destructor would have, as the heap does for its thread caches
// (cache::reap_exited, docs/design.md). It runs when new threads' tables
// since the last sweep are half the registered ones (my_slot), and at every
// magslab_cache_reap and destroy.
//
// The table starts this far into the block: a sweep's trylock (a locked
// compare-exchange, which takes the line even when it fails) must not take
// the line of the table's cap, which every fast path reads (a review).
constexpr size_t kAliveBytes = 128;
static_assert(sizeof(platform::ThreadAlive) + kCacheLine <= kAliveBytes,
              "a line apart at any alignment");

// A thread's table before its first cache call (cap 0: every call misses into
// the slow path, which makes a real one), and after its exit flush (cap 0, and
// the slow path never makes one again: glibc runs other keys' destructors
// after ours; such late calls go to the slabs directly).
CacheTable g_no_table;
CacheTable g_exited_table;
}  // namespace
}  // namespace magslab::objcache

// The calling thread's table, and the slab epoch (slab_epoch()): exported, for the
// inline fast paths of magslab.hpp. constinit, and initial-exec (an
// %fs-relative load) except in libmagslab.so, which uses TLS descriptors to
// load with dlopen: MAGSLAB_TLS_MODEL, as t_cache.
namespace magslab::detail::cache_abi {
constinit __thread void* magslab_objcache_table_v2 MAGSLAB_TLS_MODEL = &objcache::g_no_table;
uint64_t magslab_objcache_epoch_v2 = 1;
}  // namespace magslab::detail::cache_abi

namespace magslab::objcache {
namespace {

using detail::cache_abi::magslab_objcache_epoch_v2;
using detail::cache_abi::magslab_objcache_table_v2;

// What the inline fast paths read (magslab.hpp, detail::cache_abi).
namespace abi = detail::cache_abi;
static_assert(offsetof(magslab_cache, id) == abi::kCacheId);
static_assert(offsetof(magslab_cache, slab_mask) == abi::kCacheSlabMask);
static_assert(offsetof(magslab_cache, first_off) == abi::kCacheFirstOff);
static_assert(offsetof(magslab_cache, span) == abi::kCacheSpan);
static_assert(offsetof(magslab_cache, div_magic) == abi::kCacheDivMagic);
static_assert(offsetof(CacheTable, cap) == abi::kTableCap);
static_assert(offsetof(CacheTable, slot) == abi::kTableSlots);
static_assert(sizeof(Slot) == abi::kSlotSize);
static_assert(offsetof(Slot, loaded) == abi::kSlotLoaded);
static_assert(offsetof(Slot, checked_first) == abi::kSlotCheckedFirst);
static_assert(offsetof(Slot, checked_epoch) == abi::kSlotCheckedEpoch);
static_assert(offsetof(Slot, checked_first2) == abi::kSlotCheckedFirst2);
static_assert(offsetof(Magazine, count) == abi::kMagCount);
static_assert(offsetof(Magazine, cap) == abi::kMagCap);
static_assert(offsetof(Magazine, objs) == abi::kMagObjs);

CacheTable* my_table() { return static_cast<CacheTable*>(magslab_objcache_table_v2); }
void set_my_table(CacheTable* t) { magslab_objcache_table_v2 = t; }

Lock g_lock;
CacheTable* g_tables = nullptr;          // live threads' tables, under g_lock
size_t g_ntables = 0;                    // in g_tables, under g_lock
size_t g_new_since_sweep = 0;            // new threads' tables since a sweep, under g_lock
constexpr size_t kSweepEvery = 32;       // the fewest between sweeps (my_slot)
magslab_cache** g_caches = nullptr;      // id -> cache (nullptr: free id), under g_lock
uint32_t g_ncaches = 0;                  // entries of g_caches, under g_lock
TaggedStack g_mag_pool[kNumMagBuckets];  // empty magazines, by capacity
// Written once (under g_lock, before the first cache exists); relaxed: every
// reader obtained its cache handle, hence the key, through the program's own
// synchronisation with the creating thread.
std::atomic<uint64_t> g_slab_key{0};
// magslab_objcache_epoch_v2 (above), all accesses atomic: bumped whenever any
// cache gives up a slab (reap, destroy), after its magic is cleared: a
// thread's memory of which slab it found to be its cache's
// (Slot::checked_first) holds only while this has not moved. Starts at 1, so a
// slot's 0 never matches.
std::atomic_ref<uint64_t> slab_epoch() {
  return std::atomic_ref<uint64_t>(magslab_objcache_epoch_v2);
}
pthread_key_t g_exit_key;
pthread_once_t g_once = PTHREAD_ONCE_INIT;
bool g_key_ok = false;

bool is_real(const Magazine* m) { return m != &g_empty_magazine; }

// Slot fields are read by other threads (stats, destroy, under g_lock):
// written with release so that a magazine's count is published with it.
void set_loaded(Slot& s, Magazine* m) {
  std::atomic_ref<Magazine*>(s.loaded).store(m, std::memory_order_release);
}
void set_previous(Slot& s, Magazine* m) {
  std::atomic_ref<Magazine*>(s.previous).store(m, std::memory_order_release);
}
Magazine* read_slot(Magazine*& f) {
  // acquire: pairs with set_loaded/set_previous; we then read the count.
  return std::atomic_ref<Magazine*>(f).load(std::memory_order_acquire);
}

// Objects leave and enter a magazine untouched: they are constructed (the
// heap's mag_pop/mag_push write its free key into the first word instead).
inline void* take(Magazine* m, uint32_t n) {
  MAGSLAB_CHECK(n > 0 && n <= m->cap && n == m->count, "cache magazine: pop outside its bounds");
  set_mag_count(m, n - 1);
  return m->objs[n - 1];
}
inline void put(Magazine* m, uint32_t n, void* p) {
  MAGSLAB_CHECK(n < m->cap && n == m->count, "cache magazine: push outside its bounds");
  m->objs[n] = p;
  set_mag_count(m, n + 1);
}

// ---- Magazines: the pool of empty ones, and a cache's depot of full ones ----
// ABA: every stack here is a TaggedStack (its tag changes on each push and pop),
// and magazines are never unmapped, so a stale read of a popped magazine's link
// is harmless; a magazine moves between the pool and any cache's depot, which
// changes both stacks' tags.

Magazine* get_empty(unsigned bucket) {
  if (StackLink* l = g_mag_pool[bucket].pop()) return reinterpret_cast<Magazine*>(l);
  uint32_t cap = kMagCaps[bucket];
  void* mem = meta::alloc(sizeof(Magazine) + cap * sizeof(void*));
  if (mem == nullptr) return nullptr;
  auto* m = new (mem) Magazine();
  m->cap = cap;
  m->cls = bucket;
  return m;
}

void put_empty(Magazine* m) {
  set_mag_count(m, 0);
  g_mag_pool[m->cls].push(&m->link);
}

Magazine* pop_full(magslab_cache* c) {
  auto* m = reinterpret_cast<Magazine*>(c->full.pop());
  if (m != nullptr) {
    c->nfull.fetch_sub(1, std::memory_order_relaxed);
    c->full_objects.fetch_sub(m->count, std::memory_order_relaxed);
  }
  return m;
}

bool push_full(magslab_cache* c, Magazine* m) {
  if (c->nfull.fetch_add(1, std::memory_order_relaxed) >= c->depot_limit) {
    c->nfull.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  c->full_objects.fetch_add(m->count, std::memory_order_relaxed);
  c->full.push(&m->link);
  return true;
}

// ---- Slabs ----

inline CacheSlab* slab_of(const magslab_cache* c, const void* p) {
  return reinterpret_cast<CacheSlab*>(reinterpret_cast<uintptr_t>(p) & c->slab_mask);
}
inline char* object(const magslab_cache* c, CacheSlab* s, uint32_t i) {
  return reinterpret_cast<char*>(s) + c->first_off + size_t{i} * c->stride;
}

void name_into(LineBuf& l, const magslab_cache* c) { l.str("\"").str(c->name).str("\""); }

// The cache whose slab holds p, or nullptr. Every slab size a cache can have
// (geometry(): powers of two from kMinSlab), smallest first: the first
// aligned base whose header is a live slab of that size is p's slab (the page
// map says the base is mapped before it is read, as in check_release()).
// Cold: for the report only — c's own mask finds no slab of c's where the
// owner's slabs are larger or smaller than c's.
const magslab_cache* owner_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  const uint64_t key = g_slab_key.load(std::memory_order_relaxed);  // relaxed: as check_release()
  for (size_t slab = kMinSlab; slab != 0 && slab <= (size_t{1} << 30); slab *= 2) {
    uintptr_t base = a & ~(slab - 1);
    if (pagemap::lookup(base).empty()) continue;
    // A heap address may still be unreadable (check mode keeps a freed huge
    // block PROT_NONE in quarantine): read the header without a fault (a
    // review found a SIGSEGV here instead of the report).
    struct {
      uint64_t magic;
      magslab_cache* cache;
    } h;
    static_assert(offsetof(CacheSlab, magic) == 0 && offsetof(CacheSlab, cache) == 8);
    if (!platform::read_if_readable(reinterpret_cast<const void*>(base), &h, sizeof h)) continue;
    if (h.magic == (key ^ base) && h.cache->slab_bytes == slab) return h.cache;
  }
  return nullptr;
}

// A release that check_release() refused: one line naming why, then abort.
[[noreturn]] MAGSLAB_COLD void bad_release(const magslab_cache* c, const void* p) {
  LineBuf l;
  l.str("invalid release of ").hex(reinterpret_cast<uintptr_t>(p)).str(" to cache ");
  name_into(l, c);
  const magslab_cache* owner = owner_of(p);
  if (owner == nullptr)
    l.str(" (not an object of any cache)");
  else if (owner != c) {
    l.str(" (an object of cache ");
    name_into(l, owner);
    l.str(")");
  } else
    l.str(" (inside an object of ").num(c->size).str(" B)");
  die(l);
}

// A destructor that destroy() runs called magslab_cache_alloc, _free, _reap
// or _destroy (what) on the cache it destroys, whose id and slabs destroy has
// given up; or one that a reap runs destroyed the cache it reaps (when says
// which): one line naming it, then abort (before stop 42, an alloc refilled
// from a slab about to be freed and a free was reported as "not an object of
// any cache"; before stop 52, a reap or destroy freed the slabs destroy, or
// the reap, was walking).
constexpr const char* kInDestroy = "from a destructor that magslab_cache_destroy runs for it";
[[noreturn]] MAGSLAB_COLD void used_while_destroyed(const magslab_cache* c, const char* what,
                                                    const char* when = kInDestroy) {
  LineBuf l;
  l.str("cache ");
  name_into(l, c);
  l.str(": ").str(what).str(" ").str(when);
  die(l);
}

// The cache the calling thread is reaping now (the innermost reap: a reap's
// destructor may reap another cache), else nullptr: destroy() refuses it, as
// the reap goes on with the cache. Per thread, not a count in the cache: a
// fork() child, whose one thread is the forking one, has exactly that
// thread's reaps (a first version counted reaps in the cache, and told a
// child forked while another thread reaped that its destroy ran under a reap:
// ObjectCacheMt.AForkChildDestroysACacheAnotherThreadWasReaping). A
// destructor that ends its thread (pthread_exit) during a reap leaves the
// cache here, for that thread's remaining key destructors only.
constinit __thread const magslab_cache* t_reaping MAGSLAB_TLS_MODEL = nullptr;

// off (from a slab's first object) a multiple of the stride: one multiply.
inline bool on_stride(const magslab_cache* c, uint64_t off) {
  return off * c->div_magic < c->div_magic;
}
// Whether a, an address in c's slab at base, is the start of an object.
inline bool object_start(const magslab_cache* c, uintptr_t a, uintptr_t base) {
  uint64_t off = a - base - c->first_off;  // wraps for a pointer into the header
  return off < c->span && on_stride(c, off);
}

// p must be the start of an object of one of c's slabs. O(1), and it reads no
// memory of ours it cannot read: the slab base is read only if the page map
// says the heap has that address mapped (a chunk — whole 4 MiB mapped — or a
// huge block, whose mapping starts at its slot: slabs above 1 MiB are at
// least a chunk and aligned to their size, so their base is a slot's start).
inline void check_release(const magslab_cache* c, const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uintptr_t base = a & c->slab_mask;
  // The page map's slot alone is not enough: a huge block's last slot may be
  // mapped only in part, and check mode makes a freed large block inaccessible
  // while it waits in quarantine (reviews found a SIGSEGV here for both).
  if (MAGSLAB_UNLIKELY(!api::heap_readable(reinterpret_cast<const void*>(base), sizeof(CacheSlab))))
    bad_release(c, p);
  const auto* s = reinterpret_cast<const CacheSlab*>(base);
  bool key_ok = s->magic == (g_slab_key.load(std::memory_order_relaxed) ^ base);
  if (MAGSLAB_UNLIKELY(!key_ok || s->cache != c || !object_start(c, a, base))) bad_release(c, p);
}

// Populate a new slab: memory from the heap, every object constructed. No lock
// held (constructors may use magslab). nullptr, errno ENOMEM: no memory, or a
// constructor failed (the objects it had constructed are destructed). No
// cancellation meanwhile (platform::NoCancel): a constructor that reaches a
// cancellation point (a connection's open(), a usleep) in a thread with a
// cancel pending unwound through here, leaking the slab, and through the C++
// wrapper's noexcept catch(...) (magslab.hpp), which swallowed glibc's forced
// unwind: "FATAL: exception not rethrown" and abort (stop 41's bug hunt).
CacheSlab* populate(magslab_cache* c) {
  const platform::NoCancel no_cancel;
  void* mem = magslab_aligned_alloc(c->slab_bytes, c->slab_bytes);
  if (mem == nullptr) return nullptr;  // errno: ENOMEM
  auto* s = static_cast<CacheSlab*>(mem);
  memset(s, 0, sizeof(CacheSlab) + c->bitmap_words * sizeof(uint64_t));
  s->cache = c;
  for (uint32_t i = 0; i < c->nobj; ++i) {
    if (c->ctor != nullptr && c->ctor(object(c, s, i), c->arg) != 0) {
      c->ctor_calls.fetch_add(i + 1, std::memory_order_relaxed);
      if (c->dtor != nullptr) {
        for (uint32_t k = 0; k < i; ++k) c->dtor(object(c, s, k), c->arg);
        c->dtor_calls.fetch_add(i, std::memory_order_relaxed);
      }
      magslab_free(mem);
      errno = ENOMEM;  // the C contract: NULL, errno set; C++ rethrows the constructor's exception
      return nullptr;
    }
    s->free_bits[i / 64] |= uint64_t{1} << (i % 64);
  }
  if (c->ctor != nullptr) c->ctor_calls.fetch_add(c->nobj, std::memory_order_relaxed);
  s->nfree = c->nobj;
  // Before any object is handed out; the objects reach other threads through
  // the program's synchronisation (or the depot's CAS), which publishes this.
  s->magic = g_slab_key.load(std::memory_order_relaxed) ^ reinterpret_cast<uintptr_t>(s);
  return s;
}

void partial_add(magslab_cache* c, CacheSlab* s) {
  s->pprev = nullptr;
  s->pnext = c->partial;
  if (c->partial != nullptr) c->partial->pprev = s;
  c->partial = s;
  s->in_partial = true;
}
void partial_remove(magslab_cache* c, CacheSlab* s) {
  if (s->pprev != nullptr)
    s->pprev->pnext = s->pnext;
  else
    c->partial = s->pnext;
  if (s->pnext != nullptr) s->pnext->pprev = s->pprev;
  s->in_partial = false;
}

// Caller holds c->lock.
void link_slab(magslab_cache* c, CacheSlab* s) {
  s->prev = nullptr;
  s->next = c->slabs;
  if (c->slabs != nullptr) c->slabs->prev = s;
  c->slabs = s;
  ++c->nslabs;
  partial_add(c, s);
}
void unlink_slab(magslab_cache* c, CacheSlab* s) {
  if (s->in_partial) partial_remove(c, s);
  if (s->prev != nullptr)
    s->prev->next = s->next;
  else
    c->slabs = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  --c->nslabs;
  s->magic = 0;  // from now on a release of its objects is reported
  // release: a thread that reads the new epoch and checks the slab again
  // reads its magic as 0.
  slab_epoch().fetch_add(1, std::memory_order_release);
}

// Up to n free objects out of the slabs into out[0..); caller holds c->lock.
uint32_t take_from_slabs(magslab_cache* c, void** out, uint32_t n) {
  uint32_t got = 0;
  while (got < n && c->partial != nullptr) {
    CacheSlab* s = c->partial;
    for (uint32_t w = 0; w < c->bitmap_words && got < n; ++w) {
      while (s->free_bits[w] != 0 && got < n) {
        unsigned b = static_cast<unsigned>(__builtin_ctzll(s->free_bits[w]));
        s->free_bits[w] &= s->free_bits[w] - 1;
        out[got++] = object(c, s, w * 64 + b);
        --s->nfree;
      }
    }
    if (s->nfree == 0) partial_remove(c, s);
  }
  c->carved += got;
  return got;
}

[[noreturn]] MAGSLAB_COLD void double_release(const magslab_cache* c, const void* p) {
  LineBuf l;
  l.str("double release of ").hex(reinterpret_cast<uintptr_t>(p)).str(" to cache ");
  name_into(l, c);
  l.str(" (already free in its slab)");
  die(l);
}

// Put n validated objects back into their slabs; caller holds c->lock.
void give_back_locked(magslab_cache* c, void* const* objs, uint32_t n) {
  for (uint32_t k = 0; k < n; ++k) {
    CacheSlab* s = slab_of(c, objs[k]);
    auto i = static_cast<uint32_t>((static_cast<char*>(objs[k]) - object(c, s, 0)) / c->stride);
    uint64_t bit = uint64_t{1} << (i % 64);
    if (MAGSLAB_UNLIKELY((s->free_bits[i / 64] & bit) != 0)) double_release(c, objs[k]);
    s->free_bits[i / 64] |= bit;
    if (s->nfree++ == 0) partial_add(c, s);
    MAGSLAB_CHECK(s->nfree <= c->nobj, "cache slab: more free objects than it holds");
  }
  MAGSLAB_CHECK(c->carved >= n, "cache: more objects returned than carved");
  c->carved -= n;
}

void give_back(magslab_cache* c, void* const* objs, uint32_t n) {
  LockGuard g(c->lock);
  give_back_locked(c, objs, n);
}

// Empty m into the depot (or, past its limit, the slabs); m goes to the pool.
void retire(magslab_cache* c, Magazine* m) {
  if (!is_real(m)) return;
  if (m->count != 0) {
    if (push_full(c, m)) return;
    give_back(c, m->objs, m->count);
  }
  put_empty(m);
}

// Empty m into the slabs; m goes to the pool.
void flush(magslab_cache* c, Magazine* m) {
  if (!is_real(m)) return;
  if (m->count != 0) give_back(c, m->objs, m->count);
  put_empty(m);
}

// A thread's magazines of c into the slabs; the slot is left empty.
void empty_slot(magslab_cache* c, Slot& s) {
  flush(c, s.loaded);
  flush(c, s.previous);
  set_loaded(s, &g_empty_magazine);
  set_previous(s, &g_empty_magazine);
}

// Up to n objects from the slabs, populating a new slab if none has a free
// object. 0: out of memory, or a constructor failed.
uint32_t refill(magslab_cache* c, void** out, uint32_t n) {
  {
    LockGuard g(c->lock);
    uint32_t got = take_from_slabs(c, out, n);
    if (got != 0) return got;
  }
  CacheSlab* s = populate(c);
  if (s == nullptr) return 0;
  LockGuard g(c->lock);
  link_slab(c, s);
  return take_from_slabs(c, out, n);
}

// ---- Thread tables ----

void on_thread_exit(void* arg);

void init_once() {
  // pthread_key_create does not allocate.
  g_key_ok = pthread_key_create(&g_exit_key, on_thread_exit) == 0;
}

platform::ThreadAlive* alive_of(CacheTable* t) {
  return reinterpret_cast<platform::ThreadAlive*>(reinterpret_cast<char*>(t) - kAliveBytes);
}
static_assert(kAliveBytes % alignof(CacheTable) == 0, "the table follows, aligned");

// t's block back to the heap; `own`: by its thread, which lets go of its
// mutex first (a reaped table's was unlocked by owner_gone()).
void free_table(CacheTable* t, bool own) {
  platform::ThreadAlive* a = alive_of(t);
  if (own) a->release();
  magslab_free(a);
}

void registry_remove(CacheTable* t) {
  --g_ntables;
  if (t->reg_prev != nullptr)
    t->reg_prev->reg_next = t->reg_next;
  else
    g_tables = t->reg_next;
  if (t->reg_next != nullptr) t->reg_next->reg_prev = t->reg_prev;
}

void reap_exited_tables();

// The calling thread's slot for c, making or growing its table; nullptr after
// the thread's exit flush, or without memory.
MAGSLAB_NOINLINE Slot* my_slot(magslab_cache* c) {
  CacheTable* t = my_table();
  if (c->id < t->cap) return &t->slot[c->id];
  if (t == &g_exited_table) return nullptr;
  pthread_once(&g_once, init_once);
  uint32_t cap = 16;
  while (cap <= c->id) cap *= 2;
  // errno kept, here and around pthread_setspecific (which may allocate):
  // without a table the caller goes to the slabs, and answers a failure there
  // itself; a call served that way leaves errno alone (stop 51: a thread's
  // first cache call with no memory for its table left ENOMEM behind a
  // successful alloc and a free).
  const int saved_errno = errno;
  // Not the program's: check mode's leak report leaves it out (api/check.h).
  void* mem = api::malloc_from(kAliveBytes + sizeof(CacheTable) + cap * sizeof(Slot),
                               api::own_block_site());
  if (mem == nullptr) {
    errno = saved_errno;
    return nullptr;
  }
  (new (mem) platform::ThreadAlive)->hold();
  auto* nt = new (static_cast<char*>(mem) + kAliveBytes) CacheTable();
  bool sweep = false;
  nt->cap = cap;
  for (uint32_t i = 0; i < cap; ++i)
    nt->slot[i] = Slot{&g_empty_magazine, &g_empty_magazine, 0, 0, 0};
  {
    // Under g_lock: destroy() and stats read and write the slots of tables in
    // the registry, so the old table is copied and replaced in one step.
    LockGuard g(g_lock);
    if (t != &g_no_table) {
      for (uint32_t i = 0; i < t->cap; ++i) nt->slot[i] = t->slot[i];
      registry_remove(t);
    }
    nt->reg_prev = nullptr;
    nt->reg_next = g_tables;
    if (g_tables != nullptr) g_tables->reg_prev = nt;
    g_tables = nt;
    ++g_ntables;
    // A new thread's first table: the tables of threads gone without their
    // exit destructor go back once the new tables since the last sweep are
    // as many as half the registered ones (at least kSweepEvery): a sweep's
    // walk costs one trylock a table, so a thread costs O(1) of them on
    // average (one sweep per new table made starting N threads O(N^2): a
    // review), and the tables waiting for one stay below half the live ones.
    if (t == &g_no_table && ++g_new_since_sweep >= std::max(kSweepEvery, g_ntables / 2)) {
      g_new_since_sweep = 0;
      sweep = true;
    }
    // Set before setspecific: for a key past glibc's first 32 it allocates.
    set_my_table(nt);
  }
  if (t != &g_no_table) free_table(t, true);
  if (g_key_ok) pthread_setspecific(g_exit_key, nt);
  errno = saved_errno;
  if (sweep) reap_exited_tables();
  return &nt->slot[c->id];
}

// Under g_lock: t's magazines go back and t leaves the registry; its thread
// is exiting (on_thread_exit) or gone (reap_exited_tables).
void give_back_locked(CacheTable* t) {
  // A non-empty slot's cache is live: destroy() empties a cache's slot in
  // every registered table before its id is reused.
  for (uint32_t id = 0; id < t->cap; ++id) {
    Slot& s = t->slot[id];
    if (!is_real(s.loaded) && !is_real(s.previous)) continue;
    magslab_cache* c = g_caches[id];
    MAGSLAB_CHECK(c != nullptr, "cache table: a slot of a destroyed cache");
    // To the slabs, not the depot (until stop 35): a magazine holds the
    // objects in the order the thread freed them, so the next threads each
    // popping one got objects interleaved with each other's, cache line by
    // cache line (pmr::map churn with threads made and ended, as Google
    // Benchmark does: 444 of 979 lines shared, 1.9x the time). From the
    // slabs, refills hand out runs in address order.
    flush(c, s.loaded);
    flush(c, s.previous);
    set_loaded(s, &g_empty_magazine);
    set_previous(s, &g_empty_magazine);
  }
  registry_remove(t);
}

void on_thread_exit(void* arg) {
  auto* t = static_cast<CacheTable*>(arg);
  {
    LockGuard g(g_lock);
    give_back_locked(t);
    set_my_table(&g_exited_table);
  }
  free_table(t, true);
}

void reap_exited_tables() {
  // Given back under g_lock, freed outside it, a batch at a time; a walk that
  // fills the batch is followed by another. Only a thread that no longer
  // exists is reaped: nothing else touches its table.
  constexpr unsigned kBatch = 32;
  for (unsigned n = kBatch; n == kBatch;) {
    CacheTable* gone[kBatch];
    n = 0;
    {
      LockGuard g(g_lock);
      for (CacheTable* t = g_tables; t != nullptr && n < kBatch;) {
        CacheTable* next = t->reg_next;
        if (alive_of(t)->owner_gone()) {
          give_back_locked(t);
          gone[n++] = t;
        }
        t = next;
      }
    }
    for (unsigned k = 0; k < n; ++k) free_table(gone[k], false);
  }
}

// ---- Slow paths ----

void* fail(int err) {
  errno = err;
  return nullptr;
}

// One object straight from the slabs (a thread after its exit flush, or
// without memory for a table or magazine).
void* alloc_uncached(magslab_cache* c) {
  void* p = nullptr;
  return refill(c, &p, 1) == 0 ? nullptr : p;
}

MAGSLAB_NOINLINE void* alloc_slow(magslab_cache* c) {
  if (MAGSLAB_UNLIKELY(c->destroying)) used_while_destroyed(c, "magslab_cache_alloc");
  Slot* sl = my_slot(c);
  if (sl == nullptr) return alloc_uncached(c);
  Slot& s = *sl;
  // 1. The previous magazine has objects: swap it in.
  if (s.previous->count != 0) {
    Magazine* m = s.previous;
    set_previous(s, s.loaded);
    set_loaded(s, m);
    return take(m, m->count);
  }
  // 2. A full magazine from the depot; the empty previous goes to the pool.
  if (Magazine* full = pop_full(c)) {
    if (is_real(s.previous)) put_empty(s.previous);
    set_previous(s, s.loaded);
    set_loaded(s, full);
    return take(full, full->count);
  }
  // 3. Fill an empty magazine from the slabs, out of the slot while it fills:
  //    the refill may populate a slab, whose constructors may acquire and
  //    release objects of this very cache on this thread (allowed), and those
  //    nested calls must find their own magazines, not this one half filled.
  Magazine* m = s.loaded;
  if (is_real(m))
    set_loaded(s, &g_empty_magazine);  // empty (else step 1 or the fast path had served)
  else if ((m = get_empty(c->bucket)) == nullptr)
    return alloc_uncached(c);
  uint32_t n = refill(c, m->objs, m->cap);
  if (n == 0) {
    put_empty(m);
    return nullptr;
  }
  set_mag_count(m, n);
  void* p = take(m, n);
  // The slot again: a constructor that used a cache new to this thread moved
  // its table (my_slot). Install m unless a nested call loaded a magazine
  // meanwhile: then m goes to the depot (or the slabs) as a full previous would.
  Slot* now = my_slot(c);
  if (now != nullptr && !is_real(now->loaded))
    set_loaded(*now, m);
  else if (m->count == 0)
    put_empty(m);
  else
    retire(c, m);
  return p;
}

MAGSLAB_NOINLINE void free_slow(magslab_cache* c, void* p) {
  Slot* sl = my_slot(c);
  if (sl == nullptr) return give_back(c, &p, 1);
  Slot& s = *sl;
  Magazine* loaded = s.loaded;
  if (loaded->count < loaded->cap) return put(loaded, loaded->count, p);  // table just made
  Magazine* prev = s.previous;
  // 1. The previous magazine is empty: swap it in.
  if (is_real(prev) && prev->count == 0) {
    set_previous(s, loaded);
    set_loaded(s, prev);
    return put(prev, 0, p);
  }
  // 2. Both full (or not there yet): the full previous goes to the depot (or
  //    the slabs), loaded becomes previous, an empty one is loaded.
  Magazine* e = get_empty(c->bucket);
  if (e == nullptr) return give_back(c, &p, 1);
  retire(c, prev);
  set_previous(s, loaded);
  set_loaded(s, e);
  put(e, 0, p);
}

// ---- Creation ----

size_t bitmap_words(uint32_t n) { return (size_t{n} + 63) / 64; }

// Objects of `stride` bytes at `align` that fit a slab of `slab` bytes after
// its header (whose bitmap grows with the count).
uint32_t objects_fitting(size_t slab, size_t stride, size_t align, size_t* first_off) {
  if (slab <= sizeof(CacheSlab)) return 0;
  size_t n = (slab - sizeof(CacheSlab)) / stride;
  if (n > kMaxObjectsPerSlab) n = kMaxObjectsPerSlab;
  for (; n > 0; --n) {
    size_t off = align_up(sizeof(CacheSlab) + bitmap_words(static_cast<uint32_t>(n)) * 8, align);
    if (off + n * stride <= slab) {
      *first_off = off;
      return static_cast<uint32_t>(n);
    }
  }
  return 0;
}

// Slab geometry: a power of two, at least kMinSlab: the smallest holding at
// least 8 objects up to 512 KiB, else 1 MiB (a huge block, as the heap serves
// 1 MiB at 1 MiB alignment: a mapping of its own or the huge cache's) if it
// holds one, else the smallest size from 4 MiB up that holds one (a huge block
// aligned to a page-map slot: see check_release()).
bool geometry(magslab_cache* c) {
  size_t first_off = 0;
  for (size_t slab = kMinSlab; slab <= (size_t{1} << 30); slab *= 2) {
    if (slab > kHugeThreshold && slab < kChunkSize) continue;
    uint32_t n = objects_fitting(slab, c->stride, c->align, &first_off);
    bool enough = n >= kMinSlabObjects || (n >= 1 && slab >= kHugeThreshold);
    if (!enough) continue;
    c->slab_bytes = slab;
    c->slab_mask = ~(slab - 1);
    c->nobj = n;
    c->first_off = first_off;
    c->bitmap_words = static_cast<uint32_t>(bitmap_words(n));
    c->span = uint64_t{n} * c->stride;
    c->div_magic = ~uint64_t{0} / c->stride + 1;
    return true;
  }
  return false;
}

void choose_magazines(magslab_cache* c) {
  size_t want = (size_t{32} << 10) / c->stride;
  unsigned b = 0;
  while (b + 1 < kNumMagBuckets && kMagCaps[b + 1] <= want) ++b;
  c->bucket = b;
  // About 1 MiB of objects in the depot, at least 4 magazines.
  int64_t per_mag = int64_t{kMagCaps[b]} * static_cast<int64_t>(c->stride);
  int64_t n = (int64_t{1} << 20) / per_mag;
  c->depot_limit = n < 4 ? 4 : n;
}

// An id for c (the lowest free one), under g_lock. false without memory.
bool assign_id(magslab_cache* c) {
  for (uint32_t i = 0; i < g_ncaches; ++i) {
    if (g_caches[i] == nullptr) {
      g_caches[i] = c;
      c->id = i;
      return true;
    }
  }
  uint32_t n = g_ncaches == 0 ? 16 : g_ncaches * 2;
  // Not the program's: check mode's leak report leaves it out (api/check.h).
  auto* grown = static_cast<magslab_cache**>(
      api::calloc_from(n, sizeof(magslab_cache*), api::own_block_site()));
  if (grown == nullptr) return false;
  if (g_ncaches != 0) memcpy(grown, g_caches, g_ncaches * sizeof(magslab_cache*));
  magslab_free(g_caches);
  g_caches = grown;
  c->id = g_ncaches;
  g_caches[g_ncaches] = c;
  g_ncaches = n;
  return true;
}

// Destruct the free objects of s (all of them: every object when all_objects).
// No cancellation meanwhile, as in populate(): callers may hold a lock.
void destruct_objects(magslab_cache* c, CacheSlab* s, bool all_objects) {
  if (c->dtor == nullptr) return;
  const platform::NoCancel no_cancel;
  size_t n = 0;
  for (uint32_t i = 0; i < c->nobj; ++i) {
    if (all_objects || (s->free_bits[i / 64] >> (i % 64) & 1) != 0) {
      c->dtor(object(c, s, i), c->arg);
      ++n;
    }
  }
  c->dtor_calls.fetch_add(n, std::memory_order_relaxed);
}

// Report the live objects of a destroyed cache in one line.
void report_live(const magslab_cache* c, size_t live) {
  LineBuf l;
  l.str("magslab: cache ");
  name_into(l, c);
  l.str(" destroyed with ").num(live).str(live == 1 ? " live object" : " live objects");
  l.str(" of ").num(c->size).str(" B:");
  constexpr size_t kListed = 8;
  size_t listed = 0;
  for (CacheSlab* s = c->slabs; s != nullptr && listed < kListed; s = s->next) {
    for (uint32_t i = 0; i < c->nobj && listed < kListed; ++i) {
      if ((s->free_bits[i / 64] >> (i % 64) & 1) != 0) continue;
      l.str(listed == 0 ? " " : ", ").hex(reinterpret_cast<uintptr_t>(object(c, s, i)));
      ++listed;
    }
  }
  if (live > listed) l.str(", ...");
  l.end();
  platform::write_stderr(l.data(), l.size());
}

// Release p to c, checked in full, for a thread whose slot sl (nullptr: it
// has none yet) does not remember p's slab as c's: the slab it finds to be
// c's is remembered (Slot::checked_first), so the thread's next releases into
// it need only the offset check (magslab_cache_free). A slab given up since
// (reap, destroy) moves the epoch, so a stale pointer into it comes back
// here, and is reported.
MAGSLAB_NOINLINE void release_checked(magslab_cache* c, Slot* sl, void* p) {
  if (MAGSLAB_UNLIKELY(c->destroying)) used_while_destroyed(c, "magslab_cache_free");
  // acquire: pairs with the release in unlink_slab()/destroy(): a slab given
  // up before this read has magic 0 for the check below.
  uint64_t e = slab_epoch().load(std::memory_order_acquire);
  check_release(c, p);
  if (sl != nullptr) {
    // Both entries hold for one epoch: a new one forgets the older slab.
    const uintptr_t first = (reinterpret_cast<uintptr_t>(p) & c->slab_mask) + c->first_off;
    sl->checked_first2 = sl->checked_epoch == e ? sl->checked_first : first;
    sl->checked_first = first;
    sl->checked_epoch = e;
    Magazine* m = sl->loaded;
    if (m->count < m->cap) return put(m, m->count, p);
  }
  free_slow(c, p);
}

}  // namespace

void die(const LineBuf& l) {
  // platform::fatal_msg adds the "magslab: " prefix and the newline.
  char line[LineBuf::kCapacity + 1];
  memcpy(line, l.data(), l.size());
  line[l.size()] = '\0';
  platform::fatal_msg(line);
}

size_t destroy(magslab_cache* c, bool free_live) {
  if (c == nullptr) return 0;
  // A destructor this destroy runs: c is half given up (stop 52's bug hunt).
  if (MAGSLAB_UNLIKELY(c->destroying)) used_while_destroyed(c, "magslab_cache_destroy");
  // A destructor a reap of c runs: the reap goes on with c and the slabs it
  // took out (stop 52's bug hunt: it ran the freed cache's destructor on them).
  if (MAGSLAB_UNLIKELY(t_reaping == c))
    used_while_destroyed(c, "magslab_cache_destroy", "while a magslab_cache_reap of it runs");
  reap_exited_tables();  // their magazines of c go back with the rest
  {
    LockGuard g(g_lock);
    c->destroying = true;  // before the slots are emptied: a nested call misses to a slow path
    // Every thread's magazines of c, then the depot, back into the slabs.
    for (CacheTable* t = g_tables; t != nullptr; t = t->reg_next)
      if (c->id < t->cap) empty_slot(c, t->slot[c->id]);
    while (Magazine* m = pop_full(c)) flush(c, m);
    // Every slab given up before the id is: a cache that takes the id next
    // must find no thread remembering a slab of c (a review finding, stop 35:
    // the magic was cleared and the epoch moved only after the destructors,
    // and a thread's first full check into the new cache meanwhile kept c's
    // slab as its second entry). release: as in unlink_slab().
    for (CacheSlab* s = c->slabs; s != nullptr; s = s->next) s->magic = 0;
    slab_epoch().fetch_add(1, std::memory_order_release);
    g_caches[c->id] = nullptr;  // the id may be reused from now on
  }
  // Nothing else may use c now (the caller's contract): no lock needed.
  size_t live = 0;
  for (CacheSlab* s = c->slabs; s != nullptr; s = s->next) live += c->nobj - s->nfree;
  if (live != 0 && !free_live) report_live(c, live);
  for (CacheSlab* s = c->slabs; s != nullptr;) {
    CacheSlab* next = s->next;
    bool has_live = s->nfree != c->nobj;
    destruct_objects(c, s, free_live);
    // A slab with live objects stays allocated: the program still holds them.
    if (!has_live || free_live) magslab_free(s);
    s = next;
  }
  c->~magslab_cache();
  magslab_free(c);
  return free_live ? 0 : live;
}

void lock_for_fork() {
  g_lock.lock_for_fork();
  for (uint32_t i = 0; i < g_ncaches; ++i)
    if (g_caches[i] != nullptr) g_caches[i]->lock.lock_for_fork();
}

void unlock_after_fork() {
  for (uint32_t i = g_ncaches; i-- > 0;)
    if (g_caches[i] != nullptr) g_caches[i]->lock.unlock_after_fork();
  g_lock.unlock_after_fork();
}

void forget_other_threads_after_fork() {
  // The other threads' tables leave the registry, with what their magazines
  // hold (a bounded leak in the child, as the heap's thread caches). A thread
  // the fork caught inside a slow path left its slot naming one magazine
  // twice, or one it had already given to the pool or a depot (slot updates
  // are plain stores, made after the hand-over); a destroy() in the child
  // that flushed such a slot put a magazine in the pool twice, and magazines
  // were then shared between caches (found at stop 37:
  // ObjectCacheMt.AForkChildDestroysACacheOtherThreadsWereUsing). g_lock is
  // held (lock_for_fork) and this thread is the only one.
  CacheTable* mine = my_table();
  for (CacheTable* t = g_tables; t != nullptr;) {
    CacheTable* next = t->reg_next;
    if (t != mine) registry_remove(t);
    t = next;
  }
  // The parent's thread holds this table's mutex; this one is a new thread
  // (another id, an empty robust list): it takes a fresh one, or it would
  // never be reaped, and its own unlock at exit would fail.
  if (mine != &g_no_table && mine != &g_exited_table) alive_of(mine)->hold(/*fresh=*/true);
}

}  // namespace magslab::objcache

using namespace magslab;
using namespace magslab::objcache;

extern "C" {

magslab_cache* magslab_cache_create(const char* name, size_t size, size_t align,
                                    magslab_cache_ctor ctor, magslab_cache_dtor dtor, void* arg) {
  if (align == 0) align = 16;
  if (size == 0 || size > kMaxObjectSize || !is_pow2(align) || align > kMaxAlign)
    return static_cast<magslab_cache*>(fail(EINVAL));
  if (align < kMinAlign) align = kMinAlign;
  void* mem = magslab_aligned_alloc(kCacheLine, sizeof(magslab_cache));
  if (mem == nullptr) return nullptr;  // errno: ENOMEM
  auto* c = new (mem) magslab_cache();
  c->size = size;
  c->align = align;
  c->stride = align_up(size, align);
  c->ctor = ctor;
  c->dtor = dtor;
  c->arg = arg;
  size_t i = 0;
  for (; name != nullptr && name[i] != '\0' && i < kNameMax; ++i) c->name[i] = name[i];
  c->name[i] = '\0';
  if (!geometry(c)) {
    magslab_free(mem);
    return static_cast<magslab_cache*>(fail(EINVAL));
  }
  choose_magazines(c);
  LockGuard g(g_lock);
  if (g_slab_key.load(std::memory_order_relaxed) == 0)
    g_slab_key.store(platform::random_u64(), std::memory_order_relaxed);
  if (!assign_id(c)) {
    c->~magslab_cache();
    magslab_free(mem);
    return static_cast<magslab_cache*>(fail(ENOMEM));
  }
  return c;
}

// The fast paths: the calling thread's loaded magazine of c, reached through
// one TLS load and the cache's id. No lock, no atomic read-modify-write.
void* magslab_cache_alloc(magslab_cache* c) {
  CacheTable* t = my_table();
  uint32_t id = c->id;
  if (MAGSLAB_LIKELY(id < t->cap)) {
    Magazine* m = t->slot[id].loaded;
    uint32_t n = m->count;
    if (MAGSLAB_LIKELY(n != 0)) return take(m, n);
  }
  return alloc_slow(c);
}

void magslab_cache_free(magslab_cache* c, void* p) {
  if (MAGSLAB_UNLIKELY(p == nullptr)) return;
  CacheTable* t = my_table();
  uint32_t id = c->id;
  if (MAGSLAB_UNLIKELY(id >= t->cap)) return release_checked(c, nullptr, p);
  Slot& s = t->slot[id];
  auto a = reinterpret_cast<uintptr_t>(p);
  // A slab this thread last found to be c's (the offset from its first
  // object within its span), and no slab given up since: only the stride
  // check. relaxed: a newer epoch than this read only sends the release to
  // the full check (release_checked's acquire).
  uint64_t off = a - s.checked_first;
  if (off >= c->span) off = a - s.checked_first2;
  if (MAGSLAB_UNLIKELY(s.checked_epoch != slab_epoch().load(std::memory_order_relaxed) ||
                       off >= c->span))
    return release_checked(c, &s, p);
  if (MAGSLAB_UNLIKELY(!on_stride(c, off))) bad_release(c, p);
  Magazine* m = s.loaded;
  uint32_t n = m->count;
  if (MAGSLAB_LIKELY(n < m->cap)) return put(m, n, p);
  free_slow(c, p);
}

size_t magslab_cache_reap(magslab_cache* c) {
  // From a destructor that destroy() runs for c: its slab list is the one
  // destroy walks and frees (stop 52's bug hunt: the reap freed those slabs
  // under it, and the heap then named a double free the program never made).
  if (MAGSLAB_UNLIKELY(c->destroying)) used_while_destroyed(c, "magslab_cache_reap");
  const magslab_cache* const outer = t_reaping;  // (a reap from a reap's destructor)
  t_reaping = c;
  // Exited threads' tables (reap_exited_tables), the calling thread's
  // magazines and the depot, into the slabs.
  reap_exited_tables();
  CacheTable* t = my_table();
  if (c->id < t->cap) empty_slot(c, t->slot[c->id]);
  while (Magazine* m = pop_full(c)) flush(c, m);
  // Unlink the slabs with no object out under the lock; destruct and free them
  // outside it (destructors may use magslab).
  CacheSlab* reaped = nullptr;
  {
    LockGuard g(c->lock);
    for (CacheSlab* s = c->slabs; s != nullptr;) {
      CacheSlab* next = s->next;
      if (s->nfree == c->nobj) {
        unlink_slab(c, s);
        s->next = reaped;
        reaped = s;
      }
      s = next;
    }
  }
  size_t bytes = 0;
  while (reaped != nullptr) {
    CacheSlab* next = reaped->next;
    destruct_objects(c, reaped, true);
    magslab_free(reaped);
    bytes += c->slab_bytes;
    reaped = next;
  }
  t_reaping = outer;
  return bytes;
}

size_t magslab_cache_destroy(magslab_cache* c) { return objcache::destroy(c, false); }

void magslab_cache_stats(const magslab_cache* cc, struct magslab_cache_stats* out) {
  if (out == nullptr) return;
  auto* c = const_cast<magslab_cache*>(cc);
  size_t in_threads = 0, carved = 0, slabs = 0;
  {
    LockGuard g(g_lock);
    for (CacheTable* t = g_tables; t != nullptr; t = t->reg_next) {
      if (c->id >= t->cap) continue;
      Slot& s = t->slot[c->id];
      in_threads += mag_count(read_slot(s.loaded)) + mag_count(read_slot(s.previous));
    }
    LockGuard l(c->lock);
    carved = c->carved;
    slabs = c->nslabs;
  }
  int64_t depot = c->full_objects.load(std::memory_order_relaxed);
  size_t in_mags = in_threads + (depot > 0 ? static_cast<size_t>(depot) : 0);
  size_t live = carved > in_mags ? carved - in_mags : 0;
  out->object_size = c->size;
  out->object_align = c->align;
  out->slab_size = c->slab_bytes;
  out->objects_per_slab = c->nobj;
  out->slabs = slabs;
  out->live = live;
  out->cached = slabs * c->nobj - live;
  out->in_magazines = in_mags;
  out->ctor_calls = c->ctor_calls.load(std::memory_order_relaxed);
  out->dtor_calls = c->dtor_calls.load(std::memory_order_relaxed);
}

}  // extern "C"
