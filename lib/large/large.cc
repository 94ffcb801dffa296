// large/large: page-run blocks, and huge mappings with their cache.
#include "large/large.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <new>

#include "base/config.h"
#include "base/lock.h"
#include "chunks/decay_event.h"
#include "chunks/meta_arena.h"
#include "chunks/page_heap.h"
#include "platform/numa.h"
#include "platform/options.h"
#include "platform/platform.h"
#include "stats/counters.h"

namespace magslab {

// The descriptor of a huge block, registered in the page map (as an Extent)
// for every chunk slot its mapping covers. From the metadata arena, recycled
// through g_extent_pool, never freed: a stale pointer reads a descriptor.
struct alignas(kCacheLine) Extent {
  // What the block is: handed out, parked by a thread that freed it (still
  // registered and mapped, see "Parked huge blocks" in large.cc), handed out
  // and being resized by a realloc that dropped the lock around its mremap
  // (resize_huge_locked), or none of these (freed, or a descriptor in the
  // pool). The transitions that hand a block over are compare-exchanges: of a
  // free and a racing free, a free and a reclaim, or a free and a realloc,
  // exactly one wins.
  enum State : uint8_t { kGone = 0, kLive = 1, kParked = 2, kResizing = 3 };
  std::atomic<uint8_t> state{kGone};
  // base, size, mapped, dirty and request are written under g_huge_lock
  // (request also by the thread that takes a parked block) and read without it
  // by park(), take_hand_over() and the statistics: relaxed atomic accesses (plain moves), so
  // such a read of a recycled descriptor is a stale value, not a data race.
  uintptr_t base() const { return vg::unhide(load(hidden_base_)); }
  void set_base(uintptr_t a) { store(hidden_base_, vg::hide(a)); }
  size_t size() const { return load(size_); }  // usable bytes: the request's pages
  void set_size(size_t n) { store(size_, n); }
  // The mapping's length: normally a whole number of chunks (size rounded up),
  // so a cached mapping serves any request up to it and realloc grows in place
  // up to it; the pages past `dirty` have not been touched since they were
  // mapped or decommitted.
  size_t mapped() const { return load(mapped_); }
  void set_mapped(size_t n) { store(mapped_, n); }
  size_t dirty() const { return load(dirty_); }  // size <= dirty <= mapped
  void set_dirty(size_t n) { store(dirty_, n); }
  size_t request() const { return load(request_); }  // bytes asked
  void set_request(size_t n) { store(request_, n); }
  Extent* next = nullptr;  // the pool of recycled descriptors (under g_huge_lock)
  // When it was parked (platform::now_ns()): written before the slot
  // publishes the block (release), read after the exchange that takes it.
  uint64_t parked_at = 0;

 private:
  static uintptr_t load(const uintptr_t& f) {
    // relaxed: see above (atomic_ref<const T> is C++26).
    return std::atomic_ref<uintptr_t>(const_cast<uintptr_t&>(f)).load(std::memory_order_relaxed);
  }
  static void store(uintptr_t& f, uintptr_t v) {
    std::atomic_ref<uintptr_t>(f).store(v, std::memory_order_relaxed);  // relaxed: above
  }
  uintptr_t hidden_base_ = 0;  // the block's address, as vg::hide() stores it
  size_t size_ = 0;
  size_t mapped_ = 0;
  size_t dirty_ = 0;
  size_t request_ = 0;
};

namespace large {
namespace {

// Two locks, never held together (so they have no order between them); the
// metadata arena's may be taken under either.
//
// Page runs: under heap::g_lock. A run's chunk descriptor, its page-map slot
// and its owner tags are the page heap's, changed under that lock (a chunk
// is unmapped and its descriptor reused under it), so the runs' bookkeeping
// is kept under it too, and deciding what a pointer is and acting on it
// happen in one critical section.
size_t g_live_blocks = 0, g_live_pages = 0, g_live_requested = 0;

// Huge blocks: their descriptors, page-map slots, counters and cache, under
// g_huge_lock. Nothing of the page heap is touched under it, so huge traffic
// does not wait for slab carving and page runs. Every huge malloc and free
// takes it for a few hundred instructions (a cache hit or entry and the
// page-map slots), so a producer and a consumer of huge blocks meet on it at
// every operation: an adaptive mutex spins briefly before it sleeps, which
// took BM_cross_thread_large/4194304 at 2 threads from ~2.1 to ~3.6 M/s.
Lock g_huge_lock{Lock::Adaptive{}};
size_t g_huge_blocks = 0, g_huge_bytes = 0;
// Sums of the registered blocks' (live and parked) mapped and dirty bytes.
size_t g_huge_mapped = 0, g_huge_dirty = 0;
// Also changed by a thread that takes a parked block for another request
// (relaxed: a statistic; exact when no thread allocates or frees).
std::atomic<size_t> g_huge_requested{0};
Extent* g_extent_pool = nullptr;

Extent* new_extent_locked() {
  Extent* e = g_extent_pool;
  if (e != nullptr) {
    g_extent_pool = e->next;
    return e;
  }
  e = static_cast<Extent*>(meta::alloc(sizeof(Extent)));
  return e != nullptr ? new (e) Extent() : nullptr;
}

void recycle_extent_locked(Extent* e) {
  e->next = g_extent_pool;
  g_extent_pool = e;
}

size_t pages_for(size_t n) { return align_up(n, kPageSize) >> kPageShift; }

// Record a run just taken from the page heap as a live block. false when the
// chunk's first run finds no metadata for its record (the caller gives the
// run back).
bool mark_live(ChunkMeta* c, uint32_t page, uint32_t npages, size_t request) {
  if (c->run_record == nullptr) {
    c->run_record = static_cast<RunRecord*>(meta::alloc(sizeof(RunRecord)));
    if (c->run_record == nullptr) return false;
  }
  c->tag[page] = kTagStart;
  for (uint32_t i = 1; i < npages; ++i) c->tag[page + i] = kTagBody;
  c->run_record->pages[page] = npages;
  c->run_record->request[page] = static_cast<uint32_t>(request);
  ++g_live_blocks;
  g_live_pages += npages;
  g_live_requested += request;
  return true;
}

// Page-map slots of huge blocks. A huge block's base is chunk-aligned, so it
// owns every slot from its base up to its last byte. The rule that keeps
// concurrent huge operations safe: a slot is set only while the address range
// it covers is mapped by magslab for this block, and cleared *before* the
// system call that gives the range back — once the range is back in the OS,
// another thread may map it and register a block of its own there.
// All under g_huge_lock.

uintptr_t slots_end(uintptr_t base, size_t size) { return align_up(base + size, kChunkSize); }

// Register [base, base+size) as `e`; false (nothing registered) when a
// page-map leaf cannot be allocated.
bool map_huge_slots(uintptr_t base, size_t size, Extent* e) {
  if (!pagemap::prepare(base, base + size)) return false;
  for (uintptr_t a = base; a < base + size; a += kChunkSize) pagemap::set(a, e);
  return true;
}

// Clear the slots of chunk-aligned [from, to).
void unmap_huge_slots(uintptr_t from, uintptr_t to) {
  for (uintptr_t a = from; a < to; a += kChunkSize) pagemap::clear(a);
}

// Freed huge mappings kept for reuse, so a program that frees and allocates
// MiB-sized blocks in a loop does not pay mmap, page faults and munmap each
// time: at most huge_cache_entries mappings of at most huge_cache_block bytes,
// huge_cache_bytes in all (options, platform/options.h: 8, 16 MiB, 32 MiB),
// counted by their mapped length; a request reuses one as mapping_fits()
// says (any up to its own chunk count). Entries nobody reuses must not
// hold the cache for good: a new mapping pushes the oldest ones out when it
// needs room, and an entry unused for huge_cache_ms (1 s) is unmapped at the
// next huge free or decay pass (not at a malloc: a cache hit then reads no
// clock). magslab_trim() unmaps them all. The options may change
// at run time; a smaller limit takes effect at the next insertion.
//
// The two limits grow with the program's own huge traffic: up to the most huge
// bytes (and blocks) it had live at once in the last one to two huge_cache_ms
// windows. A producer that keeps 16 blocks of 4 MiB in flight and a consumer
// that frees them in bursts then find them all again, instead of mapping half
// of them afresh (and unmapping them at the next burst) because 32 MiB held
// eight. So live + cached huge bytes stay within twice the recent peak, and
// what nobody reuses still goes within huge_cache_ms. 0 in either option
// still turns the cache off.
constexpr size_t kHugeCacheSlots = opt::kMaxOf[opt::kHugeCacheEntries];

// High-water marks of live huge mapped bytes and blocks: of the current window
// (since g_peak_since) and of the one before it. Under g_huge_lock.
struct HugePeak {
  size_t bytes = 0, blocks = 0;
};
HugePeak g_peak_cur, g_peak_prev;
uint64_t g_peak_since = 0;

void note_peak_locked() {
  g_peak_cur.bytes = std::max(g_peak_cur.bytes, g_huge_mapped);
  g_peak_cur.blocks = std::max(g_peak_cur.blocks, g_huge_blocks);
}

// now - then, or 0 when `then` is later: times come from different clock
// reads (a decay pass passes the time it began; a huge free on another thread
// may stamp an entry after that), and unsigned subtraction would wrap.
uint64_t since(uint64_t now, uint64_t then) { return now > then ? now - then : 0; }

// Start a new window when the current one is huge_cache_ms old; a window with
// no huge free or decay pass in it left no peak to remember.
void roll_peak_locked(uint64_t now) {
  uint64_t window = opt::get(opt::kHugeCacheMs) * 1000000;
  if (g_peak_since == 0) g_peak_since = now;  // the first window runs from the first call
  if (since(now, g_peak_since) <= window) return;
  g_peak_prev = now - g_peak_since <= 2 * window ? g_peak_cur : HugePeak{};
  g_peak_cur = HugePeak{g_huge_mapped, g_huge_blocks};
  g_peak_since = now;
}

struct HugeCacheEntry {
  void* base;
  size_t mapped, dirty;  // as Extent's
  uint64_t freed_at;     // platform::now_ns() when it entered the cache
};
// Under g_huge_lock; oldest first.
HugeCacheEntry g_huge_cache[kHugeCacheSlots];
size_t g_huge_cache_count = 0;
size_t g_huge_cache_bytes = 0;

// Mappings taken out of the cache under the lock, unmapped after it.
struct Evicted {
  HugeCacheEntry e[kHugeCacheSlots];
  size_t n = 0;
  void unmap_all() {
    for (size_t i = 0; i < n; ++i) platform::unmap(e[i].base, e[i].mapped);
    n = 0;
  }
};

HugeCacheEntry remove_cached_locked(size_t i) {
  HugeCacheEntry e = g_huge_cache[i];
  for (size_t k = i + 1; k < g_huge_cache_count; ++k) g_huge_cache[k - 1] = g_huge_cache[k];
  --g_huge_cache_count;
  g_huge_cache_bytes -= e.mapped;
  return e;
}

// Move entries older than the age limit to `out`. Locked.
void expire_cached_locked(uint64_t now, Evicted* out) {
  roll_peak_locked(now);
  while (g_huge_cache_count != 0 &&
         since(now, g_huge_cache[0].freed_at) > opt::get(opt::kHugeCacheMs) * 1000000)
    out->e[out->n++] = remove_cached_locked(0);
}

// The length of a new mapping for a huge block of `size` bytes (a page
// multiple): whole chunks (the block's base is chunk-aligned, so the rest of
// its last chunk is address space nothing else of magslab's can use anyway).
// But its own pages for a block huge only by its alignment (at most
// kHugeThreshold bytes: 4 MiB for an 8 KiB block aligned to 2 MiB would be
// 512x its size), and for one whose whole chunks the huge cache would not
// keep (huge_cache_block or huge_cache_bytes below them: rounding up would
// only cost address space and commit charge).
size_t mapping_for(size_t size) {
  size_t whole = align_up(size, kChunkSize);
  if (size <= kHugeThreshold || whole > opt::get(opt::kHugeCacheBlock) ||
      whole > opt::get(opt::kHugeCacheBytes))
    return size;
  return whole;
}

// A request of `want` bytes (page multiples) uses at least 3/4 of `size`. A
// parked block serves a request it fits this way (it keeps its size: the
// taking thread changes no counter); others go to the huge cache.
bool fills_three_quarters(size_t size, size_t want) {
  return size >= want && want >= size - size / 4;
}

// A cached mapping of `mapped` bytes serves a request of `want` bytes when it
// is no longer than a new mapping for it would be (`fresh`: mapping_for(want),
// computed once per lookup, as it reads two options), or the request fills
// 3/4 of it: so each size between 1 and 4 MiB reuses whatever 4 MiB mapping is
// cached, and a small request does not take a big one.
bool mapping_fits(size_t mapped, size_t want, size_t fresh) {
  return (mapped >= want && mapped <= fresh) || fills_three_quarters(mapped, want);
}

// Dirty bytes a mapping keeps when a request of `want` bytes reuses it with
// `dirty` touched: all of them, unless that is more than a third over `want`
// and would take the registered blocks' excess (dirty bytes past their sizes)
// over its budget; then the request's, and the caller decommits the rest.
// A decommit is a system call and refaults the pages at the next larger
// reuse (bench/latency --workload large: 12 us at p99.9, and 3.4x fewer
// operations, with the 3/4 rule alone), so excess is kept up to the larger of
// huge_cache_bytes (the memory the cache may hold idle anyway) and half the
// live huge bytes: what live blocks hold beyond their sizes stays bounded.
// Locked.
size_t dirty_kept_locked(size_t dirty, size_t want) {
  if (dirty <= want) return want;
  size_t excess = g_huge_dirty - g_huge_bytes;  // of the registered blocks, before this one
  size_t budget = std::max(opt::get(opt::kHugeCacheBytes), g_huge_bytes / 2);
  if (dirty - want > want / 3 && excess + (dirty - want) > budget) return want;
  return dirty;
}

// A cached mapping for `want` bytes aligned to `align`, or {nullptr}: of those
// that fit, one whose touched pages cover `want` (no page faults) with the
// fewest past it, else the one with the most touched pages (the fewest
// faults: a fresh page costs about as much as a hundred bytes of memset); the
// newest of equals. Locked.
HugeCacheEntry take_cached_huge_locked(size_t want, size_t align) {
  // Rank: 0 for an exact fit; touched pages past `want`; untouched ones below
  // it, ranked after every entry that covers it.
  auto rank = [want](const HugeCacheEntry& e) {
    constexpr size_t kShort = size_t{1} << 62;  // above any excess (kMaxRequest is 2^44)
    return e.dirty >= want ? e.dirty - want : kShort + (want - e.dirty);
  };
  size_t best = g_huge_cache_count, best_rank = ~size_t{0};
  const size_t fresh = mapping_for(want);
  for (size_t i = g_huge_cache_count; i-- > 0;) {
    const HugeCacheEntry& e = g_huge_cache[i];
    if (!mapping_fits(e.mapped, want, fresh) || reinterpret_cast<uintptr_t>(e.base) % align != 0)
      continue;
    if (size_t r = rank(e); r < best_rank) {
      best = i;
      best_rank = r;
      if (r == 0) break;  // the common case of one size: no scan of the rest
    }
  }
  if (best == g_huge_cache_count) return HugeCacheEntry{nullptr, 0, 0, 0};
  return remove_cached_locked(best);
}

// Keep a freed mapping, evicting the oldest entries (to `out`) to make room.
// false: too big to cache; the caller unmaps it.
// freed_at: when the program freed it (now, or when it was parked).
// Its mapped bytes count against the limits.
bool cache_huge_locked(void* base, size_t mapped, size_t dirty, uint64_t now, uint64_t freed_at,
                       Evicted* out) {
  size_t entries = opt::get(opt::kHugeCacheEntries), bytes = opt::get(opt::kHugeCacheBytes);
  const size_t block = opt::get(opt::kHugeCacheBlock);
  const bool off = entries == 0 || bytes == 0;
  // What the limits no longer allow goes now: a limit lowered at run time
  // evicts at the next huge block freed (docs/options.md). Until stop 43 (a
  // review) a cache turned off, or given a block limit below the mappings it
  // held, refused only the new one and kept the rest until they aged out.
  for (size_t i = 0; i < g_huge_cache_count;) {
    if (off || g_huge_cache[i].mapped > block)
      out->e[out->n++] = remove_cached_locked(i);
    else
      ++i;
  }
  if (off || mapped > block) return false;
  // At least the options; up to the recent peak (the entries as many as there are slots).
  bytes = std::max({bytes, g_peak_cur.bytes, g_peak_prev.bytes});
  entries =
      std::max(entries, std::min(std::max(g_peak_cur.blocks, g_peak_prev.blocks), kHugeCacheSlots));
  if (mapped > bytes || since(now, freed_at) > opt::get(opt::kHugeCacheMs) * 1000000) return false;
  // Room by evicting the oldest entries; but if one of those is younger than
  // a reclaimed parked block, the block goes itself and nothing is evicted
  // (evicting a younger entry for it left the cache with less once it expired
  // first: reproduced at stop 36; and a review found the first version of
  // this evicting the older ones before it gave up). Counted first, then
  // evicted. n stays below the count: with every entry gone, `mapped` fits
  // `bytes` and one entry fits `entries` (neither is 0 here).
  size_t n = 0, room = 0;
  while (g_huge_cache_count - n >= entries || g_huge_cache_bytes - room + mapped > bytes) {
    if (g_huge_cache[n].freed_at > freed_at) return false;
    room += g_huge_cache[n++].mapped;
  }
  while (n-- > 0) out->e[out->n++] = remove_cached_locked(0);
  // In age order: a parked block reclaimed now ages from when it was parked,
  // which can be before entries already here, and expiry stops at the first
  // young entry (until stop 35 it was appended, and outlived huge_cache_ms).
  size_t i = g_huge_cache_count;
  for (; i > 0 && g_huge_cache[i - 1].freed_at > freed_at; --i)
    g_huge_cache[i] = g_huge_cache[i - 1];
  g_huge_cache[i] = HugeCacheEntry{base, mapped, dirty, freed_at};
  ++g_huge_cache_count;
  g_huge_cache_bytes += mapped;
  decay_event::note();
  return true;
}

// Register mem (`mapped` bytes mapped, the first `dirty` of them possibly
// touched) as a live huge block of `size` usable bytes (n asked): a descriptor
// and its page-map slots. false when metadata runs out (nothing registered).
// Locked.
bool register_huge_locked(void* mem, size_t mapped, size_t dirty, size_t size, size_t n) {
  Extent* e = new_extent_locked();
  if (e == nullptr) return false;
  auto base = reinterpret_cast<uintptr_t>(mem);
  e->set_base(base);
  e->set_size(size);
  e->set_mapped(mapped);
  e->set_dirty(dirty);
  e->set_request(n);
  // relaxed: published with the descriptor by map_huge_slots' release stores.
  e->state.store(Extent::kLive, std::memory_order_relaxed);
  if (!map_huge_slots(base, mapped, e)) {
    e->state.store(Extent::kGone, std::memory_order_relaxed);  // relaxed: never published
    recycle_extent_locked(e);
    return false;
  }
  ++g_huge_blocks;
  g_huge_bytes += size;
  g_huge_mapped += mapped;
  g_huge_dirty += dirty;
  g_huge_requested.fetch_add(n, std::memory_order_relaxed);  // relaxed: a statistic
  note_peak_locked();
  stats::add_in_use(size);
  return true;
}

[[noreturn]] void bad_pointer(const void* p, Misuse kind = Misuse::kInvalidFree,
                              const BlockInfo& info = BlockInfo{}) {
  platform::misuse(kind, p, info);
}

// The descriptor h of huge block p, found under g_huge_lock: p must be its
// start and the block handed out (not parked: then `what` is a double free
// when it is a free). Leaves its state alone.
void check_huge_locked(const Extent* h, const void* p, Misuse what) {
  if (h->base() != reinterpret_cast<uintptr_t>(p)) bad_pointer(p, what, BlockInfo::huge(h->size()));
  // acquire: pairs with park()'s compare-exchange (nothing else is read after it).
  uint8_t state = h->state.load(std::memory_order_acquire);
  if (MAGSLAB_UNLIKELY(state == Extent::kResizing))
    bad_pointer(p, what, BlockInfo::huge(h->size(), "being reallocated"));
  if (MAGSLAB_UNLIKELY(state != Extent::kLive))
    bad_pointer(p, what == Misuse::kInvalidFree ? Misuse::kDoubleFree : what,
                BlockInfo::huge(h->size(), "already freed"));
}

// Huge block h, out of the page map, leaves the counters; its descriptor
// goes back to the pool. Under g_huge_lock.
void forget_huge_locked(Extent* h) {
  --g_huge_blocks;
  g_huge_bytes -= h->size();
  g_huge_mapped -= h->mapped();
  g_huge_dirty -= h->dirty();
  g_huge_requested.fetch_sub(h->request(), std::memory_order_relaxed);  // relaxed: a statistic
  stats::sub_in_use(h->size());
  recycle_extent_locked(h);
}

// Free huge block h (its state already moved to kGone by the caller), under
// g_huge_lock, which it releases: out of the page map, then into the huge
// cache or back to the OS. parked_at: when it was parked (it ages in the
// cache from then), or ~0: freed now.
void free_huge_locked(Extent* h, uint64_t parked_at = ~uint64_t{0}) {
  uintptr_t a = h->base();
  size_t mapped = h->mapped(), dirty = h->dirty();
  // Expire (and start a new peak window) while this block still counts as live.
  Evicted evicted;
  uint64_t now = platform::now_ns();
  expire_cached_locked(now, &evicted);
  // Out of the page map before the mapping is cached or unmapped: a second
  // free of p is reported, and a thread that maps this range next can
  // register it.
  unmap_huge_slots(a, slots_end(a, mapped));
  forget_huge_locked(h);
  void* p = reinterpret_cast<void*>(a);
  bool cached = cache_huge_locked(p, mapped, dirty, now, std::min(now, parked_at), &evicted);
  g_huge_lock.unlock();
  evicted.unmap_all();
  if (!cached) platform::unmap(p, mapped);
}

// ---- Parked huge blocks ----
// A thread that frees a huge block parks it in a slot of its own (one of
// kParkSlots, picked by a hash of the thread), still registered and mapped;
// the next huge malloc of about the same size on that thread takes it back.
// Neither takes g_huge_lock nor writes the page map (a park reads it, and
// CLOCK_MONOTONIC_COARSE), so a loop of 4 MiB malloc/free pairs on many
// threads does not meet on the lock (it took ~700 instructions and the lock
// twice per pair).
//
// Ownership: a block is parked by its state's compare-exchange kLive ->
// kParked (a racing second free of it, parked or not, then fails and reports
// a double free under the lock) and then a compare-exchange of the empty slot
// to it (else it is handed back to kLive and freed normally); it is taken
// back by whoever exchanges the slot to empty: the slot's thread for a malloc,
// or a reclaim (decay pass, magslab_trim), which frees it normally. So each
// parked block has one owner at a time, and a descriptor whose slot was
// exchanged cannot be taken twice. park() reads the page map and the
// descriptor without the lock, so it checks them again after its
// compare-exchange: a descriptor freed and registered for another block in
// between (only when p is freed twice at once) gets its state back. ABA: a slot holds a descriptor
// pointer; a descriptor can go back to the pool and be registered again while a thread still holds
// a stale copy read from the slot, but only the exchange hands it over, and it returns what the
// slot holds now. A process with one thread does each of these steps with a
// load and a store instead (fill_slot, "Single-threaded").
//
// A parked block counts as free for the live statistics (counts() subtracts
// what the slots hold, and reports it as cached) but as in use for
// peak_in_use_bytes and as live for the huge cache's peak, which it was a
// moment ago: a global counter updated at every park and take would be a
// cache line all threads write (2 threads ran 4 MiB pairs at 25 M/s with it,
// 124 M/s without).
//
// What slots hold is outside huge_cache_bytes and huge_cache_entries: one
// block per slot, at most huge_cache_block bytes, and parking is off when the
// huge cache is (or option huge_park is 0). It is bounded in time instead:
// every decay pass reclaims all of it into the huge cache, and a thread's next
// huge malloc that the parked block does not fit sends it there too; it then
// ages from when it was parked, so a block parked and forgotten is unmapped
// like a cache entry nobody reused.
//
// Hand-over slots: a few more slots that belong to no thread. A thread whose
// own slot is taken parks there, and a thread whose own slot holds nothing
// that fits takes from there, before either goes to the lock. So a producer
// of huge blocks and the consumer that frees them (whose own slot keeps the
// first block it freed) hand blocks over without meeting on g_huge_lock:
// BM_cross_thread_large/4194304 at 2 threads ran at 1.0 M/s with ~10,000
// context switches a second on it, mimalloc 1.4–4.5 (stop 36). Same
// ownership rules as a thread's slot (whoever exchanges the slot to empty owns
// the block); a taker that finds a block it does not fit puts it back, or
// frees it into the cache when the slot was filled meanwhile. Bounded like
// the others: one block each, reclaimed at every decay pass.
//
// fork(): a park or take racing the fork may leave its block in neither the
// slot nor the program in the child (a leak of that block there), never
// twice.
constexpr size_t kParkSlots = 64;
constexpr size_t kHandOverSlots = 4;
struct alignas(kCacheLine) ParkSlot {
  std::atomic<Extent*> e{nullptr};
};
// The threads' slots, then the hand-over slots.
ParkSlot g_park[kParkSlots + kHandOverSlots];
ParkSlot* const g_hand_over = g_park + kParkSlots;

constinit thread_local char t_park_anchor MAGSLAB_TLS_MODEL = 0;
ParkSlot& my_park_slot() {
  auto t = reinterpret_cast<uintptr_t>(&t_park_anchor);
  return g_park[((t >> 6) * 0x9e3779b97f4a7c15u) >> 58];  // 64 slots: the top 6 bits
}
static_assert(kParkSlots == 64, "my_park_slot() takes 6 bits");

// Options huge_park, and the huge cache's (off: nothing is kept, parked or not).
bool parking_on() {
  return opt::get(opt::kHugePark) != 0 && opt::get(opt::kHugeCacheEntries) != 0 &&
         opt::get(opt::kHugeCacheBytes) != 0;
}

// An empty slot to park in: this thread's own, else a hand-over slot;
// nullptr: none. relaxed: a hint; the caller's compare-exchange decides.
ParkSlot* empty_park_slot() {
  if (ParkSlot& own = my_park_slot(); own.e.load(std::memory_order_relaxed) == nullptr) return &own;
  for (size_t i = 0; i < kHandOverSlots; ++i)
    if (g_hand_over[i].e.load(std::memory_order_relaxed) == nullptr) return &g_hand_over[i];
  return nullptr;
}

// Single-threaded (`alone`: platform::single_threaded(), read once by each
// park and take at its start): no other thread exists to race for a slot or a
// block's state, and none can start before the caller returns, so a load and
// a store do what the read-modify-writes do, without their locked
// instructions — three in a 4 MiB malloc+free pair, which took 21 ns on one
// thread against glibc's 11 (glibc's single-threaded path takes no lock
// either); 13 ns without them (stop 37). A thread created later sees these
// stores (pthread_create orders them) and, like every park and take after
// it, uses the atomic forms.

// Put parked block h into slot if the slot is empty; true: done, and a
// sleeping decay thread woken to reclaim it if nobody takes it.
bool fill_slot(ParkSlot& slot, Extent* h, bool alone) {
  if (alone) {  // relaxed: no other thread (above)
    if (slot.e.load(std::memory_order_relaxed) != nullptr) return false;
    slot.e.store(h, std::memory_order_relaxed);
  } else {
    Extent* none = nullptr;
    // release: the slot's next owner reads the descriptor and the block;
    // seq_cst: for decay_event::note_after_seq_cst_rmw() below.
    if (!slot.e.compare_exchange_strong(none, h, std::memory_order_seq_cst,
                                        std::memory_order_relaxed))
      return false;
  }
  // Alone, no decay thread exists to wake (it would be a second thread) and
  // nothing needs ordering; the look is one load all the same.
  decay_event::note_after_seq_cst_rmw();
  return true;
}

// The block in slot, taken out (nullptr: none); see fill_slot for `alone`.
Extent* take_slot(ParkSlot& slot, bool alone) {
  if (alone) {  // relaxed: no other thread
    Extent* h = slot.e.load(std::memory_order_relaxed);
    slot.e.store(nullptr, std::memory_order_relaxed);
    return h;
  }
  return slot.e.exchange(nullptr, std::memory_order_acquire);  // acquire: see park()
}

// Free huge block p by parking it. false: not parked (every slot it may use
// is taken, the block is too big, p is not a live huge block's start, or
// `sized` exceeds its usable size: the caller frees it under the lock, which
// reports what p is).
bool park(uintptr_t a, size_t sized) {
  ParkSlot* slot = empty_park_slot();
  if (slot == nullptr || !parking_on()) return false;
  Extent* h = pagemap::lookup(a).extent();
  if (h == nullptr || h->base() != a || h->mapped() > opt::get(opt::kHugeCacheBlock)) return false;
  const bool alone = platform::single_threaded();
  if (alone) {
    // relaxed: no other thread. Parked or freed already: the locked path reports it.
    if (h->state.load(std::memory_order_relaxed) != Extent::kLive) return false;
    h->state.store(Extent::kParked, std::memory_order_relaxed);
  } else {
    uint8_t live = Extent::kLive;
    // acq_rel: acquire pairs with the release store of kLive that ends a
    // realloc's resize (resize_huge_locked), whose descriptor fields it then
    // reads; the other stores of kLive (registration, a take) are relaxed:
    // what they wrote comes with the page-map lookup above or the program's
    // own hand-over of p. release pairs with check_huge_locked's acquire. The
    // block's bytes reach its next owner through fill_slot's compare-exchange
    // (release) and the take's exchange (acquire), not through this state.
    if (!h->state.compare_exchange_strong(live, Extent::kParked, std::memory_order_acq_rel,
                                          std::memory_order_relaxed))
      return false;  // parked or freed already: the locked path reports it
  }
  if (!alone && MAGSLAB_UNLIKELY(h->base() != a || pagemap::lookup(a).extent() != h)) {
    // Between the checks above and the compare-exchange, p's block was freed
    // and h registered for another block (p was being freed twice at once):
    // give that block its state back; the locked path reports p.
    h->state.store(Extent::kLive, std::memory_order_relaxed);  // relaxed: nothing read after it
    return false;
  }
  // A sized free naming more than the block holds (its size read once the
  // block is ours): the locked path reports it.
  if (MAGSLAB_UNLIKELY(sized > h->size())) {
    h->state.store(Extent::kLive, std::memory_order_relaxed);  // relaxed: still ours
    return false;
  }
  // When it was parked, from the real clock (CLOCK_MONOTONIC_COARSE through
  // the vDSO: ~2 ns of a 4 MiB pair's ~20). Until stop 36 park() read a
  // coarse copy that only locked huge frees and decay passes moved, and a
  // review found it seconds stale wherever no pass ran for a while — after
  // the decay thread slept, when another layer had just woken it, in a stream
  // of hand-overs, without a background thread — so the pass that reclaimed
  // the block unmapped it at once as older than huge_cache_ms.
  h->parked_at = platform::now_ns();
  // Into the slot picked, else (another thread filled it meanwhile) another
  // empty one: a few tries, then the lock.
  for (size_t tries = 0; slot != nullptr; slot = empty_park_slot()) {
    if (fill_slot(*slot, h, alone)) return true;
    if (++tries > kHandOverSlots) break;
  }
  h->state.store(Extent::kLive, std::memory_order_relaxed);  // relaxed: still ours
  return false;
}

// Free parked block h, taken from its slot by a reclaim.
void release_parked(Extent* h) {
  g_huge_lock.lock();
  // relaxed: the take from its slot (take_slot) acquired it, or no other thread exists.
  h->state.store(Extent::kGone, std::memory_order_relaxed);
  free_huge_locked(h, h->parked_at);
}

// Every parked block back to the huge cache (decay, trim). true: some were.
bool reclaim_parked() {
  bool any = false;
  for (ParkSlot& slot : g_park) {
    // relaxed load first: most slots are empty; acquire: see park().
    if (slot.e.load(std::memory_order_relaxed) == nullptr) continue;
    if (Extent* h = slot.e.exchange(nullptr, std::memory_order_acquire)) {
      release_parked(h);
      any = true;
    }
  }
  return any;
}

}  // namespace

std::atomic<void (*)(size_t)> g_counts_scan_hook{nullptr};
std::atomic<void (*)(size_t)> g_hand_over_take_hook{nullptr};

namespace {

// A hand-over slot's block that a request of `size` bytes fills 3/4 of, taken
// out; nullptr: none.
Extent* take_hand_over(size_t size, bool alone) {
  for (size_t i = 0; i < kHandOverSlots; ++i) {
    ParkSlot& slot = g_hand_over[i];
    // acquire: the descriptor's construction (park()'s release orders it)
    // before its size is read; still a hint: it may be recycled meanwhile, so
    // its size is a guess until the exchange below hands it over.
    Extent* seen = slot.e.load(std::memory_order_acquire);
    if (seen == nullptr || !fills_three_quarters(seen->size(), size)) continue;
    // relaxed: set by a test before its malloc, on the same thread.
    if (auto hook = g_hand_over_take_hook.load(std::memory_order_relaxed); MAGSLAB_UNLIKELY(hook))
      hook(i);
    Extent* h = take_slot(slot, alone);
    if (h == nullptr) continue;
    if (fills_three_quarters(h->size(), size)) return h;
    // Not the block seen: back into the slot (waking a decay thread that went
    // past it while it was empty), or to the cache if it was filled meanwhile.
    if (!fill_slot(slot, h, alone)) release_parked(h);
  }
  return nullptr;
}

// A parked block for a request of n bytes (page multiple `size`, alignment at
// most a chunk), handed out again: this thread's, else a hand-over slot's;
// nullptr: none fits.
void* take_parked(size_t n, size_t size) {
  ParkSlot& slot = my_park_slot();
  const bool alone = platform::single_threaded();
  Extent* h = nullptr;
  // relaxed: a hint; the take (take_slot) decides.
  if (slot.e.load(std::memory_order_relaxed) != nullptr) {
    h = take_slot(slot, alone);
    if (h != nullptr && !fills_three_quarters(h->size(), size)) {
      // This thread went on to other sizes: the block goes to the huge cache,
      // where others may reuse it and it ages from when it was parked.
      release_parked(h);
      h = nullptr;
    }
  }
  if (h == nullptr) h = take_hand_over(size, alone);
  if (h == nullptr) return nullptr;
  size_t old = h->request();
  if (old != n) {
    g_huge_requested.fetch_add(n - old, std::memory_order_relaxed);  // relaxed: a statistic
    h->set_request(n);
  }
  h->state.store(Extent::kLive, std::memory_order_relaxed);  // relaxed: ours since the take
  return reinterpret_cast<void*>(h->base());
}

void* alloc_huge(size_t n, size_t align, bool* zeroed) {
  size_t size = align_up(n, kPageSize);
  size_t map_align = align > kChunkSize ? align : kChunkSize;
  if (map_align == kChunkSize) {
    if (void* p = take_parked(n, size)) {
      *zeroed = false;
      return p;
    }
  }
  // A cached mapping is taken and registered in one critical section, so a
  // steady malloc/free of huge blocks takes the lock once each way (and no
  // clock: entries age out at frees and decay passes).
  g_huge_lock.lock();
  HugeCacheEntry cached = take_cached_huge_locked(size, map_align);
  void* mem = cached.base;
  size_t mapped = cached.mapped;
  if (mem != nullptr) {
    *zeroed = false;
    size_t dirty = dirty_kept_locked(cached.dirty, size);
    bool registered = register_huge_locked(mem, mapped, dirty, size, n);
    g_huge_lock.unlock();
    if (registered) {
      // What the last user touched and this one may not keep goes back (the
      // block is ours: nobody else reaches these pages).
      if (dirty < cached.dirty)
        platform::decommit(static_cast<char*>(mem) + dirty, cached.dirty - dirty);
      return mem;
    }
  } else {
    g_huge_lock.unlock();
    mapped = mapping_for(size);
    mem = platform::map_aligned(mapped, map_align);
    if (mem == nullptr) return nullptr;
    *zeroed = true;
    LockGuard g(g_huge_lock);
    if (register_huge_locked(mem, mapped, size, size, n)) return mem;
  }
  platform::unmap(mem, mapped);
  return nullptr;
}

// What the message can say about a's page of normal chunk c (under the lock).
BlockInfo page_info(const ChunkMeta* c, uint32_t page) {
  uint8_t tag = c->tag[page];
  if (tag == kTagStart) return BlockInfo::large(size_t{c->run_record->pages[page]} << kPageShift);
  if (tag == kTagBody || tag == kTagFreedStart) return BlockInfo::large(0);
  return BlockInfo{};
}

// What p is, decided from the page map as it is under the lock that owns p's
// entry: heap::g_lock for a chunk, g_huge_lock for an extent (a slot and its
// descriptor's base change only under the lock of the descriptor's kind). A
// descriptor read before taking the lock may have been recycled meanwhile
// (its chunk unmapped, the descriptor reused for a chunk elsewhere), so
// nothing read before the lock is trusted: the entry read without a lock
// only picks the lock. If under it the slot holds the other kind (its range
// went back to the OS and was mapped again meanwhile), the other lock is
// taken instead. At most one of chunk and huge is set; neither: not
// magslab's. Returns with `held` locked.
struct Block {
  ChunkMeta* chunk;  // a page run's chunk (held: heap::g_lock)
  Extent* huge;      // a huge block (held: g_huge_lock)
  uint32_t page;     // chunk: p's page index (< kPagesPerChunk)
  Lock* held;
};
Block lock_and_classify(uintptr_t a) {
  bool huge = pagemap::lookup(a).extent() != nullptr;
  for (;;) {
    Lock* l = huge ? &g_huge_lock : &heap::g_lock;
    l->lock();
    pagemap::Entry e = pagemap::lookup(a);
    if (e.empty()) return Block{nullptr, nullptr, 0, l};
    if (huge && e.extent() != nullptr) return Block{nullptr, e.extent(), 0, l};
    if (ChunkMeta* c = e.chunk(); !huge && c != nullptr) {
      if (a < c->base() || a - c->base() >= kChunkSize)
        return Block{nullptr, nullptr, 0, l};  // cannot happen
      return Block{c, nullptr, static_cast<uint32_t>((a - c->base()) >> kPageShift), l};
    }
    l->unlock();
    huge = !huge;
  }
}

// Give a run back to the page heap, dirty (reused without a system call;
// purged when the heap's dirty budget is exceeded). mark_start: its first page
// was a block handed to the program, so a later free of it is reported as a
// double free. Caller holds heap::g_lock; returns whether to purge after it.
bool free_run_locked(ChunkMeta* c, uint32_t page, uint32_t npages, bool mark_start) {
  for (uint32_t i = 0; i < npages; ++i) c->tag[page + i] = kTagNone;
  if (mark_start) c->tag[page] = kTagFreedStart;
  return heap::free_locked(c, page, npages, /*dirty=*/true);
}

// Huge block h is now `size` usable bytes for a request of n, in a mapping of
// `mapped` bytes: its descriptor, the huge counters and the in-use statistic
// follow (its dirty bytes: at least the new size, at most the mapping).
// Caller holds g_huge_lock.
void set_huge_size_locked(Extent* h, size_t size, size_t mapped, size_t n) {
  size_t old = h->size();
  if (size > old)
    stats::add_in_use(size - old);
  else if (size < old)
    stats::sub_in_use(old - size);
  size_t dirty = std::min(std::max(h->dirty(), size), mapped);
  g_huge_bytes += size;
  g_huge_bytes -= old;
  g_huge_mapped += mapped;
  g_huge_mapped -= h->mapped();
  g_huge_dirty += dirty;
  g_huge_dirty -= h->dirty();
  note_peak_locked();
  h->set_size(size);
  h->set_mapped(mapped);
  h->set_dirty(dirty);
  g_huge_requested.fetch_add(n - h->request(), std::memory_order_relaxed);  // relaxed: a statistic
  h->set_request(n);
}

// Huge p (descriptor h, checked under the lock by the caller; `old` bytes
// mapped) shrinks to `want` bytes in place, its mapping too. The slots past
// the new end are cleared before the tail goes back to the OS.
void* shrink_huge(Extent* h, void* p, size_t old, size_t want, size_t n) {
  auto a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t keep_end = slots_end(a, want), old_end = slots_end(a, old);
  {
    LockGuard g(g_huge_lock);
    unmap_huge_slots(keep_end, old_end);
  }
  bool shrunk = platform::remap(p, old, want, nullptr) != nullptr;
  LockGuard g(g_huge_lock);
  if (!shrunk) {
    // The OS refused to split the mapping (e.g. at its map count limit): the
    // block keeps its size. Its leaves exist, so re-registering cannot fail.
    map_huge_slots(keep_end, old_end - keep_end, h);
  }
  set_huge_size_locked(h, want, shrunk ? want : old, n);
  return p;
}

// Huge p (`old` bytes mapped) grows to `size` bytes past its mapping: the
// mapping grows to mapping_for(size) bytes in place when the address space
// after it is free, else moves by mremap to a new chunk-aligned reservation
// (the kernel moves the page tables; no byte is copied). nullptr: the caller
// copies.
void* grow_huge(Extent* h, void* p, size_t old, size_t size, size_t n) {
  const size_t want = mapping_for(size);
  auto a = reinterpret_cast<uintptr_t>(p);
  if (platform::remap(p, old, want, nullptr) != nullptr) {
    // Grown in place. The grown range's slots are registered only now that
    // it is ours: leaves (4 MiB of address space each, never unmapped) made
    // for a growth that then failed would stay for good.
    bool registered;
    {
      LockGuard g(g_huge_lock);
      registered = map_huge_slots(a, want, h);
      if (registered) set_huge_size_locked(h, size, want, n);
    }
    if (registered) return p;
    // No leaf to be had (out of memory): back to the old length, a shrink
    // in place the kernel does not refuse. Should it, the tail stays mapped
    // and unregistered until the block is freed (its `old` bytes unmapped).
    platform::remap(p, want, old, nullptr);
    return nullptr;
  }
  // Not in place (something is mapped after it): moved, if it can be.
  void* target = platform::map_aligned(want, kChunkSize);
  if (target == nullptr) return nullptr;
  // No access until the move fills it: after a refused move, a target still
  // mapped whole and still inaccessible is this one (below).
  const bool marked = platform::protect(target, want, false);
  const auto b = reinterpret_cast<uintptr_t>(target);
  bool registered;
  {
    // The target is ours: register it. The old range is about to go back
    // to the OS with the move: unregister it first.
    LockGuard g(g_huge_lock);
    registered = map_huge_slots(b, want, h);
    if (registered) unmap_huge_slots(a, slots_end(a, old));
  }
  if (!registered) {
    platform::unmap(target, want);
    return nullptr;
  }
  if (platform::remap(p, old, want, target) == nullptr) {
    {
      LockGuard g(g_huge_lock);
      unmap_huge_slots(b, slots_end(b, want));
      map_huge_slots(a, old, h);  // its leaves exist: cannot fail
    }
    // Refused. The kernel unmaps a fixed target before most of the checks
    // that can refuse the move (mremap_to: do_munmap first), and another
    // thread may have mapped something there since: a target with a hole in
    // it is no longer ours and is left alone (review, stop 32:
    // `OutOfMemory.ARefusedHugeMoveLeavesWhateverIsMappedAtItsTargetAlone`),
    // and so is one mapped whole but readable — another thread's mapping of
    // exactly that range, as a huge block of the same size would be (review,
    // stop 34: `...LeavesAMappingOfTheWholeTargetAlone`). One still mapped
    // whole and inaccessible was refused before the unmapping (the map count
    // check comes first) and is ours to give back; without the mark (its
    // mprotect refused), or where the kernel will not say whether it is
    // accessible (process_vm_readv refused: seccomp, sandboxes), it stays
    // mapped: untouched address space, not a mapping of someone else's
    // unmapped. (Left: another thread's PROT_NONE mapping of exactly this
    // range in that moment — a reservation of the same size — is taken for
    // ours.)
    if (marked && platform::fully_mapped(target, want) &&
        platform::probe_readable(target) == platform::Readable::kNo)
      platform::unmap(target, want);
    return nullptr;
  }
  LockGuard g(g_huge_lock);
  h->set_base(b);
  set_huge_size_locked(h, size, want, n);
  return reinterpret_cast<void*>(b);
}

}  // namespace

namespace {

void* alloc_once(size_t n, size_t align, bool* zeroed) {
  size_t npages = pages_for(n);
  size_t align_pages = align > kPageSize ? align >> kPageShift : 1;
  if (n > kHugeThreshold || npages + align_pages - 1 > (kHugeThreshold >> kPageShift)) {
    return alloc_huge(n, align, zeroed);
  }
  bool purge;
  // From the chunks of the caller's node (0 on one node: no system call). Huge
  // mappings are not bound: the kernel places their pages where they are first
  // touched, normally by this thread.
  unsigned node = numa::current_node();
  {
    LockGuard g(heap::g_lock);
    heap::Run run;
    if (!heap::alloc_locked(npages, align_pages, &run, zeroed, node)) return nullptr;
    if (mark_live(run.chunk, run.page, run.npages, n)) {
      stats::add_in_use(size_t{run.npages} << kPageShift);
      return run.addr();
    }
    // No record: the run goes back as it came (pages never touched read as zero).
    purge = heap::free_locked(run.chunk, run.page, run.npages, /*dirty=*/!*zeroed);
  }
  if (purge) heap::purge_excess();
  return nullptr;
}

}  // namespace

void* alloc(size_t n, size_t align, bool* zeroed) {
  opt::ensure_loaded();  // a process's first allocation may be a large one
  // Refused: once more after magslab gives back what holds address space.
  return heap::or_after_reclaim([&] { return alloc_once(n, align, zeroed); });
}

bool free_parked(void* p, size_t sized) { return park(reinterpret_cast<uintptr_t>(p), sized); }

void free(void* p, size_t sized) {
  auto a = reinterpret_cast<uintptr_t>(p);
  Block b = lock_and_classify(a);
  if (Extent* h = b.huge) {
    check_huge_locked(h, p, Misuse::kInvalidFree);
    if (MAGSLAB_UNLIKELY(sized > h->size())) {
      BlockInfo info = BlockInfo::huge(h->size());
      info.requested = h->request();
      bad_pointer(p, Misuse::kWrongSizedFree, info);
    }
    uint8_t live = Extent::kLive;
    // acq_rel: see park(); of this free and a racing one (parking or not), one wins.
    if (!h->state.compare_exchange_strong(live, Extent::kGone, std::memory_order_acq_rel,
                                          std::memory_order_relaxed))
      bad_pointer(p, Misuse::kDoubleFree, BlockInfo::huge(h->size(), "already freed"));
    free_huge_locked(h);
    return;
  }
  ChunkMeta* c = b.chunk;
  if (c == nullptr) bad_pointer(p);
  uint8_t tag = c->tag[b.page];
  if (a % kPageSize != 0) bad_pointer(p, Misuse::kInvalidFree, page_info(c, b.page));
  if (tag == kTagFreedStart) bad_pointer(p, Misuse::kDoubleFree, BlockInfo::large(0));
  if (tag != kTagStart) bad_pointer(p, Misuse::kInvalidFree, page_info(c, b.page));
  uint32_t npages = c->run_record->pages[b.page];
  if (MAGSLAB_UNLIKELY(sized > size_t{npages} << kPageShift)) {
    BlockInfo info = BlockInfo::large(size_t{npages} << kPageShift);
    info.requested = c->run_record->request[b.page];
    bad_pointer(p, Misuse::kWrongSizedFree, info);
  }
  --g_live_blocks;
  g_live_pages -= npages;
  g_live_requested -= c->run_record->request[b.page];
  stats::sub_in_use(size_t{npages} << kPageShift);
  bool purge = free_run_locked(c, b.page, npages, /*mark_start=*/true);
  heap::g_lock.unlock();
  if (purge) heap::purge_excess();
}

bool free_unmapping(void* p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  Block b = lock_and_classify(a);
  Extent* h = b.huge;
  uint8_t live = Extent::kLive;
  // acq_rel: as in free(); of this and a racing free (the program's misuse),
  // one wins. A block that is not a live huge one is left to the caller.
  if (h == nullptr || h->base() != a ||
      !h->state.compare_exchange_strong(live, Extent::kGone, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
    b.held->unlock();
    return false;
  }
  // Out of the page map before the munmap (see map_huge_slots), back in if
  // it is refused: the range is then still mapped, nobody else's. Under the
  // lock throughout: no other huge operation sees it unregistered.
  const size_t mapped = h->mapped();
  unmap_huge_slots(a, slots_end(a, mapped));
  const bool gone = platform::unmap_whole(p, mapped);
  if (gone) {
    forget_huge_locked(h);
  } else {
    map_huge_slots(a, mapped, h);                              // its leaves exist: cannot fail
    h->state.store(Extent::kLive, std::memory_order_relaxed);  // relaxed: ours since the exchange
  }
  b.held->unlock();
  return gone;
}

bool extent_covers(const Extent* h, uintptr_t a, size_t n) {
  const uintptr_t base = h->base();
  const size_t mapped = h->mapped();
  return a >= base && a - base <= mapped && n <= mapped - (a - base);
}

size_t usable_size(const void* p, Misuse what, bool* huge) {
  auto a = reinterpret_cast<uintptr_t>(p);
  Block b = lock_and_classify(a);
  size_t usable;
  if (huge != nullptr) *huge = b.huge != nullptr;
  if (Extent* h = b.huge) {
    check_huge_locked(h, p, what);
    usable = h->size();
  } else {
    ChunkMeta* c = b.chunk;
    if (c == nullptr) bad_pointer(p, what);
    if (what == Misuse::kInvalidFree && a % kPageSize == 0 && c->tag[b.page] == kTagFreedStart)
      bad_pointer(p, Misuse::kDoubleFree, BlockInfo::large(0));
    if (a % kPageSize != 0 || c->tag[b.page] != kTagStart)
      bad_pointer(p, what, page_info(c, b.page));
    usable = size_t{c->run_record->pages[b.page]} << kPageShift;
  }
  b.held->unlock();
  return usable;
}

namespace {

// Resize huge p (descriptor h) to n bytes. Called with g_huge_lock held
// (p checked under it); releases it.
void* resize_huge_locked(Extent* h, void* p, size_t n, bool keep) {
  size_t want = align_up(n, kPageSize);
  size_t old = h->size(), mapped = h->mapped();
  if (want == old || (want > old && want <= mapped)) {
    // The same pages, or more within its mapping: no system call.
    set_huge_size_locked(h, want, mapped, n);
    g_huge_lock.unlock();
    return p;
  }
  if (n <= kHugeThreshold / 2) {
    // Much smaller: the caller moves it into a run — or, when it could not
    // (keep), it keeps its pages and counts n requested.
    if (keep) set_huge_size_locked(h, old, mapped, n);
    g_huge_lock.unlock();
    return keep ? p : nullptr;
  }
  // The lock is dropped around the mremap: until the block is resized, it is
  // kResizing, so a racing free, realloc or usable_size of p (a race in the
  // program) is reported (check_huge_locked) instead of freeing h under this
  // realloc, and park() cannot take it. acquire/release: as park()'s.
  uint8_t live = Extent::kLive;
  if (!h->state.compare_exchange_strong(live, Extent::kResizing, std::memory_order_acq_rel,
                                        std::memory_order_relaxed))
    bad_pointer(p, Misuse::kInvalidRealloc, BlockInfo::huge(old, "already freed"));  // parked
  g_huge_lock.unlock();
  // The OS may refuse a remap here that a copy by the caller then makes up
  // for: its ENOMEM must not outlive a realloc that succeeds (one that fails
  // sets ENOMEM itself).
  const int saved_errno = errno;
  void* r = want < old ? shrink_huge(h, p, mapped, want, n) : grow_huge(h, p, mapped, want, n);
  errno = saved_errno;
  // release: the resized descriptor, to whoever frees or parks the block next.
  h->state.store(Extent::kLive, std::memory_order_release);
  return r;
}

// Resize the page run of p (first page `page` of chunk c, checked under the
// lock) to n bytes in place: grow into free pages after it, or give its tail
// back. Called with heap::g_lock held; releases it. nullptr: the caller moves it.
void* resize_run_locked(ChunkMeta* c, uint32_t page, void* p, size_t n, bool keep) {
  // A huge block now: the caller moves it. (Its page count may not even fit
  // the 32 bits below: kMaxRequest, 2^44 bytes, is 2^32 pages.)
  if (n > kHugeThreshold) {
    heap::g_lock.unlock();
    return nullptr;
  }
  const auto new_pages = static_cast<uint32_t>(align_up(n, kPageSize) >> kPageShift);
  RunRecord* rec = c->run_record;
  uint32_t old_pages = rec->pages[page];
  bool in_place = true;
  if (new_pages > old_pages) {
    in_place = heap::try_grow_locked(c, page, old_pages, new_pages);
    if (in_place) {
      for (uint32_t i = old_pages; i < new_pages; ++i) c->tag[page + i] = kTagBody;
      stats::add_in_use(size_t{new_pages - old_pages} << kPageShift);
    }
  } else if (new_pages < old_pages) {
    in_place = n > kMaxSmallSize || keep;  // else a slab class fits better: move
  }
  if (!in_place) {
    heap::g_lock.unlock();
    return nullptr;
  }
  g_live_pages += new_pages;
  g_live_pages -= old_pages;
  g_live_requested += n;
  g_live_requested -= rec->request[page];
  rec->pages[page] = new_pages;
  rec->request[page] = static_cast<uint32_t>(n);
  bool purge = false;
  if (new_pages < old_pages) {
    stats::sub_in_use(size_t{old_pages - new_pages} << kPageShift);
    purge = free_run_locked(c, page + new_pages, old_pages - new_pages, /*mark_start=*/false);
  }
  heap::g_lock.unlock();
  if (purge) heap::purge_excess();
  return p;
}

}  // namespace

void* resize(void* p, size_t n, bool keep) {
  auto a = reinterpret_cast<uintptr_t>(p);
  const Misuse what = Misuse::kInvalidRealloc;
  Block b = lock_and_classify(a);
  if (Extent* h = b.huge) {
    check_huge_locked(h, p, what);
    return resize_huge_locked(h, p, n, keep);
  }
  ChunkMeta* c = b.chunk;
  if (c == nullptr) bad_pointer(p, what);
  if (a % kPageSize != 0 || c->tag[b.page] != kTagStart) bad_pointer(p, what, page_info(c, b.page));
  return resize_run_locked(c, b.page, p, n, keep);
}

size_t release_mappings() {
  reclaim_parked();
  size_t bytes = 0;
  {
    LockGuard g(heap::g_lock);
    bytes += heap::release_free_chunks_locked(0);
  }
  heap::drain_unmaps();
  Evicted cached;
  {
    LockGuard g(g_huge_lock);
    while (g_huge_cache_count != 0) cached.e[cached.n++] = remove_cached_locked(0);
  }
  for (size_t i = 0; i < cached.n; ++i) bytes += cached.e[i].mapped;
  cached.unmap_all();
  return bytes;
}

size_t trim() {
  size_t bytes = heap::purge(0);
  return bytes + release_mappings();
}

bool decay(uint64_t now) {
  reclaim_parked();
  Evicted old;
  bool left;
  {
    LockGuard g(g_huge_lock);
    expire_cached_locked(now, &old);
    left = g_huge_cache_count != 0;
  }
  old.unmap_all();
  return left;
}

Counts counts() {
  Counts c{};
  {
    LockGuard g(heap::g_lock);
    c.live_blocks = g_live_blocks;
    c.live_bytes = g_live_pages << kPageShift;
    c.live_requested = g_live_requested;
  }
  LockGuard g(g_huge_lock);
  // Parked blocks are registered but free.
  size_t blocks = g_huge_blocks, bytes = g_huge_bytes;
  size_t requested = g_huge_requested.load(std::memory_order_relaxed);  // relaxed: a statistic
  // Each parked block once: parks and takes run without the lock, so a block
  // seen in one slot may be taken, freed and parked in a later one before the
  // scan gets there; counted twice, the subtractions below wrapped (a review
  // at stop 36 saw huge_live_blocks read 2^64 - 1). A descriptor is neither
  // registered nor recycled without the lock held here, so the blocks seen
  // are distinct registered ones: no more than the counters hold.
  const Extent* seen[std::size(g_park)];
  size_t nseen = 0, parked = 0, parked_requested = 0;
  for (size_t i = 0; i < std::size(g_park); ++i) {
    const Extent* h = g_park[i].e.load(std::memory_order_acquire);  // acquire: see park()
    // relaxed: set by a test before it calls counts() on the same thread.
    if (auto hook = g_counts_scan_hook.load(std::memory_order_relaxed); MAGSLAB_UNLIKELY(hook))
      hook(i);
    if (h == nullptr || std::find(seen, seen + nseen, h) != seen + nseen) continue;
    seen[nseen++] = h;
    --blocks;
    bytes -= h->size();
    parked += h->mapped();
    parked_requested += h->request();
  }
  // A take changes a block's request and the total without the lock.
  requested -= std::min(requested, parked_requested);
  c.live_blocks += blocks;
  c.live_bytes += bytes;
  c.live_requested += requested;
  c.huge_blocks = blocks;
  c.huge_bytes = g_huge_mapped - parked;
  c.huge_cached_bytes = g_huge_cache_bytes + parked;
  c.huge_mapped_bytes = g_huge_mapped + g_huge_cache_bytes;
  c.huge_untouched_bytes = g_huge_mapped - g_huge_dirty;
  for (size_t i = 0; i < g_huge_cache_count; ++i)
    c.huge_untouched_bytes += g_huge_cache[i].mapped - g_huge_cache[i].dirty;
  return c;
}

void lock_for_fork() { g_huge_lock.lock_for_fork(); }
void unlock_after_fork() { g_huge_lock.unlock_after_fork(); }

}  // namespace large
}  // namespace magslab
