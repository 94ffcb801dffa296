// api/object_cache: object caches (Bonwick's kmem_cache) behind magslab_cache_*; the
// internal entry points other api files use (the pool, the fork handlers).
#pragma once

#include <cstddef>

#include "base/format.h"
#include "magslab/magslab.h"

namespace magslab::objcache {

// magslab_cache_destroy; with free_live, objects still out are destructed and
// their slabs freed without a report (a pool's release: its owner promises that
// nothing it handed out is used again).
size_t destroy(magslab_cache* c, bool free_live);

// Misuse: "magslab: " and the line l (without its end), then abort.
[[noreturn]] void die(const LineBuf& l);

// fork(): the cache registry lock, then every cache's slab lock (by id), taken
// before the heap's locks and released after them (api/fork.cc).
void lock_for_fork();
void unlock_after_fork();
// In the child, with those locks still held: only the forking thread's table
// stays registered (the others' magazines are leaked there).
void forget_other_threads_after_fork();
// ... and the lock of every pool's big blocks (api/pool.cc), a leaf: last.
void lock_pools_for_fork();
void unlock_pools_after_fork();

}  // namespace magslab::objcache
