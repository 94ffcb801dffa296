// api/pool: pools of node sizes (magslab_pool_*, the engine of
// magslab::pmr::PoolResource). A request up to kPoolMax bytes is served from an
// object cache (api/object_cache.cc, no constructor) of the heap's size class
// for it, created on first use: per-thread magazines, a lock-free depot, and
// slabs the pool owns, so destroying the pool frees all of it at once (as
// std::pmr pool resources release everything). Larger requests are heap
// blocks behind a header that links them into the pool's list (under a lock
// all pools share, which the fork handlers take).
#include <errno.h>

#include <atomic>
#include <cstdint>
#include <new>

#include "api/check.h"
#include "api/object_cache.h"
#include "base/config.h"
#include "base/format.h"
#include "base/lock.h"
#include "chunks/chunk_map.h"
#include "magslab/magslab.h"
#include "magslab/magslab.hpp"
#include "platform/platform.h"
#include "small/size_classes.h"

namespace {

using namespace magslab;

// Node sizes up to 4 KiB come from caches; its class is the last one pooled.
constexpr size_t kPoolMax = 4096;
constexpr unsigned kPoolClasses = detail::compute_class(kPoolMax) + 1;

// PoolResource (magslab.hpp) keeps one cache per kInlineStep bytes up to
// kInlineMax: pool_class must map every size of such a step to one class,
// which kSmallLookup (indexed by (size + 7) / 8 up to kLookupMax) does.
using Pool = magslab::pmr::PoolResource;
static_assert(Pool::kInlineStep == 8 && Pool::kInlineMax <= kLookupMax &&
              kSmallLookup.size() == kLookupMax / 8 + 1);

// In front of every block above kPoolMax; the block's alignment (at least
// 64) is the header's size, so the header is found again from the pointer,
// the size and the alignment the program passes to magslab_pool_free.
struct BigHeader {
  uint64_t magic;  // kBigMagic ^ the header's address while the block is live
  BigHeader* next;
  BigHeader* prev;
  magslab_pool* pool;  // whose list it is on: deallocate through another pool is refused
  size_t size;         // requested: deallocate with another size is refused
};
constexpr uint64_t kBigMagic = 0x6d61677362696721;  // "magsbig!"

size_t big_align(size_t align) { return align < kCacheLine ? kCacheLine : align; }
static_assert(sizeof(BigHeader) <= kCacheLine, "the header fits the smallest space before a block");

}  // namespace

struct magslab_pool {
  // acquire/release: a cache is published with its fields set (create_cache).
  std::atomic<magslab_cache*> caches[kPoolClasses] = {};
  BigHeader* big = nullptr;  // under g_big_lock
};

namespace {

// Every pool's list of big blocks. One lock for all of them, so that the
// fork handlers can take it (api/fork.cc; a pool's own lock, which they did
// not know of, left a child forked while another thread held it unable to
// allocate a big block from that pool). A leaf: nothing else is taken, no
// allocation is made, while it is held; big blocks are rare (above 4 KiB).
Lock g_big_lock;

// The class of a request, or kPoolClasses for a big one.
unsigned pool_class(size_t size, size_t align) {
  if (size == 0) size = 1;
  if (size > kPoolMax || align > kPoolMax) return kPoolClasses;
  // Every class above 8 B is a multiple of 16; class 0 (8 B) only for align <= 8.
  if (align <= 8 || (align == 16 && size > 8))
    return size <= kLookupMax ? kSmallLookup[(size + 7) >> 3] : class_of(size);
  unsigned c = class_for_aligned(size, align);
  return c < kPoolClasses ? c : kPoolClasses;
}

MAGSLAB_NOINLINE magslab_cache* create_cache(magslab_pool* pool, unsigned cls) {
  size_t size = kClasses[cls].size;
  size_t align = size & (0 - size);  // the largest power of two dividing the size
  if (align > kPageSize) align = kPageSize;
  LineBuf name;
  name.str("pool ").num(size).str(" B");
  char buf[LineBuf::kCapacity + 1];
  for (size_t i = 0; i < name.size(); ++i) buf[i] = name.data()[i];
  buf[name.size()] = '\0';
  magslab_cache* c = magslab_cache_create(buf, size, align, nullptr, nullptr, nullptr);
  if (c == nullptr) return nullptr;
  magslab_cache* expected = nullptr;
  // acq_rel: publishes c (release); on failure, reads the winner's (acquire).
  if (!pool->caches[cls].compare_exchange_strong(expected, c, std::memory_order_acq_rel)) {
    magslab_cache_destroy(c);
    return expected;
  }
  return c;
}

[[noreturn]] MAGSLAB_COLD void bad_free(const void* p, size_t size, size_t align) {
  LineBuf l;
  l.str("invalid release of ")
      .hex(reinterpret_cast<uintptr_t>(p))
      .str(" to a pool (")
      .num(size)
      .str(" B, alignment ")
      .num(align)
      .str(": not a block of this pool of that size)");
  objcache::die(l);
}

void* alloc_big(magslab_pool* pool, size_t size, size_t align) {
  size_t hdr = big_align(align);
  if (size > kMaxRequest) {
    errno = ENOMEM;
    return nullptr;
  }
  // Size 0 is served as 1 byte (magslab.h): a block of the header alone
  // would end where the pointer starts (another block's start). h->size
  // keeps what was asked, which free_big compares.
  auto* h = static_cast<BigHeader*>(magslab_aligned_alloc(hdr, hdr + (size == 0 ? 1 : size)));
  if (h == nullptr) return nullptr;
  h->magic = kBigMagic ^ reinterpret_cast<uintptr_t>(h);
  h->pool = pool;
  h->size = size;
  LockGuard g(g_big_lock);
  h->prev = nullptr;
  h->next = pool->big;
  if (pool->big != nullptr) pool->big->prev = h;
  pool->big = h;
  return reinterpret_cast<char*>(h) + hdr;
}

void free_big(magslab_pool* pool, void* p, size_t size, size_t align) {
  size_t hdr = big_align(align);
  auto a = reinterpret_cast<uintptr_t>(p);
  // Read the header only if the heap has that address mapped, readable (api/check.h).
  if (a < hdr || !api::heap_readable(reinterpret_cast<const void*>(a - hdr), sizeof(BigHeader)))
    bad_free(p, size, align);
  auto* h = reinterpret_cast<BigHeader*>(a - hdr);
  {
    LockGuard g(g_big_lock);
    if (h->magic != (kBigMagic ^ reinterpret_cast<uintptr_t>(h)) || h->pool != pool ||
        h->size != size)
      bad_free(p, size, align);
    h->magic = 0;
    if (h->prev != nullptr)
      h->prev->next = h->next;
    else
      pool->big = h->next;
    if (h->next != nullptr) h->next->prev = h->prev;
  }
  magslab_free(h);
}

}  // namespace

namespace magslab::objcache {
void lock_pools_for_fork() { g_big_lock.lock_for_fork(); }
void unlock_pools_after_fork() { g_big_lock.unlock_after_fork(); }
}  // namespace magslab::objcache

extern "C" {

magslab_pool* magslab_pool_create(void) {
  void* mem = magslab_aligned_alloc(kCacheLine, sizeof(magslab_pool));
  return mem == nullptr ? nullptr : new (mem) magslab_pool();
}

magslab_cache* magslab_pool_cache(magslab_pool* pool, size_t size, size_t align) {
  unsigned cls = is_pow2(align) ? pool_class(size, align) : kPoolClasses;
  if (cls == kPoolClasses) return nullptr;
  // acquire: pairs with the CAS in create_cache(); the cache is initialised.
  magslab_cache* c = pool->caches[cls].load(std::memory_order_acquire);
  return c != nullptr ? c : create_cache(pool, cls);
}

void* magslab_pool_alloc(magslab_pool* pool, size_t size, size_t align) {
  if (!is_pow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  unsigned cls = pool_class(size, align);
  if (MAGSLAB_UNLIKELY(cls == kPoolClasses)) return alloc_big(pool, size, align);
  // acquire: as in magslab_pool_cache.
  magslab_cache* c = pool->caches[cls].load(std::memory_order_acquire);
  if (MAGSLAB_UNLIKELY(c == nullptr)) {
    c = create_cache(pool, cls);
    if (c == nullptr) return nullptr;
  }
  return magslab_cache_alloc(c);
}

void magslab_pool_free(magslab_pool* pool, void* p, size_t size, size_t align) {
  if (p == nullptr) return;
  unsigned cls = is_pow2(align) ? pool_class(size, align) : kPoolClasses;
  if (cls == kPoolClasses) return free_big(pool, p, size, align);
  // acquire: as in magslab_pool_alloc.
  magslab_cache* c = pool->caches[cls].load(std::memory_order_acquire);
  if (MAGSLAB_UNLIKELY(c == nullptr)) bad_free(p, size, align);
  magslab_cache_free(c, p);  // checks that p is an object of c
}

void magslab_pool_destroy(magslab_pool* pool) {
  if (pool == nullptr) return;
  for (auto& slot : pool->caches)
    objcache::destroy(slot.load(std::memory_order_relaxed), /*free_live=*/true);
  for (BigHeader* h = pool->big; h != nullptr;) {
    BigHeader* next = h->next;
    magslab_free(h);
    h = next;
  }
  pool->~magslab_pool();
  magslab_free(pool);
}

}  // extern "C"
