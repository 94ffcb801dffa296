// chunks/meta_arena: bump allocation of never-freed metadata.
#include "chunks/meta_arena.h"

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "base/config.h"
#include "base/lock.h"
#include "platform/platform.h"
#include "platform/valgrind.h"

namespace magslab::meta {
namespace {

constexpr size_t kRegionSize = size_t{1} << 22;  // 4 MiB of address space at a time

Lock g_lock;
// The current region's next free byte and end, under g_lock, as vg::hide()
// stores them: either may point just past the region, at the first byte of a
// mapping the heap hands out next to it, and memcheck would take it for a
// reference to the program's block there (a block the program lost read as
// "still reachable": memcheck_leak_linked, stop 49).
// Two such pairs: magazines (alloc_apart) have regions of their own, so that
// runs of empty ones fill whole pages that depot::hollow_empty() and decay
// give back; carved among thread caches and slab records they shared pages
// with those (a spike of 500 threads kept ~8 MB of empty magazines resident
// that no hollowing could give back; stop 52).
// The magazines' regions are 1 MiB: a 4 MiB one, mapped at a process's
// first allocation beside the general one, raised the address space mapped
// then from 13 to 17 MiB (stop 53's bug hunt: tests/small_limits_main.c
// needed 40 MiB of `ulimit -d` and 42 of `ulimit -v`, 36 and 38 before).
struct Cursor {
  uintptr_t cursor = 0;
  uintptr_t end = 0;
  size_t region;  // the size of its regions
};
constinit Cursor g_general{0, 0, kRegionSize};
constinit Cursor g_apart{0, 0, size_t{1} << 20};
// relaxed: a statistic; written under g_lock, read by magslab_stats.
std::atomic<size_t> g_mapped{0};

}  // namespace

namespace {

// `size` bytes aligned to `align` (<= kPageSize) from the current region of
// `from`, or a new one. g_lock held.
void* take(size_t size, size_t align, Cursor& from = g_general) {
  const uintptr_t cursor = vg::unhide(from.cursor);
  char* p = cursor == 0 ? nullptr : reinterpret_cast<char*>(align_up(cursor, align));
  char* end = reinterpret_cast<char*>(vg::unhide(from.end));
  if (p == nullptr || p > end || static_cast<size_t>(end - p) < size) {
    size_t region = size > from.region ? align_up(size, kPageSize) : from.region;
    // errno kept on a refusal: each caller answers it itself (an allocation
    // sets ENOMEM; a free that found no magazine goes to the slab, and must
    // leave errno alone: until stop 50's bug hunt the refused mapping's
    // ENOMEM came out of such frees).
    const int saved = errno;
    auto* r = static_cast<char*>(platform::map(region));  // page-aligned
    if (r == nullptr) {
      errno = saved;
      return nullptr;
    }
    g_mapped.fetch_add(region, std::memory_order_relaxed);
    // A region bigger than the standard size serves this request only; the
    // rest of the current region stays available.
    if (region > from.region) return r;
    from.end = vg::hide(reinterpret_cast<uintptr_t>(r + region));
    p = r;
  }
  from.cursor = vg::hide(reinterpret_cast<uintptr_t>(p + size));
  return p;  // fresh anonymous memory: already zero
}

}  // namespace

void* alloc(size_t size) {
  LockGuard guard(g_lock);
  return take(align_up(size, kCacheLine), kCacheLine);
}

void* alloc_apart(size_t size) {
  LockGuard guard(g_lock);
  return take(align_up(size, kCacheLine), kCacheLine, g_apart);
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
