// chunks/meta_arena: bump allocation of never-freed metadata.
#include "chunks/meta_arena.h"

#include <atomic>
#include <cstdint>

#include "base/config.h"
#include "base/lock.h"
#include "platform/platform.h"

namespace magslab::meta {
namespace {

constexpr size_t kRegionSize = size_t{1} << 22;  // 4 MiB of address space at a time

Lock g_lock;
char* g_cursor = nullptr;  // under g_lock
char* g_end = nullptr;     // under g_lock
// relaxed: a statistic; written under g_lock, read by magslab_stats.
std::atomic<size_t> g_mapped{0};

}  // namespace

namespace {

// `size` bytes aligned to `align` (<= kPageSize) from the current region, or a
// new one. g_lock held.
void* take(size_t size, size_t align) {
  char* p = g_cursor == nullptr
                ? nullptr
                : reinterpret_cast<char*>(align_up(reinterpret_cast<uintptr_t>(g_cursor), align));
  if (p == nullptr || p > g_end || static_cast<size_t>(g_end - p) < size) {
    size_t region = size > kRegionSize ? align_up(size, kPageSize) : kRegionSize;
    auto* r = static_cast<char*>(platform::map(region));  // page-aligned
    if (r == nullptr) return nullptr;
    g_mapped.fetch_add(region, std::memory_order_relaxed);
    // A region bigger than the standard size serves this request only; the
    // rest of the current region stays available.
    if (region > kRegionSize) return r;
    g_end = r + region;
    p = r;
  }
  g_cursor = p + size;
  return p;  // fresh anonymous memory: already zero
}

}  // namespace

void* alloc(size_t size) {
  LockGuard guard(g_lock);
  return take(align_up(size, kCacheLine), kCacheLine);
}

void* alloc_pages(size_t size) {
  LockGuard guard(g_lock);
  return take(align_up(size, kPageSize), kPageSize);
}

size_t mapped_bytes() { return g_mapped.load(std::memory_order_relaxed); }

void note_mapped(size_t bytes) { g_mapped.fetch_add(bytes, std::memory_order_relaxed); }

void lock_for_fork() { g_lock.lock_for_fork(); }
void unlock_after_fork() { g_lock.unlock_after_fork(); }

}  // namespace magslab::meta
