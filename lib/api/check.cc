// api/check: check mode (api/check.h, docs/check.md). Compiled into every
// build; only the check variants (kCheckMode) call it.
#include "api/check.h"

#include <emmintrin.h>
#include <errno.h>
#include <sched.h>

#include <climits>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>

#include "base/config.h"
#include "base/format.h"
#include "base/lock.h"
#include "base/misuse.h"
#include "chunks/chunk_map.h"
#include "chunks/meta_arena.h"
#include "large/large.h"
#include "platform/options.h"
#include "platform/platform.h"
#include "small/requested.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "small/thread_cache.h"

namespace magslab::check {

constinit std::atomic<void (*)()> g_turn_over_hook{nullptr};

namespace {

constexpr uint8_t kCanaryByte = 0xca;  // the slack past the requested size
constexpr uint8_t kFreedByte = 0xdf;   // a freed slab object in quarantine
constexpr uint8_t kFreshByte = 0xbe;   // a new block (MAGSLAB_FILL)
// Slack bytes written and checked past the request: an overflow that skips
// them is not seen, and large classes' slack can be tens of KiB.
constexpr size_t kCanaryMax = 256;
// A slab object's state word: bits 0-20 the requested size + 1 (0: never
// handed out), 21-30 its allocation site (leak report; 0: not recorded), 31
// set once freed.
constexpr uint32_t kSizeMask = (uint32_t{1} << 21) - 1;
constexpr unsigned kSiteShift = 21;
constexpr uint32_t kFreedBit = 0x80000000u;
static_assert(kMaxClassSize < kSizeMask, "a slab block's requested size + 1 fits 21 bits");
// A large block keeps its requested size (bits 0-44) and site (45-54) in its
// last word (the trailer, right after the canary), xor-ed with a function of
// its address, so that a wild pointer's "block" rarely decodes; they fill the
// word's upper seven bytes. Its first byte, the one an overflow past the
// canary reaches first, is a fixed marker: until stop 52's bug hunt it held
// the size's low bits, and an overflow of a block with one byte of slack by
// two bytes was named with a requested size made up from them (4087 bytes:
// "requested 3840 B") instead of the size record overwritten.
constexpr size_t kTrailer = sizeof(uint64_t);
constexpr uint64_t kTrailerKey = 0x9e3779b97f4a7c15;
constexpr unsigned kTrailerSiteShift = 45;
constexpr uint64_t kTrailerMarker = kCanaryByte;  // the trailer's first byte
static_assert(kMaxRequest < (uint64_t{1} << kTrailerSiteShift), "requests fit the trailer");

uint64_t trailer_key(const void* p) { return reinterpret_cast<uintptr_t>(p) * kTrailerKey; }
// The trailer of p for a request of n bytes from site index `site`.
uint64_t trailer_word(const void* p, size_t n, unsigned site) {
  return ((static_cast<uint64_t>(n) | uint64_t{site} << kTrailerSiteShift) ^ trailer_key(p)) << 8 |
         kTrailerMarker;
}
// The request size and site a trailer t of p holds; false: its marker was overwritten.
bool trailer_read(const void* p, uint64_t t, size_t* n, unsigned* site) {
  if ((t & 0xff) != kTrailerMarker) return false;
  t = (t >> 8) ^ (trailer_key(p) & (~uint64_t{0} >> 8));  // the key's low seven bytes
  *n = static_cast<size_t>(t & ((uint64_t{1} << kTrailerSiteShift) - 1));
  *site = static_cast<unsigned>(t >> kTrailerSiteShift);
  return true;
}

// --- Allocation sites, for the leak report (option leak_report) ---
// An open-addressing table of call sites with their live blocks and bytes;
// index 0 is "not recorded", kOtherSite the sites that found no free entry
// among the 32 from where their address hashes to (which happens before the
// table is full: a program of 1000 sites had 5 to 8 there). relaxed
// throughout: counters and a claimed slot publish no other memory, and the
// report reads them at exit.
constexpr unsigned kSites = 1024;  // 10 bits of the state word
static_assert(kTrailerSiteShift + 10 <= 56, "a site index fits the trailer");
constexpr unsigned kOtherSite = 1;
struct Site {
  std::atomic<uintptr_t> pc{0};
  std::atomic<int64_t> blocks{0};
  std::atomic<int64_t> bytes{0};
};
Site g_sites[kCheckMode ? kSites : 1];

unsigned site_index(const void* site) {
  if constexpr (!kCheckMode) return 0;  // (g_sites: one entry, never used)
  auto pc = reinterpret_cast<uintptr_t>(site);
  if (pc == 0) return kOtherSite;
  unsigned h = static_cast<unsigned>((pc * kTrailerKey) >> 54);
  for (unsigned probe = 0; probe < 32; ++probe) {
    unsigned i = (h + probe) % kSites;
    if (i <= kOtherSite) continue;
    uintptr_t cur = g_sites[i].pc.load(std::memory_order_relaxed);  // relaxed: see above
    // relaxed: see above. A lost race leaves the winner's pc in cur.
    if (cur == 0 && g_sites[i].pc.compare_exchange_strong(cur, pc, std::memory_order_relaxed))
      return i;
    if (cur == pc) return i;
  }
  return kOtherSite;
}

// A block of n bytes handed out from `site`: its site index (0 when the leak
// report is off).
unsigned note_site(const void* site, size_t n) {
  if constexpr (!kCheckMode) return 0;  // (g_sites: one entry, never used)
  if (opt::get(opt::kLeakReport) == 0 || site == api::kOwnBlockSite) return 0;  // (check.h)
  unsigned i = site_index(site);
  g_sites[i].blocks.fetch_add(1, std::memory_order_relaxed);  // relaxed: see above
  g_sites[i].bytes.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  return i;
}

void forget_site(unsigned i, size_t n) {
  if constexpr (!kCheckMode) return;
  if (i == 0) return;
  g_sites[i].blocks.fetch_sub(1, std::memory_order_relaxed);  // relaxed: see above
  g_sites[i].bytes.fetch_sub(static_cast<int64_t>(n), std::memory_order_relaxed);
}

// A slab object's state word (api/check.h). relaxed everywhere: the program's
// own hand-over of the pointer orders an allocation's store before the free's
// load on another thread; racing frees of one pointer are settled by the
// compare-exchange in release(), whose single winner needs no ordering.
std::atomic_ref<uint32_t> state(const Slab* s, const void* p) {
  return std::atomic_ref<uint32_t>(requested::slot(s, p));
}
// The same for a, an object start (valid_word) of a page pg with its word
// set: the object's index from the word, without reading the Slab's class.
std::atomic_ref<uint32_t> state_at(const pagemap::PageInfo& pg, uintptr_t a) {
  uint64_t k = static_cast<uint64_t>(
      (static_cast<unsigned __int128>(word_offset(pg.word, a)) * word_check(pg.word).magic) >> 64);
  return std::atomic_ref<uint32_t>(pg.slab->requested[k]);
}

// --- Zero-size blocks: distinct addresses in a range nobody may touch ---
// malloc(0) hands out kZeroStride-spaced addresses of a PROT_NONE
// reservation, round robin; a byte per address says never handed out / live
// / freed (so an address comes back only kZeroSlots allocations later).
constexpr size_t kZeroSlots = size_t{1} << 24;
constexpr size_t kZeroStride = 16;
enum ZeroState : uint8_t { kZeroNever = 0, kZeroLive = 1, kZeroFreed = 2 };
// acquire/release: a thread that finds the base set also finds g_zero_state.
std::atomic<uintptr_t> g_zero_base{0};
uint8_t* g_zero_state = nullptr;  // set before g_zero_base
// The allocation site of each live zero-size block (leak report; 0: not
// recorded), as the state word's site bits for a slab object. Written by the
// allocating thread, read by the freeing one: relaxed, ordered by the
// program's own hand-over of the pointer, as the state byte.
uint16_t* g_zero_site = nullptr;         // set before g_zero_base
std::atomic<uint64_t> g_zero_next{0};    // relaxed: only spreads the addresses
std::atomic<bool> g_zero_failed{false};  // relaxed: a hint to stop retrying
Lock g_zero_lock;                        // creating the range

bool zero_range_ready() {
  if (g_zero_base.load(std::memory_order_acquire) != 0) return true;
  if (g_zero_failed.load(std::memory_order_relaxed)) return false;  // relaxed: a hint
  LockGuard g(g_zero_lock);
  if (g_zero_base.load(std::memory_order_relaxed) != 0) return true;  // relaxed: under the lock
  void* range = platform::reserve_inaccessible(kZeroSlots * kZeroStride);
  void* states = platform::map_sparse(kZeroSlots);
  void* sites = platform::map_sparse(kZeroSlots * sizeof(uint16_t));
  if (range == nullptr || states == nullptr || sites == nullptr) {
    if (range != nullptr) platform::unmap(range, kZeroSlots * kZeroStride);
    if (states != nullptr) platform::unmap_sparse(states, kZeroSlots);
    if (sites != nullptr) platform::unmap_sparse(sites, kZeroSlots * sizeof(uint16_t));
    g_zero_failed.store(true, std::memory_order_relaxed);  // relaxed: a hint
    return false;
  }
  // The records are metadata (never unmapped; stop 51's bug hunt: not
  // counted before); the range, no access and never committed, holds the
  // blocks and is in no statistic.
  meta::note_mapped(kZeroSlots + kZeroSlots * sizeof(uint16_t));
  g_zero_state = static_cast<uint8_t*>(states);
  g_zero_site = static_cast<uint16_t*>(sites);
  g_zero_base.store(reinterpret_cast<uintptr_t>(range), std::memory_order_release);
  return true;
}

std::atomic_ref<uint8_t> zero_state(size_t i) { return std::atomic_ref<uint8_t>(g_zero_state[i]); }
std::atomic_ref<uint16_t> zero_site(size_t i) { return std::atomic_ref<uint16_t>(g_zero_site[i]); }

// A zero-size block allocated from `site`, or nullptr (then malloc(0) gets an
// ordinary 8-byte block).
void* alloc_zero(const void* site) {
  if (!zero_range_ready()) return nullptr;
  for (int tries = 0; tries < 64; ++tries) {
    size_t i = g_zero_next.fetch_add(1, std::memory_order_relaxed) % kZeroSlots;  // relaxed
    uint8_t st = zero_state(i).load(std::memory_order_relaxed);  // relaxed: see below
    // relaxed: the state byte publishes no memory (the block has none).
    if (st != kZeroLive &&
        zero_state(i).compare_exchange_strong(st, kZeroLive, std::memory_order_relaxed)) {
      // relaxed: see g_zero_site. Until stop 31 zero-size blocks kept no
      // site, and the leak report never counted them.
      zero_site(i).store(static_cast<uint16_t>(note_site(site, 0)), std::memory_order_relaxed);
      return reinterpret_cast<void*>(g_zero_base.load(std::memory_order_relaxed) +
                                     i * kZeroStride);  // relaxed: read above with acquire
    }
  }
  return nullptr;
}

// A live block, checked.
struct Live {
  void* p;
  Slab* slab;     // nullptr: a large or zero-size block
  size_t usable;  // bytes the canary may use: the class size, or a large block's minus the trailer
  size_t n;       // requested
  unsigned site;  // allocation site (0: not recorded)
  bool huge;
  bool zero;  // a zero-size block

  BlockInfo info(const char* note = nullptr) const {
    BlockInfo i = zero              ? BlockInfo{BlockInfo::kZero, 0, 0, note}
                  : slab != nullptr ? BlockInfo::small(slab->cls, usable, note)
                  : huge            ? BlockInfo::huge(usable + kTrailer, note)
                                    : BlockInfo::large(usable + kTrailer, note);
    i.requested = n;
    return i;
  }
};

// --- Byte patterns, filled and checked inline for short ranges ---
// Blocks of the small classes are mostly a few words: up to kInlineBytes, a
// range is filled or checked with at most four 16-byte moves (SSE2, which
// every x86-64 has; the last ones overlapping), cheaper than a call to memset
// or memcmp, which take the longer ranges (vectorised). memcpy: moves of any
// alignment, no aliasing.
constexpr size_t kInlineBytes = 64;

template <uint8_t B>
void fill_bytes(void* p, size_t len) {
  auto* c = static_cast<unsigned char*>(p);
  if (len >= 16 && len <= kInlineBytes) {
    const __m128i v = _mm_set1_epi8(static_cast<char>(B));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c), v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c + len - 16), v);
    if (len > 32) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(c + 16), v);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(c + len - 32), v);
    }
  } else if (len > kInlineBytes) {
    memset(c, B, len);
  } else if (len >= 8) {
    constexpr uint64_t w = 0x0101010101010101ull * B;
    memcpy(c, &w, 8);
    memcpy(c + len - 8, &w, 8);
  } else {
    for (size_t i = 0; i < len; ++i) c[i] = B;
  }
}

// A run of B, to compare long ranges with (memcmp is vectorised).
template <uint8_t B>
constexpr std::array<uint8_t, 1024> kRun = [] {
  std::array<uint8_t, 1024> a{};
  a.fill(B);
  return a;
}();

// Whether all len bytes at p read B.
template <uint8_t B>
bool bytes_are(const void* p, size_t len) {
  const auto* c = static_cast<const unsigned char*>(p);
  if (len >= 16 && len <= kInlineBytes) {
    const __m128i v = _mm_set1_epi8(static_cast<char>(B));
    auto eq = [&](size_t at) {
      return _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + at)), v);
    };
    __m128i all = _mm_and_si128(eq(0), eq(len - 16));
    if (len > 32) all = _mm_and_si128(all, _mm_and_si128(eq(16), eq(len - 32)));
    return _mm_movemask_epi8(all) == 0xffff;
  }
  if (len > kInlineBytes) {
    for (size_t i = 0; i < len; i += kRun<B>.size()) {
      size_t n = len - i < kRun<B>.size() ? len - i : kRun<B>.size();
      if (memcmp(c + i, kRun<B>.data(), n) != 0) return false;
    }
    return true;
  }
  if (len >= 8) {
    constexpr uint64_t w = 0x0101010101010101ull * B;
    uint64_t x, y;
    memcpy(&x, c, 8);
    memcpy(&y, c + len - 8, 8);
    return ((x ^ w) | (y ^ w)) == 0;
  }
  unsigned diff = 0;
  for (size_t i = 0; i < len; ++i) diff |= c[i] ^ B;
  return diff == 0;
}

// --- The quarantine of slab objects: a FIFO ring per thread ---
// Each thread cache gets a ring at its first free in check mode
// (ThreadCache::check_ring) and keeps it across thread exit and recycling:
// the blocks a thread freed just before it exited wait like any others, and
// the cache's next thread goes on where it stopped. Threads without a cache
// of their own (before their first allocation, after their exit destructor)
// share one ring. Every ring holds quarantine / kRingShare bytes (at most
// kRing objects): the eldest go back once it holds more, but never the block
// just freed (which may be larger than the share on its own).
//
// The shared ring's frees are few and may stop for good (a thread whose first
// call freed a block it was handed, then allocated: its later frees go to its
// own ring), so its entries also leave as the other rings turn over: every
// time a ring has released another share's worth of bytes, the turnover count
// g_turnover goes up by one, and an entry of the shared ring goes back once
// the count has gone up more times since it came in than there are rings — so
// some ring turned over twice meanwhile, and let go of a whole share entirely
// after it (two turnovers were not enough: two rings each a block short of
// their next one let it go after two frees).
//
// A ring is its thread's but not only its: drain() (magslab_trim, an
// allocation short of memory) and fork() reach every ring through g_rings.
// So each has a spin lock — one exchange and one store per free for its
// owner, whom nobody else keeps waiting but for a batch's pops (drain) or a
// fork. It is a leaf: nothing else is taken while it is held.
struct SmallEntry {
  void* p;
  uint32_t bytes;  // the class size (at most 1 MiB)
  uint32_t stamp;  // g_turnover when it came in, modulo 2^32 (quarantine_small sets it)
};
static_assert(sizeof(SmallEntry) == 16 && kMaxClassSize <= UINT32_MAX, "an entry is two words");
constexpr size_t kRing = size_t{1} << 13;  // per ring (so, 512 KiB of 64-byte objects)
constexpr size_t kRingShare = 8;
constexpr size_t kBatch = 16;  // released per call, checked outside the lock
// A ring past budget - budget / kSteadyShare bytes lets one block go per block
// in (quarantine_small): a block waits until that much, less its own size,
// follows it. The ring then holds less by the size of the block let go, which
// may be most of the budget (slab classes up to 1 MiB).
constexpr uint64_t kSteadyShare = 16;

// First in, first out: at most Cap entries (a power of two) in a ring buffer.
template <class E, size_t Cap>
struct Fifo {
  static_assert(is_pow2(Cap), "indices wrap with a mask");
  size_t head = 0, count = 0;
  E slots[Cap];  // left uninitialised: a mapped ring's pages stay untouched until used

  bool full() const { return count == Cap; }
  E& at(size_t i) { return slots[(head + i) & (Cap - 1)]; }  // i-th eldest
  void push(const E& e) {
    at(count) = e;
    ++count;
  }
  E pop() {
    E e = slots[head];
    head = (head + 1) & (Cap - 1);
    --count;
    return e;
  }
};

struct ThreadRing {
  std::atomic<bool> busy{false};
  // Whether q holds entries: written under busy, read without it by a free
  // that finds the quarantine off (retire_small). relaxed: a hint; a stale
  // true takes the lock as before, and a stale false (another thread pushed
  // to the shared ring meanwhile) leaves that entry for the ring's next free
  // or a drain, as the quarantine being off already did for the shared ring.
  std::atomic<bool> holds{false};
  ThreadRing* all_next = nullptr;  // g_rings; set before the ring is published
  size_t bytes = 0;                // under busy, as q: the bytes of its entries
  size_t released = 0;             // under busy: bytes let go since g_turnover last went up for it
  // Set while a fork's prepare handler holds busy (lock_for_fork): the forking
  // thread, which reads it (base/lock.h, t_fork_holder), takes busy no more.
  bool fork_held = false;
  Fifo<SmallEntry, kRing> q;

  // Take the lock, waiting at most max_waits rounds (spinning, then
  // yielding); false: still busy then.
  bool lock_within(unsigned max_waits) {
    unsigned waits = 0;
    // acquire: pairs with unlock(); the ring's fields as its last holder left them.
    while (busy.exchange(true, std::memory_order_acquire)) {
      // Busy because this thread holds it for a fork (looked at only once
      // the exchange failed: the free's path pays nothing for it).
      if (MAGSLAB_UNLIKELY(t_fork_holder && fork_held)) return true;
      for (unsigned spins = 0; busy.load(std::memory_order_relaxed); ++spins) {  // relaxed: a hint
        if (++waits > max_waits) return false;
        if (spins < 64)
          __builtin_ia32_pause();
        else
          sched_yield();  // a holder that is forking, or preempted
      }
    }
    return true;
  }
  void lock() {
    while (!lock_within(UINT_MAX)) {
    }
  }
  // release: publishes the ring's fields to its next holder.
  void unlock() {
    // fork_held first: false for every holder but a forking thread's (it is
    // written under busy), so the thread-local is read only then.
    if (MAGSLAB_UNLIKELY(fork_held) && t_fork_holder) return;
    holds.store(q.count != 0, std::memory_order_relaxed);  // relaxed: see holds
    busy.store(false, std::memory_order_release);
  }

  void push(const SmallEntry& e) {
    q.push(e);
    bytes += e.bytes;
  }
  SmallEntry pop() {
    SmallEntry e = q.pop();
    bytes -= e.bytes;
    return e;
  }
};

// Every ring ever made (they are never unmapped), newest first; pushed under
// g_rings_lock, which fork() holds while it takes every ring's lock, so no
// ring appears (locked by a thread the child will not have) meanwhile.
// acquire/release: a reader that finds a ring finds it initialised.
std::atomic<ThreadRing*> g_rings{nullptr};
Lock g_rings_lock;

// How many times a ring has released another share of the quarantine (above).
// relaxed: a count that orders nothing; it goes up once per share released.
std::atomic<uint32_t> g_turnover{0};
// Rings made so far (new_ring); relaxed: a count, read as a bound.
std::atomic<uint32_t> g_ring_count{0};

ThreadRing* new_ring() {
  // errno kept on a refusal: a free makes the ring, and free leaves errno
  // alone (until stop 50's bug hunt the refused mapping's ENOMEM came out).
  const int saved = errno;
  void* mem = platform::map_sparse(sizeof(ThreadRing));
  if (mem == nullptr) {
    errno = saved;
    return nullptr;
  }
  auto* r = new (mem) ThreadRing;  // default-initialised: the slots stay untouched (zero pages)
  // Never unmapped: metadata (not counted until stop 51's bug hunt).
  meta::note_mapped(align_up(sizeof(ThreadRing), kPageSize));
  LockGuard g(g_rings_lock);
  g_ring_count.fetch_add(1, std::memory_order_relaxed);   // relaxed: see g_ring_count
  r->all_next = g_rings.load(std::memory_order_relaxed);  // relaxed: under the lock
  g_rings.store(r, std::memory_order_release);
  return r;
}

// The ring of threads without a cache; nullptr until one frees.
std::atomic<ThreadRing*> g_shared_ring{nullptr};

// The calling thread's ring if it has one yet, else nullptr (retire_small
// asks without making one).
ThreadRing* existing_ring() {
  ThreadCache* tc = t_cache;
  if (MAGSLAB_LIKELY(is_owned_cache(tc))) return static_cast<ThreadRing*>(tc->check_ring);
  // acquire: pairs with my_ring()'s release; the ring is initialised.
  return g_shared_ring.load(std::memory_order_acquire);
}

// The calling thread's ring, made at its first free; nullptr when none can be
// mapped (its blocks then skip the quarantine).
ThreadRing* my_ring() {
  if (ThreadRing* r = existing_ring(); MAGSLAB_LIKELY(r != nullptr)) return r;
  ThreadCache* tc = t_cache;
  if (is_owned_cache(tc)) return static_cast<ThreadRing*>(tc->check_ring = new_ring());
  ThreadRing* r = new_ring();
  ThreadRing* expected = nullptr;
  // acq_rel: publish ours, or (acquire) take the winner's and leave ours in g_rings, empty.
  if (r != nullptr &&
      !g_shared_ring.compare_exchange_strong(expected, r, std::memory_order_acq_rel))
    return expected;
  return r;
}

// --- The quarantine of large blocks: one ring under a leaf lock ---
struct Entry {
  void* p;
  size_t bytes;  // usable bytes, including the trailer
  size_t n;      // requested
  bool huge;
  bool locked;  // made inaccessible (mprotect succeeded)
};
constexpr size_t kLargeRing = 64;  // large blocks (each a mapping split while held)

// bss; one entry in builds without check mode.
struct LargeRing {
  Lock lock;
  // Up to kLargeRing blocks wait; the room past them is for blocks mprotect
  // would not make accessible again (release_large), which wait once more.
  Fifo<Entry, kCheckMode ? 2 * kLargeRing : 1> q;  // under lock
  // q.count as it was when the lock was last released, for readable() to
  // skip the lock while the ring is empty. relaxed: a block entering or
  // leaving quarantine meanwhile is a misuse race either way (check.h).
  std::atomic<size_t> held{0};
  void note_count() { held.store(q.count, std::memory_order_relaxed); }
} g_large_ring;

// Under g_large_ring.lock: the large quarantine's entry for p, or nullptr.
const Entry* find_large_locked(const void* p) {
  for (size_t i = 0; i < g_large_ring.q.count; ++i) {
    const Entry* e = &g_large_ring.q.at(i);
    if (e->p == p) return e;
  }
  return nullptr;
}

}  // namespace

bool readable(const void* p, size_t n) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  // Slab pages are never made inaccessible (their quarantine fills objects).
  if (pagemap::lookup_slab(a) != nullptr) return true;
  if (g_large_ring.held.load(std::memory_order_relaxed) == 0) return true;  // relaxed: see held
  LockGuard g(g_large_ring.lock);
  for (size_t i = 0; i < g_large_ring.q.count; ++i) {
    const Entry& e = g_large_ring.q.at(i);
    const auto b = reinterpret_cast<uintptr_t>(e.p);
    if (e.locked && a < b + e.bytes && b < a + n) return false;
  }
  return true;
}

namespace {

[[noreturn]] MAGSLAB_COLD void freed_misuse(const void* p, Misuse kind, BlockInfo info) {
  info.note = "already freed";
  platform::misuse(kind == Misuse::kInvalidFree ? Misuse::kDoubleFree : kind, p, info);
}

[[noreturn]] MAGSLAB_COLD MAGSLAB_NOINLINE void write_after_free(const SmallEntry& e) {
  Slab* s = pagemap::lookup_slab(reinterpret_cast<uintptr_t>(e.p));
  BlockInfo info = BlockInfo::small(s->cls, kClasses[s->cls].size);
  // relaxed: see state(); the freeing thread's store is ordered by the ring's lock.
  info.requested = (state(s, e.p).load(std::memory_order_relaxed) & kSizeMask) - 1;
  platform::misuse(Misuse::kWriteAfterFree, e.p, info);
}

// A slab object leaves quarantine: its fill must be intact.
void release_small(const SmallEntry& e) {
  if (MAGSLAB_UNLIKELY(!bytes_are<kFreedByte>(e.p, e.bytes))) write_after_free(e);
  raw::free(e.p);
}

// mprotect may refuse to make the block accessible again: ENOMEM where that
// needs one mapping more than vm.max_map_count allows (a block between
// quarantined neighbours the kernel merged into one inaccessible mapping).
// That aborted a correct program until stop 40; now the block waits in the
// ring once more, still inaccessible and still known (a second free of it is
// reported, readable() says no), and is tried again when it is the eldest. With
// the ring's spare room used up too it stays inaccessible and out of use for
// good (address space and a page run's metadata), and known no more: a second
// free of it then faults reading its trailer instead of being reported.
//
// Under RLIMIT_DATA or strict overcommit mprotect refuses too (making pages
// writable again charges them), and the block then held what an allocation
// short of memory needed: its mapping's writable rest (3 MiB of a 1 MiB
// block's 4) counts against the limit, and so would its pages once reopened.
// So a huge block goes back to the OS as it is (munmap needs no access), and
// waits again only if that is refused too (the map count). Until stop 54's
// bug hunt a malloc(2 MiB) under `ulimit -d` with three such blocks
// quarantined failed (ENOMEM, mprotect refused at each drain), and
// tests/small_limits_main.c with the check library failed at some limits
// and passed at lower ones.
void release_large(const Entry& e) {
  if (e.locked && !platform::protect(e.p, e.bytes, true)) {
    if (e.huge && large::free_unmapping(e.p)) return;
    LockGuard g(g_large_ring.lock);
    if (!g_large_ring.q.full()) g_large_ring.q.push(e);
    g_large_ring.note_count();
    return;
  }
  raw::free(e.p);
}

// The shared ring's entries that came in more turnovers ago than there are
// rings go back.
void turn_over_shared() {
  // acquire: as in my_ring().
  ThreadRing* s = g_shared_ring.load(std::memory_order_acquire);
  if (s == nullptr) return;
  const uint32_t rings = g_ring_count.load(std::memory_order_relaxed);  // relaxed: see there
  // relaxed: set by a test before the turnover it concerns.
  if (auto hook = g_turn_over_hook.load(std::memory_order_relaxed); MAGSLAB_UNLIKELY(hook)) hook();
  for (;;) {
    SmallEntry out[kBatch];
    size_t nout = 0;
    s->lock();
    // The count as of now, read under the lock: every entry was stamped before
    // its push, so none is newer (the lock orders the two reads). Read before
    // the lock, it could be older than an entry another ring's turnover and a
    // free pushed meanwhile, which then read as 2^32 - 1 turnovers old and went
    // back at once, unchecked by any later write (stop 54's bug hunt).
    const uint32_t now = g_turnover.load(std::memory_order_relaxed);  // relaxed: see g_turnover
    // Turnovers since it came in: unsigned, so right across the count's wrap.
    while (s->q.count != 0 && nout < kBatch && uint32_t(now - s->q.at(0).stamp) > rings)
      out[nout++] = s->pop();
    s->unlock();
    for (size_t i = 0; i < nout; ++i) release_small(out[i]);
    if (nout < kBatch) return;
  }
}

// Queue the freed slab object e, then release what falls out past the budget.
void quarantine_small(const SmallEntry& freed) {
  ThreadRing* r = my_ring();
  if (MAGSLAB_UNLIKELY(r == nullptr)) return release_small(freed);
  const uint64_t budget = opt::get(opt::kQuarantine) / kRingShare;
  SmallEntry e = freed;
  e.stamp = g_turnover.load(std::memory_order_relaxed);  // relaxed: see g_turnover
  SmallEntry out[kBatch];
  size_t nout = 0;
  bool turned = false;
  r->lock();
  if (r->q.full()) out[nout++] = r->pop();
  r->push(e);
  const size_t held = r->bytes;
  // Never the block just pushed (count > 1), unless the quarantine is off: one
  // larger than the budget (a slab class up to 1 MiB against 512 KiB by
  // default) would be checked and handed back at once, before the program
  // could write to it; it waits, past the budget, until this thread's next free.
  // One out for each one in while the ring holds more than kSteadyShare of
  // the budget, whatever the sizes: a branch the predictor learns (popping
  // until the bytes fit let go of 0, 1 or 2 entries a free as the sizes came,
  // about one misprediction a free: stop 49); more only past the budget.
  const bool may_pop = r->q.count > 1 || budget == 0;
  if (r->bytes > budget - budget / kSteadyShare && may_pop) out[nout++] = r->pop();
  while (r->bytes > budget && nout < kBatch && (r->q.count > 1 || budget == 0))
    out[nout++] = r->pop();
  if (budget != 0) {                 // (off: the shared ring's own frees empty it)
    r->released += held - r->bytes;  // (a full ring's pop before the push is not counted)
    if (r->released >= budget) {
      r->released = 0;
      turned = true;
    }
  }
  r->unlock();
  for (size_t i = 0; i < nout; ++i) release_small(out[i]);
  if (turned) {
    g_turnover.fetch_add(1, std::memory_order_relaxed);  // relaxed: see g_turnover
    turn_over_shared();
  }
}

// The slab object p (usable bytes), whose state says freed: filled with the
// freed pattern and queued. With the quarantine off and nothing waiting in the
// thread's ring, it goes back at once instead: the ring would hand it back
// before anything could write to it, so neither the fill nor the check of it
// could find anything (larson at 1 thread with MAGSLAB_QUARANTINE=0: 8.6 →
// 13.2 M operations per CPU second, stop 47; the default's 8.2). A ring that
// still holds blocks (the quarantine lowered at run time) goes on emptying as
// before.
void retire_small(void* p, size_t usable) {
  if (opt::get(opt::kQuarantine) == 0) {
    ThreadRing* r = existing_ring();
    // relaxed: see ThreadRing::holds.
    if (r == nullptr || !r->holds.load(std::memory_order_relaxed)) return raw::free(p);
  }
  fill_bytes<kFreedByte>(p, usable);
  quarantine_small(SmallEntry{p, static_cast<uint32_t>(usable), 0});
}

// Queue the freed large block e (its `locked` set here); past kLargeRing
// blocks (or with the quarantine off) the eldest go back. Large blocks are
// decommitted while they wait: only their number is bounded. Decommitted and
// made inaccessible under the ring's lock, after the look for an entry of it:
// a racing free, realloc or usable_size of the block reads it (live_block's
// trailer, check_canary) only under that lock and after the same look, so it
// either reads it still accessible or finds its entry. Until stop 51's bug
// hunt the mprotect came first, outside the lock: of two threads freeing one
// page run at once, the second could find no entry yet and read the trailer
// the first had just made inaccessible, SIGSEGV instead of the double free's
// line (2 of 4000 racing pairs; ctest check_racing_double_free_of_a_large_block).
// Only system calls run under the lock (a leaf: api/fork.cc takes it last).
void quarantine_large(Entry e) {
  const bool off = opt::get(opt::kQuarantine) == 0;
  Entry out[kBatch];
  size_t nout = 0;
  {
    LockGuard g(g_large_ring.lock);
    // Two racing frees of one large block both passed live_block(): one
    // finds the other's entry here.
    if (find_large_locked(e.p) != nullptr) {
      BlockInfo info = e.huge ? BlockInfo::huge(e.bytes) : BlockInfo::large(e.bytes);
      info.requested = e.n;
      freed_misuse(e.p, Misuse::kInvalidFree, info);
    }
    platform::decommit(e.p, e.bytes);  // its pages need no memory while it waits
    e.locked = platform::protect(e.p, e.bytes, false);
    auto& q = g_large_ring.q;
    if (q.count >= kLargeRing) out[nout++] = q.pop();  // (more only with blocks waiting again)
    q.push(e);
    while (off && nout < kBatch && q.count != 0) out[nout++] = q.pop();
    g_large_ring.note_count();
  }
  for (size_t i = 0; i < nout; ++i) release_large(out[i]);
}

// The block p, checked to be live (aborts otherwise, naming `invalid`, or a
// double free when invalid is kInvalidFree and p was freed).
Live live_block(const void* p, Misuse invalid) {
  auto a = reinterpret_cast<uintptr_t>(p);
  void* q = const_cast<void*>(p);
  // acquire: pairs with zero_range_ready()'s release (g_zero_state).
  if (uintptr_t z = g_zero_base.load(std::memory_order_acquire);
      z != 0 && a - z < kZeroSlots * kZeroStride) {
    Live b{q, nullptr, 0, 0, 0, false, true};
    size_t i = (a - z) / kZeroStride;
    uint8_t st = zero_state(i).load(std::memory_order_relaxed);  // relaxed: see alloc_zero()
    if (MAGSLAB_UNLIKELY((a - z) % kZeroStride != 0 || st == kZeroNever)) {
      b.n = kUnknownRequest;
      platform::misuse(invalid, p,
                       b.info((a - z) % kZeroStride == 0 ? "never handed out" : nullptr));
    }
    if (MAGSLAB_UNLIKELY(st == kZeroFreed)) freed_misuse(p, invalid, b.info());
    b.site = zero_site(i).load(std::memory_order_relaxed);  // relaxed: see g_zero_site
    return b;
  }
  if (pagemap::PageInfo pg = pagemap::lookup_page(a); pg.slab != nullptr) {
    Slab* s = pg.slab;
    size_t size = kClasses[s->cls].size;
    // A hollow page (slab::hollow) has word 0: the record says the same.
    uint64_t w = pg.word;
    if (MAGSLAB_UNLIKELY(w != 0 ? !valid_word(w, a) : !slab::object_start(s, a)))
      platform::misuse(invalid, p, BlockInfo::small(s->cls, size));
    uint32_t st = state(s, p).load(std::memory_order_relaxed);  // relaxed: see state()
    if (MAGSLAB_UNLIKELY(st == 0))
      platform::misuse(invalid, p, BlockInfo::small(s->cls, size, "never handed out"));
    if (MAGSLAB_UNLIKELY((st & kFreedBit) != 0)) {
      BlockInfo info = BlockInfo::small(s->cls, size);
      info.requested = (st & kSizeMask) - 1;
      freed_misuse(p, invalid, info);
    }
    return Live{q, s, size, (st & kSizeMask) - 1, (st & ~kFreedBit) >> kSiteShift, false, false};
  }
  // Its size from the heap's records (no read of the block; the heap's locks
  // are not taken under the ring's), then, under the ring's lock, whether it
  // waits there and its trailer: a racing free makes it inaccessible only
  // under that lock (quarantine_large).
  bool huge = false;
  size_t total = large::usable_size(p, invalid, &huge);
  uint64_t t;
  {
    LockGuard g(g_large_ring.lock);
    if (const Entry* e = find_large_locked(p)) {
      BlockInfo info = e->huge ? BlockInfo::huge(e->bytes) : BlockInfo::large(e->bytes);
      info.requested = e->n;
      freed_misuse(p, invalid, info);
    }
    memcpy(&t, static_cast<const char*>(p) + total - kTrailer, sizeof t);
  }
  size_t n = 0;
  unsigned site = 0;
  const bool marked = trailer_read(p, t, &n, &site);
  Live b{q, nullptr, total - kTrailer, n, site, huge, false};
  if (MAGSLAB_UNLIKELY(!marked || total < kTrailer + 1 || b.n >= b.usable || b.site >= kSites)) {
    b.n = kUnknownRequest;
    platform::misuse(Misuse::kOverflow, p, b.info("its size record past the end was overwritten"));
  }
  return b;
}

// The canary's extent: [n, canary_end(b.usable, n)).
size_t canary_end(size_t usable, size_t n) {
  return usable < n + kCanaryMax ? usable : n + kCanaryMax;
}

// --- The canary, without branches on its length ---
// Most canaries are the few bytes up to the class size. One that lies within
// the last 64 bytes of a block of 64 bytes or more is filled or checked as the
// window [end - 64, end), its bytes below n kept (filled: read and written
// back) or ignored (checked) through a mask: four 16-byte moves, no branch on
// the length. fill_bytes and bytes_are test the length, and loop over short
// ranges byte by byte: with lengths that vary from one call to the next (a
// program's requests of many sizes) their branches mispredicted about once a
// fill and once a check (docs/check.md, "Branch mispredictions").
constexpr size_t kWindow = 64;  // four 16-byte parts (fill_canary, canary_intact)

// kWindow bytes 0x00, then kWindow bytes 0xff: the mask of window bytes from k
// on is the window read at kWindow - k.
constexpr std::array<uint8_t, 2 * kWindow> kTailMask = [] {
  std::array<uint8_t, 2 * kWindow> a{};
  for (size_t i = kWindow; i < a.size(); ++i) a[i] = 0xff;
  return a;
}();

bool canary_in_window(size_t n, size_t end) { return end >= kWindow && end - n <= kWindow; }

__m128i window_mask(size_t k, size_t i) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(kTailMask.data() + kWindow - k + 16 * i));
}

// The canary [n, end) of the block at c filled.
void fill_canary(void* c, size_t n, size_t end) {
  auto* b = static_cast<unsigned char*>(c);
  if (MAGSLAB_LIKELY(canary_in_window(n, end))) {
    const size_t k = n - (end - kWindow);  // the canary's first byte in the window
    const __m128i v = _mm_set1_epi8(static_cast<char>(kCanaryByte));
    auto* w = reinterpret_cast<__m128i*>(b + end - kWindow);
    auto part = [&](size_t i) {
      const __m128i m = window_mask(k, i);
      const __m128i old = _mm_loadu_si128(w + i);
      _mm_storeu_si128(w + i, _mm_or_si128(_mm_andnot_si128(m, old), _mm_and_si128(m, v)));
    };
    part(0), part(1), part(2), part(3);  // kWindow / 16 parts, unrolled: no loop branch
    return;
  }
  fill_bytes<kCanaryByte>(b + n, end - n);
}

// Whether the canary [n, end) of the block at c is intact.
bool canary_intact(const void* c, size_t n, size_t end) {
  const auto* b = static_cast<const unsigned char*>(c);
  if (MAGSLAB_LIKELY(canary_in_window(n, end))) {
    const size_t k = n - (end - kWindow);
    const __m128i v = _mm_set1_epi8(static_cast<char>(kCanaryByte));
    const auto* w = reinterpret_cast<const __m128i*>(b + end - kWindow);
    // 0xff where a canary byte of part i differs; kWindow / 16 parts, unrolled.
    auto bad = [&](size_t i) {
      return _mm_andnot_si128(_mm_cmpeq_epi8(_mm_loadu_si128(w + i), v), window_mask(k, i));
    };
    return _mm_movemask_epi8(
               _mm_or_si128(_mm_or_si128(bad(0), bad(1)), _mm_or_si128(bad(2), bad(3)))) == 0;
  }
  return bytes_are<kCanaryByte>(b + n, end - n);
}

// b's canary is intact (aborts otherwise). A page run or huge block is read
// under the large ring's lock, as its trailer (live_block), and may have been
// freed by another thread since live_block: then it is named as live_block
// would (`invalid`, or a double free).
void check_canary(const Live& b, Misuse invalid = Misuse::kInvalidFree) {
  if (b.slab == nullptr && !b.zero) {
    LockGuard g(g_large_ring.lock);
    if (MAGSLAB_UNLIKELY(find_large_locked(b.p) != nullptr)) freed_misuse(b.p, invalid, b.info());
    if (MAGSLAB_UNLIKELY(!canary_intact(b.p, b.n, canary_end(b.usable, b.n))))
      platform::misuse(Misuse::kOverflow, b.p, b.info());
    return;
  }
  if (MAGSLAB_UNLIKELY(!canary_intact(b.p, b.n, canary_end(b.usable, b.n))))
    platform::misuse(Misuse::kOverflow, b.p, b.info());
}

// The program gives b up (checked live, canary intact).
void release(const Live& b) {
  if (b.zero) {
    auto i = (reinterpret_cast<uintptr_t>(b.p) - g_zero_base.load(std::memory_order_relaxed)) /
             kZeroStride;  // relaxed: live_block read it with acquire
    uint8_t live = kZeroLive;
    // relaxed: see alloc_zero(); of two racing frees one wins, the other reports.
    if (!zero_state(i).compare_exchange_strong(live, kZeroFreed, std::memory_order_relaxed))
      freed_misuse(b.p, Misuse::kInvalidFree, b.info());
    forget_site(b.site, 0);
    return;
  }
  forget_site(b.site, b.n);
  if (b.slab != nullptr) {
    uint32_t live = static_cast<uint32_t>(b.n + 1) | (b.site << kSiteShift);
    // relaxed: see state(); of two racing frees one wins, the other reports.
    if (MAGSLAB_UNLIKELY(
            !state(b.slab, b.p)
                 .compare_exchange_strong(live, kFreedBit | live, std::memory_order_relaxed)))
      freed_misuse(b.p, Misuse::kInvalidFree, b.info());
    retire_small(b.p, b.usable);
    return;
  }
  // A page run or a mapping: whole pages, decommitted and made inaccessible there.
  quarantine_large(Entry{b.p, b.usable + kTrailer, b.n, b.huge, false});
}

void* fail_nomem() {
  errno = ENOMEM;
  return nullptr;
}

// A raw block; when there is none, the quarantine goes back first and the
// request is tried once more: freed blocks waiting there (large ones keep
// their address space) must not turn into a failure the program would not
// see in release — a new_handler that frees a reserve under an address-space
// limit, say.
void* raw_alloc(size_t n, size_t align, bool* zeroed = nullptr) {
  const int saved = errno;
  void* p = raw::alloc(n, align, zeroed);
  if (p == nullptr) {
    // The first refusal's ENOMEM must not outlive a retry that succeeds.
    drain();
    p = raw::alloc(n, align, zeroed);
    if (p != nullptr) errno = saved;
  }
  return p;
}

// A block for a request of n bytes aligned to align, its state, canary and
// (fill) fresh pattern laid out; site: the caller's return address. room: at
// least that many bytes of block (a growing realloc's headroom), 0: n's.
// zeroed (calloc's): set to whether the block's first n bytes read zero.
void* alloc(size_t n, size_t align, bool fill, const void* site, size_t room = 0,
            bool* zeroed = nullptr) {
  if (n > kMaxRequest || align > kMaxRequest) return fail_nomem();
  if (n == 0 && align <= kZeroStride) {
    const int saved = errno;  // a refused reservation of the range: malloc(0) goes on below
    if (void* z = alloc_zero(site)) return z;
    errno = saved;
  }
  if (zeroed != nullptr) *zeroed = false;
  void* p = raw_alloc(n + 1 > room ? n + 1 : room, align, zeroed);  // at least one byte of canary
  if (p == nullptr) return fail_nomem();
  size_t end;
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (pagemap::PageInfo pg = pagemap::lookup_page(a); pg.slab != nullptr) {
    // (A refill restores the words of the pages it hands objects out on: word 0 is not expected.)
    end = pg.word != 0 ? word_size(pg.word) : kClasses[pg.slab->cls].size;
    // relaxed: see state(); p is this thread's alone until the program hands it on.
    (pg.word != 0 ? state_at(pg, a) : state(pg.slab, p))
        .store(static_cast<uint32_t>(n + 1) | (note_site(site, n) << kSiteShift),
               std::memory_order_relaxed);
  } else {
    size_t total = large::usable_size(p);
    if (total < n + 1 + kTrailer) {  // no room for the trailer: ask for it too
      raw::free(p);
      p = raw_alloc(n + 1 + kTrailer, align, zeroed);
      if (p == nullptr) return fail_nomem();
      total = large::usable_size(p);
    }
    end = total - kTrailer;
    const uint64_t t = trailer_word(p, n, note_site(site, n));
    memcpy(static_cast<char*>(p) + end, &t, sizeof t);
  }
  if (fill && opt::get(opt::kFill) != 0) fill_bytes<kFreshByte>(p, n);
  fill_canary(p, n, canary_end(end, n));
  return p;
}

}  // namespace

// malloc and calloc align every block to 16 bytes, as glibc does (release
// hands out 8-aligned blocks of 8 bytes and less, which the C and C++ standards
// allow): with the canary byte, a request of 1-7 bytes would take an 8-byte
// block, and quarantine, unlike release's LIFO reuse, then hands out
// 8-aligned addresses in turn — a program that assumed 16 would work under
// release and fail only here.
constexpr size_t kMallocAlign = 16;

void* malloc(size_t n, const void* site) { return alloc(n, kMallocAlign, true, site); }

void* calloc(size_t count, size_t size, const void* site) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  // Pages the OS just mapped are left alone (a sparse calloc stays sparse,
  // as in release): until the stop 49 hunt every byte was cleared, and a
  // 1 GiB calloc was resident whole.
  bool zeroed = false;
  void* p = alloc(total, kMallocAlign, false, site, 0, &zeroed);
  if (p != nullptr && !zeroed) memset(p, 0, total);
  return p;
}

void* aligned(size_t align, size_t n, const void* site) { return alloc(n, align, true, site); }

namespace {

// In place while n (and its canary byte) fits the block and is more than half
// of it (or, `shrink_anyway`, when there is no memory to move it to), as
// release does; otherwise the block moves and the old one goes to
// quarantine, where a stale pointer to it is caught like any use after free.
bool realloc_in_place(const Live& b, size_t n, bool shrink_anyway = false) {
  if (b.zero || n >= b.usable || (n <= b.usable / 2 && !shrink_anyway)) return false;
  if (kCheckMode && b.site != 0) {  // the leak report's byte count follows the block
    g_sites[b.site].bytes.fetch_add(static_cast<int64_t>(n) - static_cast<int64_t>(b.n),
                                    std::memory_order_relaxed);  // relaxed: see Site
  }
  auto* c = static_cast<char*>(b.p);
  if (b.slab != nullptr) {
    // relaxed: see state(); the block is the caller's.
    state(b.slab, b.p)
        .store(static_cast<uint32_t>(n + 1) | (b.site << kSiteShift), std::memory_order_relaxed);
  } else {
    const uint64_t t = trailer_word(b.p, n, b.site);
    memcpy(c + b.usable, &t, sizeof t);
  }
  if (n > b.n && opt::get(opt::kFill) != 0) fill_bytes<kFreshByte>(c + b.n, n - b.n);
  fill_canary(c, n, canary_end(b.usable, n));
  return true;
}

}  // namespace

void* realloc(void* p, size_t n, const void* site) {
  if (p == nullptr) return malloc(n, site);
  if (n == 0) {  // glibc: free and return NULL
    free(p);
    return nullptr;
  }
  Live b = live_block(p, Misuse::kInvalidRealloc);
  check_canary(b, Misuse::kInvalidRealloc);
  if (n > kMaxRequest) return fail_nomem();  // p is untouched
  if (realloc_in_place(b, n)) return p;
  const int saved = errno;
  // A block that grows past the largest class moves to one with a quarter
  // more room than it had, where it then grows in place: huge blocks are
  // copied, not remapped, and each is only its pages, so a buffer grown in
  // small steps moved (filled and copied whole) at every page until this
  // hunt: growing one to 32 MiB by 4 KiB took 95 s and 7968 moves (release:
  // 0.03 s). Without memory for the room, the block n needs.
  void* q = nullptr;
  if (n >= b.usable && n >= kMaxClassSize && b.usable <= kMaxRequest / 2) {
    q = alloc(n, kMallocAlign, true, site, b.usable + b.usable / 4);
    if (q == nullptr) errno = saved;
  }
  if (q == nullptr) q = alloc(n, kMallocAlign, true, site);
  if (q == nullptr) {
    // A shrink with no memory for the move keeps the block, as release does.
    if (!realloc_in_place(b, n, true)) return nullptr;  // errno is ENOMEM; p is untouched
    errno = saved;
    return p;
  }
  memcpy(q, p, n < b.n ? n : b.n);
  release(b);
  return q;
}

void free(void* p) {
  if (p == nullptr) return;
  // The common case straight through: a live slab object, its canary intact.
  // Anything else (and any misuse) takes the general path, which finds and
  // reports what this one only tested for.
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (pagemap::PageInfo pg = pagemap::lookup_page(a);
      MAGSLAB_LIKELY(pg.word != 0 && valid_word(pg.word, a))) {
    std::atomic_ref<uint32_t> st = state_at(pg, a);
    uint32_t live = st.load(std::memory_order_relaxed);  // relaxed: see state()
    const size_t usable = word_size(pg.word);
    const size_t n = (live & kSizeMask) - 1;
    // relaxed: see state(); of two racing frees one wins, the other reports.
    if (MAGSLAB_LIKELY(
            (live & kSizeMask) != 0 && (live & kFreedBit) == 0 &&
            canary_intact(p, n, canary_end(usable, n)) &&
            st.compare_exchange_strong(live, live | kFreedBit, std::memory_order_relaxed))) {
      forget_site(live >> kSiteShift, n);
      retire_small(p, usable);
      return;
    }
  }
  Live b = live_block(p, Misuse::kInvalidFree);
  check_canary(b);
  release(b);
}

void free_sized(void* p, size_t n) {
  if (p == nullptr) return;
  Live b = live_block(p, Misuse::kInvalidFree);
  if (MAGSLAB_UNLIKELY(n != b.n)) platform::misuse(Misuse::kWrongSizedFree, p, b.info());
  check_canary(b);
  release(b);
}

size_t usable_size(const void* p) {
  if (p == nullptr) return 0;
  return live_block(p, Misuse::kInvalidUsableSize).n;
}

void drain() {
  // acquire: pairs with new_ring(); every ring on the list is initialised.
  for (ThreadRing* r = g_rings.load(std::memory_order_acquire); r != nullptr; r = r->all_next) {
    for (;;) {
      SmallEntry out[kBatch];
      size_t nout = 0;
      r->lock();
      while (r->q.count != 0 && nout < kBatch) out[nout++] = r->pop();
      r->unlock();
      if (nout == 0) break;
      for (size_t i = 0; i < nout; ++i) release_small(out[i]);
    }
  }
  // The blocks there now: one that mprotect keeps inaccessible comes back
  // (release_large) and is not tried twice.
  size_t left;
  {
    LockGuard g(g_large_ring.lock);
    left = g_large_ring.q.count;
  }
  while (left != 0) {
    Entry out[kBatch];
    size_t nout = 0;
    {
      LockGuard g(g_large_ring.lock);
      while (g_large_ring.q.count != 0 && nout < kBatch && nout < left)
        out[nout++] = g_large_ring.q.pop();
      g_large_ring.note_count();
    }
    if (nout == 0) break;
    left -= nout;
    for (size_t i = 0; i < nout; ++i) release_large(out[i]);
  }
}

void check_quarantine_at_exit() {
  // The quarantined objects are freed blocks to memcheck: reading their fill
  // is not the program's error (as magslab_trim's drain).
  [[maybe_unused]] vg::ErrorsOff quiet;
  // acquire: pairs with new_ring(); every ring on the list is initialised.
  for (ThreadRing* r = g_rings.load(std::memory_order_acquire); r != nullptr; r = r->all_next) {
    // A ring still busy after a while is skipped, not waited for: exit() may
    // run in a signal handler that interrupted this very thread's free inside
    // the ring's lock (found by a review: it then spun for ever), or another
    // thread may be stopped inside it.
    if (!r->lock_within(2000)) continue;
    for (size_t i = 0; i < r->q.count; ++i) {
      const SmallEntry e = r->q.at(i);
      if (MAGSLAB_UNLIKELY(!bytes_are<kFreedByte>(e.p, e.bytes))) {
        r->unlock();
        write_after_free(e);
      }
    }
    r->unlock();
  }
}

// The sites' counters as report_leaks read them once: other threads may still
// allocate and free while it runs (exit() from one thread while others work),
// and the lines must add up to the total above them (before stop 42 each line
// read its counters again). Only the exit's one report uses it, and so the
// order of its lines too: 4 KiB that were on the stack of the thread calling
// exit(), which may be a thread of PTHREAD_STACK_MIN (16 KiB, glibc's static
// TLS and thread descriptor taken from it): the leak report needed 8.5 KiB of
// it, and one called 4 KiB deep died of SIGSEGV (a bug hunt, stop 50).
struct SiteSnap {
  int64_t blocks, bytes;
};
SiteSnap g_snap[kCheckMode ? kSites : 1];
unsigned g_order[kCheckMode ? kSites : 1];

void report_leaks(int fd) {
  if (!kCheckMode || opt::get(opt::kLeakReport) == 0) return;
  unsigned* const order = g_order;
  unsigned n = 0;
  int64_t blocks = 0, bytes = 0;
  for (unsigned i = kOtherSite; i < kSites; ++i) {
    // relaxed (both): see Site. Two loads: a line may pair a block count and
    // a byte count a concurrent update is between; its own sum still holds.
    const SiteSnap snap{g_sites[i].blocks.load(std::memory_order_relaxed),
                        g_sites[i].bytes.load(std::memory_order_relaxed)};
    if (snap.blocks <= 0) continue;
    g_snap[i] = snap;
    blocks += snap.blocks;
    bytes += snap.bytes;
    // Insertion by bytes, largest first.
    unsigned k = n++;
    for (; k > 0 && g_snap[order[k - 1]].bytes < snap.bytes; --k) order[k] = order[k - 1];
    order[k] = i;
  }
  LineBuf l;
  l.str("magslab: leak report: ").num(static_cast<uint64_t>(bytes)).str(" B in ");
  l.num(static_cast<uint64_t>(blocks)).str(blocks == 1 ? " block" : " blocks");
  l.str(" still live at exit");
  if (n != 0) l.str(", by allocation site, largest first:");
  l.end();
  platform::write_fd(fd, l.data(), l.size());
  for (unsigned k = 0; k < n; ++k) {
    const Site& s = g_sites[order[k]];
    const SiteSnap& snap = g_snap[order[k]];
    l.clear();
    l.str("magslab:   ").num(static_cast<uint64_t>(snap.bytes));
    l.str(" B in ").num(static_cast<uint64_t>(snap.blocks));
    l.str(snap.blocks == 1 ? " block from " : " blocks from ");
    // relaxed: see Site
    const void* pc = reinterpret_cast<const void*>(s.pc.load(std::memory_order_relaxed));
    const char *file, *sym;
    uintptr_t off;
    if (order[k] == kOtherSite) {
      l.str("other sites (no room for them in the table of sites)");
    } else if (platform::describe_address(pc, &file, &sym, &off)) {
      l.hex(reinterpret_cast<uintptr_t>(pc)).str(" (");
      if (sym != nullptr) l.str(sym).str("+");
      l.hex(off).str(" in ").str(file != nullptr ? file : "?").str(")");
    } else {
      l.hex(reinterpret_cast<uintptr_t>(pc));
    }
    l.end();
    platform::write_fd(fd, l.data(), l.size());
  }
}

void lock_for_fork() {
  // A leaf, held across the zero-size range's two mmaps: a child forked
  // meanwhile would have it held by a thread it does not have, and its first
  // malloc(0) would block for ever.
  g_zero_lock.lock_for_fork();
  g_rings_lock.lock_for_fork();  // no ring appears until every one is unlocked
  // relaxed: under g_rings_lock, which new_ring() publishes under.
  for (ThreadRing* r = g_rings.load(std::memory_order_relaxed); r != nullptr; r = r->all_next) {
    r->lock();
    r->fork_held = true;
  }
  g_large_ring.lock.lock_for_fork();
}
void unlock_after_fork() {
  // In the child, the rings of the parent's other threads' caches stay on
  // g_rings, their blocks quarantined: drain() still checks and releases them.
  g_large_ring.lock.unlock_after_fork();
  // relaxed: under g_rings_lock.
  for (ThreadRing* r = g_rings.load(std::memory_order_relaxed); r != nullptr; r = r->all_next) {
    if (!r->fork_held) continue;  // made since the prepare handler (base/lock.h)
    r->fork_held = false;
    r->unlock();
  }
  g_rings_lock.unlock_after_fork();
  g_zero_lock.unlock_after_fork();
}

}  // namespace magslab::check
