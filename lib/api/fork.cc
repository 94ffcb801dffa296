// api/fork: fork() safety. Every lock magslab has is taken before fork() and
// released after it, in one global order — the object caches' registry and
// their slab locks (api/object_cache.cc: they call into the heap while held,
// never the reverse), the decay pass (a slow path may run one), then the
// heap's: registry, slab classes (node pool by node pool, each by index),
// page heap, huge blocks (large/), the depot's hollow magazines, metadata
// arena, and last the leaf locks (check mode's, the pools' big blocks); the same order the slow
// paths nest them in (the page heap's and the huge blocks' are never held together) — so the child
// never inherits a lock held by a thread that does not exist there. Lock-free parts need nothing:
// the depot stacks are consistent at every instant (one CAS per operation); a magazine another
// thread held at the fork is simply not reachable in the child.
#include <pthread.h>

#include "api/check.h"
#include "api/object_cache.h"
#include "api/report.h"
#include "chunks/meta_arena.h"
#include "chunks/page_heap.h"
#include "large/large.h"
#include "platform/platform.h"
#include "small/decay.h"
#include "small/depot.h"
#include "small/slab.h"
#include "small/thread_cache.h"

namespace magslab {
namespace {

void prepare() {
  objcache::lock_for_fork();
  decay::lock_for_fork();
  cache::lock_for_fork();
  slab::lock_all_for_fork();
  heap::g_lock.lock_for_fork();
  large::lock_for_fork();
  depot::lock_for_fork();
  meta::lock_for_fork();
  if constexpr (kCheckMode) check::lock_for_fork();  // leaf locks: last
  objcache::lock_pools_for_fork();
  // Handlers registered before these run next, and may call in (base/lock.h).
  t_fork_holder = true;
}

void parent() {
  t_fork_holder = false;
  objcache::unlock_pools_after_fork();
  if constexpr (kCheckMode) check::unlock_after_fork();
  meta::unlock_after_fork();
  depot::unlock_after_fork();
  large::unlock_after_fork();
  heap::g_lock.unlock_after_fork();
  slab::unlock_all_after_fork();
  cache::unlock_after_fork_parent();
  decay::unlock_after_fork_parent();
  objcache::unlock_after_fork();
}

void child() {
  t_fork_holder = false;
  // The forking thread is the child's only thread, and it holds every lock.
  objcache::unlock_pools_after_fork();
  if constexpr (kCheckMode) check::unlock_after_fork();
  meta::unlock_after_fork();
  depot::unlock_after_fork();
  large::unlock_after_fork();
  heap::g_lock.unlock_after_fork();
  slab::unlock_all_after_fork();
  cache::reset_after_fork_child();
  decay::reset_after_fork_child();
  platform::reset_after_fork_child();
  // The other threads' cache tables leave the registry: a thread the fork
  // caught in a slow path may have left its slot inconsistent (their
  // magazines' objects are leaked in the child, as the heap's).
  objcache::forget_other_threads_after_fork();
  objcache::unlock_after_fork();
  report::after_fork_child();
}

}  // namespace

// Registered from a constructor, not lazily from the allocation slow path:
// glibc's pthread_atfork may call malloc, which must not re-enter magslab's
// one-time initialisation. Called from api/magslab.cc's constructor, so a
// static link pulls it in with the API.
void register_fork_handlers() {
  if (pthread_atfork(prepare, parent, child) != 0)
    platform::fatal_msg("pthread_atfork failed: fork() would not be safe");
}

}  // namespace magslab
