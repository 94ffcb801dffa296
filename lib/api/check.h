// api/check: check mode (kCheckMode, base/config.h; docs/check.md). The C API's
// entry points hand every call to these functions when the library is built
// with MAGSLAB_CHECK_MODE=1; release builds compile none of those calls in.
//
// Per block the checks keep:
//  * its state, requested size and allocation site: for a slab object, its
//    entry in the slab's side array (Slab::requested): 0 never handed out,
//    n + 1 (and the site) live with n bytes requested, with kFreedBit set once
//    freed (in quarantine or back in a magazine); for a large block (not in a
//    slab), a trailer word at the end of its usable bytes while it is live,
//    and its presence in the large quarantine while it is freed; for a
//    zero-size block, a state byte per address of a no-access range;
//  * a canary: the bytes between the requested size and the usable size (at
//    least one: one is added to every request) read kCanaryByte, checked when
//    the block is freed or reallocated;
//  * a quarantine: a freed slab object is filled with kFreedByte and queued
//    (FIFO in the freeing thread's ring, MAGSLAB_QUARANTINE / 8 bytes per
//    ring); it goes back to its magazine only after its fill is verified. A freed large block
//    is decommitted and made inaccessible instead (the last 64).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "large/large.h"

namespace magslab::check {

// site: the caller's return address, for the leak report.
void* malloc(size_t n, const void* site);
void* calloc(size_t count, size_t size, const void* site);
// align: a power of two, validated by the caller.
void* aligned(size_t align, size_t n, const void* site);
void* realloc(void* p, size_t n, const void* site);
void free(void* p);
void free_sized(void* p, size_t n);
size_t usable_size(const void* p);
// Verify and release everything in quarantine (magslab_trim).
void drain();
// Option leak_report: write the blocks still live, by allocation site, to fd
// (at exit: api/report.cc).
void report_leaks(int fd);
// At exit: the slab objects still in quarantine are checked where they wait
// (a write after free among the last blocks each thread freed is reported
// and the process aborts), and stay there.
void check_quarantine_at_exit();
// Whether n bytes at p, where the page map says the heap has memory mapped,
// may be read: false where they meet a freed large block waiting in quarantine
// (made inaccessible). For a check that reads a header at an address derived
// from the program's pointer (object caches' release, api/object_cache.cc). A
// block entering or leaving quarantine meanwhile is a misuse race (the
// program's pointer is into freed memory), and may still fault.
bool readable(const void* p, size_t n);
// Tests only (nullptr otherwise): called on a thread whose quarantine ring
// has just turned over (let go of another share), after it has looked at the
// shared ring and before it locks it to let go of that ring's old entries, so
// a test can turn other rings over and free into the shared ring meanwhile
// (which other threads may do at any time). It runs for every turnover.
extern std::atomic<void (*)()> g_turn_over_hook;
// fork(): the quarantine locks, leaves (nothing else is taken under them).
void lock_for_fork();
void unlock_after_fork();

}  // namespace magslab::check

namespace magslab::api {
// The allocation site magslab passes (api::malloc_from, api::calloc_from) for
// blocks of its own that may stay allocated until exit: the object caches'
// thread tables and their table of ids. Check mode's leak report does not
// count them: they are not the program's (until stop 49 a program that made,
// used and destroyed one object cache was told of 2 blocks, 920 B, leaked
// from libmagslab itself). Its address is no return address.
inline constexpr char kOwnBlockSite[1] = {};
inline void* own_block_site() { return const_cast<char*>(kOwnBlockSite); }

// Whether n bytes (at most a page) at p, an address derived from the
// program's pointer, may be read before it is trusted: the heap has them
// mapped (large::mapped) and, in check mode, no quarantined large block made
// them inaccessible (check::readable). For object caches' and pools' release
// checks, which read a header there.
inline bool heap_readable(const void* p, size_t n) {
  if (!large::mapped(reinterpret_cast<uintptr_t>(p), n)) return false;
  if constexpr (kCheckMode) return check::readable(p, n);
  return true;
}
}  // namespace magslab::api

namespace magslab::raw {
// The release paths (api/magslab.cc), for check mode to allocate and free
// through. alloc: a block of at least n >= 1 bytes aligned to align (a power
// of two), nullptr without setting errno when memory runs out; zeroed (if not
// nullptr): set to whether all its bytes are known to read zero (pages the OS
// just mapped; only blocks above the largest class, aligned to 16 or less,
// are ever said to). free: p is a block alloc returned, already checked.
void* alloc(size_t n, size_t align, bool* zeroed = nullptr);
void free(void* p);
}  // namespace magslab::raw
