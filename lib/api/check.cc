// api/check: check mode (api/check.h, docs/check.md). Compiled into every
// build; only the check variants (kCheckMode) call it.
#include "api/check.h"

#include <errno.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "base/config.h"
#include "base/format.h"
#include "base/lock.h"
#include "base/misuse.h"
#include "chunks/chunk_map.h"
#include "large/large.h"
#include "platform/options.h"
#include "platform/platform.h"
#include "small/requested.h"
#include "small/size_classes.h"
#include "small/slab.h"
#include "small/thread_cache.h"

namespace magslab::check {
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
// A large block keeps its requested size (bits 0-47) and site (48-57) in its
// last word, xor-ed with a function of its address, so that a wild pointer's
// "block" rarely decodes.
constexpr size_t kTrailer = sizeof(uint64_t);
constexpr uint64_t kTrailerKey = 0x9e3779b97f4a7c15;
constexpr unsigned kTrailerSiteShift = 48;
static_assert(kMaxRequest < (uint64_t{1} << kTrailerSiteShift), "requests fit the trailer");

uint64_t trailer_key(const void* p) { return reinterpret_cast<uintptr_t>(p) * kTrailerKey; }

// --- Allocation sites, for the leak report (option leak_report) ---
// An open-addressing table of call sites with their live blocks and bytes;
// index 0 is "not recorded", kOtherSite everything past a full table. relaxed
// throughout: counters and a claimed slot publish no other memory, and the
// report reads them at exit.
constexpr unsigned kSites = 1024;  // 10 bits of the state word
constexpr unsigned kOtherSite = 1;
struct Site {
  std::atomic<uintptr_t> pc{0};
  std::atomic<int64_t> blocks{0};
  std::atomic<int64_t> bytes{0};
};
Site g_sites[kCheckMode ? kSites : 1];

unsigned site_index(const void* site) {
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
  if (!kCheckMode || opt::get(opt::kLeakReport) == 0) return 0;  // (g_sites: one entry)
  unsigned i = site_index(site);
  g_sites[i].blocks.fetch_add(1, std::memory_order_relaxed);  // relaxed: see above
  g_sites[i].bytes.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  return i;
}

void forget_site(unsigned i, size_t n) {
  if (!kCheckMode || i == 0) return;
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

// --- Zero-size blocks: distinct addresses in a range nobody may touch ---
// malloc(0) hands out kZeroStride-spaced addresses of a PROT_NONE
// reservation, round robin; a byte per address says never handed out / live
// / freed (so an address comes back only kZeroSlots allocations later).
constexpr size_t kZeroSlots = size_t{1} << 24;
constexpr size_t kZeroStride = 16;
enum ZeroState : uint8_t { kZeroNever = 0, kZeroLive = 1, kZeroFreed = 2 };
// acquire/release: a thread that finds the base set also finds g_zero_state.
std::atomic<uintptr_t> g_zero_base{0};
uint8_t* g_zero_state = nullptr;         // set before g_zero_base
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
  if (range == nullptr || states == nullptr) {
    if (range != nullptr) platform::unmap(range, kZeroSlots * kZeroStride);
    if (states != nullptr) platform::unmap_sparse(states, kZeroSlots);
    g_zero_failed.store(true, std::memory_order_relaxed);  // relaxed: a hint
    return false;
  }
  g_zero_state = static_cast<uint8_t*>(states);
  g_zero_base.store(reinterpret_cast<uintptr_t>(range), std::memory_order_release);
  return true;
}

std::atomic_ref<uint8_t> zero_state(size_t i) { return std::atomic_ref<uint8_t>(g_zero_state[i]); }

// A zero-size block, or nullptr (then malloc(0) gets an ordinary 8-byte block).
void* alloc_zero() {
  if (!zero_range_ready()) return nullptr;
  for (int tries = 0; tries < 64; ++tries) {
    size_t i = g_zero_next.fetch_add(1, std::memory_order_relaxed) % kZeroSlots;  // relaxed
    uint8_t st = zero_state(i).load(std::memory_order_relaxed);  // relaxed: see below
    // relaxed: the state byte publishes no memory (the block has none).
    if (st != kZeroLive &&
        zero_state(i).compare_exchange_strong(st, kZeroLive, std::memory_order_relaxed))
      return reinterpret_cast<void*>(g_zero_base.load(std::memory_order_relaxed) +
                                     i * kZeroStride);  // relaxed: read above with acquire
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

// --- The quarantine: FIFO rings, each under a leaf lock of its own ---
struct Entry {
  void* p;
  size_t bytes;  // usable bytes (large: including the trailer)
  size_t n;      // requested (large only; a slab object's state word keeps it)
  bool huge;
  bool locked;  // large: made inaccessible (mprotect succeeded)
};
// Slab objects wait in kStripes rings, each with its own lock and an equal
// share of the budget, picked by the freeing thread (so threads rarely wait
// for each other, and each ring is FIFO); large blocks in one ring.
constexpr size_t kStripes = 8;
constexpr size_t kRing = size_t{1} << 13;  // per stripe (so, 4 MiB of 64-byte objects in all)
constexpr size_t kLargeRing = 64;          // large blocks (each a mapping split while held)
constexpr size_t kBatch = 16;              // evicted per call, checked outside the lock
static_assert(is_pow2(kRing) && is_pow2(kLargeRing), "ring indices wrap with a mask");

struct Ring {
  Lock lock;
  size_t head = 0, count = 0, bytes = 0;  // under lock
  // cap: a power of two (kRing, kLargeRing).
  Entry* at(size_t i, Entry* slots, size_t cap) { return &slots[(head + i) & (cap - 1)]; }
};

// bss, touched as the rings fill; one entry each in builds without check mode.
Entry g_small[kStripes][kCheckMode ? kRing : 1];
Entry g_large[kCheckMode ? kLargeRing : 1];
Ring g_small_ring[kStripes], g_large_ring;

// The calling thread's stripe: a hash of its cache's address.
size_t stripe() {
  return static_cast<size_t>((reinterpret_cast<uintptr_t>(t_cache) * kTrailerKey) >> 61) % kStripes;
}

void push(Ring& r, Entry* slots, size_t cap, const Entry& e) {
  *r.at(r.count, slots, cap) = e;
  ++r.count;
  r.bytes += e.bytes;
}

Entry pop(Ring& r, Entry* slots, size_t cap) {
  Entry e = *r.at(0, slots, cap);
  r.head = (r.head + 1) & (cap - 1);
  --r.count;
  r.bytes -= e.bytes;
  return e;
}

// Under g_large_ring.lock: the large quarantine's entry for p, or nullptr.
const Entry* find_large_locked(const void* p) {
  for (size_t i = 0; i < g_large_ring.count; ++i) {
    const Entry* e = g_large_ring.at(i, g_large, kLargeRing);
    if (e->p == p) return e;
  }
  return nullptr;
}

[[noreturn]] MAGSLAB_COLD void freed_misuse(const void* p, Misuse kind, BlockInfo info) {
  info.note = "already freed";
  platform::misuse(kind == Misuse::kInvalidFree ? Misuse::kDoubleFree : kind, p, info);
}

// A slab object leaves quarantine: its fill must be intact.
void release_small(const Entry& e) {
  static constexpr auto kFreedBytes = [] {
    std::array<uint8_t, 1024> a{};
    a.fill(kFreedByte);
    return a;
  }();
  const auto* c = static_cast<const uint8_t*>(e.p);
  bool changed = false;
  for (size_t i = 0; i < e.bytes && !changed; i += kFreedBytes.size()) {
    size_t len = e.bytes - i < kFreedBytes.size() ? e.bytes - i : kFreedBytes.size();
    changed = memcmp(c + i, kFreedBytes.data(), len) != 0;  // vectorised
  }
  if (MAGSLAB_UNLIKELY(changed)) {
    Slab* s = pagemap::lookup_slab(reinterpret_cast<uintptr_t>(e.p));
    BlockInfo info = BlockInfo::small(s->cls, kClasses[s->cls].size);
    // relaxed: see state(); the freeing thread's store is ordered by the ring's lock.
    info.requested = (state(s, e.p).load(std::memory_order_relaxed) & kSizeMask) - 1;
    platform::misuse(Misuse::kWriteAfterFree, e.p, info);
  }
  raw::free(e.p);
}

void release_large(const Entry& e) {
  if (e.locked && !platform::protect(e.p, e.bytes, true))
    platform::fatal("check mode: mprotect failed on a quarantined block", e.p);
  raw::free(e.p);
}

void release_all(const Entry* out, size_t n, bool large) {
  for (size_t i = 0; i < n; ++i) large ? release_large(out[i]) : release_small(out[i]);
}

// Queue e (a freed block), then release what falls out past the budget.
void quarantine(const Entry& e, bool large) {
  uint64_t budget = opt::get(opt::kQuarantine) / (large ? 1 : kStripes);
  size_t i = large ? 0 : stripe();
  Ring& r = large ? g_large_ring : g_small_ring[i];
  Entry* slots = large ? g_large : g_small[i];
  size_t cap = large ? kLargeRing : kRing;
  Entry out[kBatch];
  size_t nout = 0;
  {
    LockGuard g(r.lock);
    // Two racing frees of one large block both passed live_block(): one
    // finds the other's entry here.
    if (large && find_large_locked(e.p) != nullptr) {
      BlockInfo info = e.huge ? BlockInfo::huge(e.bytes) : BlockInfo::large(e.bytes);
      info.requested = e.n;
      freed_misuse(e.p, Misuse::kInvalidFree, info);
    }
    if (r.count == cap) out[nout++] = pop(r, slots, cap);
    push(r, slots, cap, e);
    // Large blocks are decommitted while they wait: only their number is
    // bounded (kLargeRing), and quarantine=0 turns both rings off.
    while ((large ? budget == 0 : r.bytes > budget) && nout < kBatch && r.count != 0)
      out[nout++] = pop(r, slots, cap);
  }
  release_all(out, nout, large);
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
    return b;
  }
  if (Slab* s = pagemap::lookup_slab(a)) {
    size_t size = kClasses[s->cls].size;
    // A hollow page (slab::hollow) has word 0: the record says the same.
    uint64_t w = pagemap::lookup_word(a);
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
  {
    LockGuard g(g_large_ring.lock);
    if (const Entry* e = find_large_locked(p)) {
      BlockInfo info = e->huge ? BlockInfo::huge(e->bytes) : BlockInfo::large(e->bytes);
      info.requested = e->n;
      freed_misuse(p, invalid, info);
    }
  }
  bool huge = false;
  size_t total = large::usable_size(p, invalid, &huge);
  uint64_t t;
  memcpy(&t, static_cast<const char*>(p) + total - kTrailer, sizeof t);
  t ^= trailer_key(p);
  Live b{q,
         nullptr,
         total - kTrailer,
         static_cast<size_t>(t & ((uint64_t{1} << kTrailerSiteShift) - 1)),
         static_cast<unsigned>(t >> kTrailerSiteShift),
         huge,
         false};
  if (MAGSLAB_UNLIKELY(total < kTrailer + 1 || b.n >= b.usable || b.site >= kSites)) {
    b.n = kUnknownRequest;
    platform::misuse(Misuse::kOverflow, p, b.info("its size record past the end was overwritten"));
  }
  return b;
}

// kCanaryMax canary bytes, to compare the slack with (memcmp is vectorised).
constexpr auto kCanaryBytes = [] {
  std::array<uint8_t, kCanaryMax> a{};
  a.fill(kCanaryByte);
  return a;
}();

// The canary's extent: [n, canary_end(b.usable, n)).
size_t canary_end(size_t usable, size_t n) {
  return usable < n + kCanaryMax ? usable : n + kCanaryMax;
}

void check_canary(const Live& b) {
  const auto* c = static_cast<const uint8_t*>(b.p);
  if (MAGSLAB_UNLIKELY(memcmp(c + b.n, kCanaryBytes.data(), canary_end(b.usable, b.n) - b.n) != 0))
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
    memset(b.p, kFreedByte, b.usable);
    quarantine(Entry{b.p, b.usable, 0, false, false}, false);
    return;
  }
  size_t total = b.usable + kTrailer;  // a page run or a mapping: whole pages
  platform::decommit(b.p, total);      // its pages need no memory while it waits
  bool locked = platform::protect(b.p, total, false);
  quarantine(Entry{b.p, total, b.n, b.huge, locked}, true);
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
void* raw_alloc(size_t n, size_t align) {
  void* p = raw::alloc(n, align);
  if (p == nullptr) {
    drain();
    p = raw::alloc(n, align);
  }
  return p;
}

// A block for a request of n bytes aligned to align, its state, canary and
// (fill) fresh pattern laid out; site: the caller's return address.
void* alloc(size_t n, size_t align, bool fill, const void* site) {
  if (n > kMaxRequest || align > kMaxRequest) return fail_nomem();
  if (n == 0 && align <= kZeroStride) {
    if (void* z = alloc_zero()) return z;
  }
  void* p = raw_alloc(n + 1, align);  // at least one byte of canary
  if (p == nullptr) return fail_nomem();
  size_t end;
  if (Slab* s = pagemap::lookup_slab(reinterpret_cast<uintptr_t>(p))) {
    end = kClasses[s->cls].size;
    // relaxed: see state(); p is this thread's alone until the program hands it on.
    state(s, p).store(static_cast<uint32_t>(n + 1) | (note_site(site, n) << kSiteShift),
                      std::memory_order_relaxed);
  } else {
    size_t total = large::usable_size(p);
    if (total < n + 1 + kTrailer) {  // no room for the trailer: ask for it too
      raw::free(p);
      p = raw_alloc(n + 1 + kTrailer, align);
      if (p == nullptr) return fail_nomem();
      total = large::usable_size(p);
    }
    end = total - kTrailer;
    uint64_t t = (static_cast<uint64_t>(n) | uint64_t{note_site(site, n)} << kTrailerSiteShift) ^
                 trailer_key(p);
    memcpy(static_cast<char*>(p) + end, &t, sizeof t);
  }
  if (fill && opt::get(opt::kFill) != 0) memset(p, kFreshByte, n);
  memset(static_cast<char*>(p) + n, kCanaryByte, canary_end(end, n) - n);
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
  void* p = alloc(total, kMallocAlign, false, site);
  if (p != nullptr) memset(p, 0, total);
  return p;
}

void* aligned(size_t align, size_t n, const void* site) { return alloc(n, align, true, site); }

namespace {

// In place while n (and its canary byte) fits the block and is more than half
// of it, as release does; otherwise the block moves and the old one goes to
// quarantine, where a stale pointer to it is caught like any use after free.
bool realloc_in_place(const Live& b, size_t n) {
  if (b.zero || n >= b.usable || n <= b.usable / 2) return false;
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
    uint64_t t =
        (static_cast<uint64_t>(n) | uint64_t{b.site} << kTrailerSiteShift) ^ trailer_key(b.p);
    memcpy(c + b.usable, &t, sizeof t);
  }
  if (n > b.n && opt::get(opt::kFill) != 0) memset(c + b.n, kFreshByte, n - b.n);
  memset(c + n, kCanaryByte, canary_end(b.usable, n) - n);
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
  check_canary(b);
  if (n > kMaxRequest) return fail_nomem();  // p is untouched
  if (realloc_in_place(b, n)) return p;
  void* q = alloc(n, kMallocAlign, true, site);
  if (q == nullptr) return nullptr;  // errno is ENOMEM; p is untouched
  memcpy(q, p, n < b.n ? n : b.n);
  release(b);
  return q;
}

void free(void* p) {
  if (p == nullptr) return;
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
  for (size_t i = 0; i <= kStripes; ++i) {
    bool large = i == kStripes;
    Ring& r = large ? g_large_ring : g_small_ring[i];
    Entry* slots = large ? g_large : g_small[i];
    size_t cap = large ? kLargeRing : kRing;
    for (;;) {
      Entry out[kBatch];
      size_t nout = 0;
      {
        LockGuard g(r.lock);
        while (r.count != 0 && nout < kBatch) out[nout++] = pop(r, slots, cap);
      }
      if (nout == 0) break;
      release_all(out, nout, large);
    }
  }
}

void report_leaks(int fd) {
  if (!kCheckMode || opt::get(opt::kLeakReport) == 0) return;
  unsigned order[kSites];
  unsigned n = 0;
  int64_t blocks = 0, bytes = 0;
  for (unsigned i = kOtherSite; i < kSites; ++i) {
    int64_t b = g_sites[i].blocks.load(std::memory_order_relaxed);  // relaxed: see Site
    if (b <= 0) continue;
    blocks += b;
    bytes += g_sites[i].bytes.load(std::memory_order_relaxed);  // relaxed: see Site
    // Insertion by bytes, largest first.
    unsigned k = n++;
    auto at = [](unsigned j) { return g_sites[j].bytes.load(std::memory_order_relaxed); };
    for (; k > 0 && at(order[k - 1]) < at(i); --k) order[k] = order[k - 1];
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
    l.clear();
    // relaxed (both): see Site
    int64_t b = s.blocks.load(std::memory_order_relaxed);
    l.str("magslab:   ").num(static_cast<uint64_t>(s.bytes.load(std::memory_order_relaxed)));
    l.str(" B in ").num(static_cast<uint64_t>(b)).str(b == 1 ? " block from " : " blocks from ");
    const void* pc = reinterpret_cast<const void*>(s.pc.load(std::memory_order_relaxed));
    const char *file, *sym;
    uintptr_t off;
    if (order[k] == kOtherSite) {
      l.str("other sites (the table of sites was full)");
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
  for (Ring& r : g_small_ring) r.lock.lock();
  g_large_ring.lock.lock();
}
void unlock_after_fork() {
  g_large_ring.lock.unlock();
  for (Ring& r : g_small_ring) r.lock.unlock();
}

}  // namespace magslab::check
