// api/check: check mode (api/check.h, docs/check.md). Compiled into every
// build; only the check variants (kCheckMode) call it.
#include "api/check.h"

#include <errno.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "base/config.h"
#include "base/lock.h"
#include "base/misuse.h"
#include "chunks/chunk_map.h"
#include "large/large.h"
#include "platform/options.h"
#include "platform/platform.h"
#include "small/requested.h"
#include "small/size_classes.h"
#include "small/slab.h"

namespace magslab::check {
namespace {

constexpr uint8_t kCanaryByte = 0xca;  // the slack past the requested size
constexpr uint8_t kFreedByte = 0xdf;   // a freed slab object in quarantine
constexpr uint8_t kFreshByte = 0xbe;   // a new block (MAGSLAB_FILL)
// Slack bytes written and checked past the request: an overflow that skips
// them is not seen, and large classes' slack can be tens of KiB.
constexpr size_t kCanaryMax = 256;
constexpr uint32_t kFreedBit = 0x80000000u;  // in a slab object's state word
// A large block keeps its requested size in its last word, xor-ed with a
// function of its address, so that a wild pointer's "block" rarely decodes.
constexpr size_t kTrailer = sizeof(uint64_t);
constexpr uint64_t kTrailerKey = 0x9e3779b97f4a7c15;

uint64_t trailer_key(const void* p) { return reinterpret_cast<uintptr_t>(p) * kTrailerKey; }

// A slab object's state word (api/check.h). relaxed everywhere: the program's
// own hand-over of the pointer orders an allocation's store before the free's
// load on another thread; racing frees of one pointer are settled by the
// compare-exchange in release(), whose single winner needs no ordering.
std::atomic_ref<uint32_t> state(const Slab* s, const void* p) {
  return std::atomic_ref<uint32_t>(requested::slot(s, p));
}

// A live block, checked.
struct Live {
  void* p;
  Slab* slab;     // nullptr: a large block
  size_t usable;  // bytes the canary may use: the class size, or a large block's minus the trailer
  size_t n;       // requested
  bool huge;

  BlockInfo info(const char* note = nullptr) const {
    BlockInfo i = slab != nullptr ? BlockInfo::small(slab->cls, usable, note)
                  : huge          ? BlockInfo::huge(usable + kTrailer, note)
                                  : BlockInfo::large(usable + kTrailer, note);
    i.requested = n;
    return i;
  }
};

// --- The quarantine: FIFO rings under one leaf lock ---
struct Entry {
  void* p;
  size_t bytes;  // usable bytes (large: including the trailer)
  size_t n;      // requested (large only; a slab object's state word keeps it)
  bool huge;
  bool locked;  // large: made inaccessible (mprotect succeeded)
};
constexpr size_t kRing = size_t{1} << 16;  // slab objects (so, 4 MiB of 64-byte ones)
constexpr size_t kLargeRing = 64;          // large blocks (each a mapping split while held)
constexpr size_t kBatch = 16;              // evicted per call, checked outside the lock

struct Ring {
  size_t head = 0, count = 0, bytes = 0;
  Entry* at(size_t i, Entry* slots, size_t cap) { return &slots[(head + i) % cap]; }
};

Lock g_lock;
// bss, touched as the rings fill; one entry in builds without check mode.
Entry g_small[kCheckMode ? kRing : 1];
Entry g_large[kCheckMode ? kLargeRing : 1];
Ring g_small_ring, g_large_ring;

void push(Ring& r, Entry* slots, size_t cap, const Entry& e) {
  *r.at(r.count, slots, cap) = e;
  ++r.count;
  r.bytes += e.bytes;
}

Entry pop(Ring& r, Entry* slots, size_t cap) {
  Entry e = *r.at(0, slots, cap);
  r.head = (r.head + 1) % cap;
  --r.count;
  r.bytes -= e.bytes;
  return e;
}

// Under g_lock: the large quarantine's entry for p, or nullptr.
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
  const auto* w = static_cast<const uint64_t*>(e.p);
  constexpr uint64_t kFreedWord = 0x0101010101010101ull * kFreedByte;
  uint64_t diff = 0;
  for (size_t i = 0; i < e.bytes / sizeof(uint64_t); ++i) diff |= w[i] ^ kFreedWord;
  if (MAGSLAB_UNLIKELY(diff != 0)) {
    Slab* s = pagemap::lookup_slab(reinterpret_cast<uintptr_t>(e.p));
    BlockInfo info = BlockInfo::small(s->cls, kClasses[s->cls].size);
    // relaxed: see state(); the freeing thread's store is ordered by g_lock.
    info.requested = (state(s, e.p).load(std::memory_order_relaxed) & ~kFreedBit) - 1;
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
  uint64_t budget = opt::get(opt::kQuarantine);
  Ring& r = large ? g_large_ring : g_small_ring;
  Entry* slots = large ? g_large : g_small;
  size_t cap = large ? kLargeRing : kRing;
  Entry out[kBatch];
  size_t nout = 0;
  {
    LockGuard g(g_lock);
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
  if (Slab* s = pagemap::lookup_slab(a)) {
    size_t size = kClasses[s->cls].size;
    if (MAGSLAB_UNLIKELY(!valid_offset(s, a - s->start)))
      platform::misuse(invalid, p, BlockInfo::small(s->cls, size));
    uint32_t st = state(s, p).load(std::memory_order_relaxed);  // relaxed: see state()
    if (MAGSLAB_UNLIKELY(st == 0))
      platform::misuse(invalid, p, BlockInfo::small(s->cls, size, "never handed out"));
    if (MAGSLAB_UNLIKELY((st & kFreedBit) != 0)) {
      BlockInfo info = BlockInfo::small(s->cls, size);
      info.requested = (st & ~kFreedBit) - 1;
      freed_misuse(p, invalid, info);
    }
    return Live{q, s, size, st - 1, false};
  }
  {
    LockGuard g(g_lock);
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
  Live b{q, nullptr, total - kTrailer, static_cast<size_t>(t ^ trailer_key(p)), huge};
  if (MAGSLAB_UNLIKELY(total < kTrailer + 1 || b.n >= b.usable)) {
    b.n = kUnknownRequest;
    platform::misuse(Misuse::kOverflow, p, b.info("its size record past the end was overwritten"));
  }
  return b;
}

void check_canary(const Live& b) {
  const auto* c = static_cast<const uint8_t*>(b.p);
  size_t end = b.usable < b.n + kCanaryMax ? b.usable : b.n + kCanaryMax;
  uint8_t diff = 0;
  for (size_t i = b.n; i < end; ++i) diff |= static_cast<uint8_t>(c[i] ^ kCanaryByte);
  if (MAGSLAB_UNLIKELY(diff != 0)) platform::misuse(Misuse::kOverflow, b.p, b.info());
}

// The program gives b up (checked live, canary intact).
void release(const Live& b) {
  if (b.slab != nullptr) {
    uint32_t live = static_cast<uint32_t>(b.n + 1);
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

// A block for a request of n bytes aligned to align, its state, canary and
// (fill) fresh pattern laid out.
void* alloc(size_t n, size_t align, bool fill) {
  if (n > kMaxRequest || align > kMaxRequest) return fail_nomem();
  void* p = raw::alloc(n + 1, align);  // at least one byte of canary
  if (p == nullptr) return fail_nomem();
  size_t end;
  if (Slab* s = pagemap::lookup_slab(reinterpret_cast<uintptr_t>(p))) {
    end = kClasses[s->cls].size;
    // relaxed: see state(); p is this thread's alone until the program hands it on.
    state(s, p).store(static_cast<uint32_t>(n + 1), std::memory_order_relaxed);
  } else {
    size_t total = large::usable_size(p);
    if (total < n + 1 + kTrailer) {  // no room for the trailer: ask for it too
      raw::free(p);
      p = raw::alloc(n + 1 + kTrailer, align);
      if (p == nullptr) return fail_nomem();
      total = large::usable_size(p);
    }
    end = total - kTrailer;
    uint64_t t = static_cast<uint64_t>(n) ^ trailer_key(p);
    memcpy(static_cast<char*>(p) + end, &t, sizeof t);
  }
  if (fill && opt::get(opt::kFill) != 0) memset(p, kFreshByte, n);
  memset(static_cast<char*>(p) + n, kCanaryByte, (end < n + kCanaryMax ? end : n + kCanaryMax) - n);
  return p;
}

}  // namespace

void* malloc(size_t n) { return alloc(n, 1, true); }

void* calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  void* p = alloc(total, 1, false);
  if (p != nullptr) memset(p, 0, total);
  return p;
}

void* aligned(size_t align, size_t n) { return alloc(n, align, true); }

// Always moves: the old block goes to quarantine, so a stale pointer to it is
// caught like any use after free.
void* realloc(void* p, size_t n) {
  if (p == nullptr) return malloc(n);
  if (n == 0) {  // glibc: free and return NULL
    free(p);
    return nullptr;
  }
  Live b = live_block(p, Misuse::kInvalidRealloc);
  check_canary(b);
  void* q = alloc(n, 1, true);
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
  for (bool large : {false, true}) {
    Ring& r = large ? g_large_ring : g_small_ring;
    Entry* slots = large ? g_large : g_small;
    size_t cap = large ? kLargeRing : kRing;
    for (;;) {
      Entry out[kBatch];
      size_t nout = 0;
      {
        LockGuard g(g_lock);
        while (r.count != 0 && nout < kBatch) out[nout++] = pop(r, slots, cap);
      }
      if (nout == 0) break;
      release_all(out, nout, large);
    }
  }
}

void lock_for_fork() { g_lock.lock(); }
void unlock_after_fork() { g_lock.unlock(); }

}  // namespace magslab::check
