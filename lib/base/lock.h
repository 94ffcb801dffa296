// base/lock: the mutex used off the fast path (slab classes, page heap, registry).
// A futex-based pthread mutex: waiters sleep instead of spinning, so a holder
// that is preempted on an oversubscribed machine does not start a convoy of
// spinners. PTHREAD_MUTEX_INITIALIZER makes it constant-initialised: usable
// before any constructor has run, and it never allocates.
#pragma once
#include <pthread.h>

#include "base/config.h"

namespace magslab {

// fork() (api/fork.cc): magslab's prepare handler takes every Lock of the heap
// (lock_for_fork), its parent and child handlers release them
// (unlock_after_fork). pthread_atfork handlers registered before magslab's (a
// constructor that ran first) run between the two — their prepare after
// magslab's, their parent and child before magslab's — on the forking thread,
// and may call into the heap (glibc lets them call malloc). That thread then
// holds every such Lock already: set here from the end of magslab's prepare
// handler to the start of its parent or child handler, it takes none of them
// again (lock and unlock do nothing on a Lock held for the fork). Every other
// thread reads false.
inline constinit thread_local bool t_fork_holder MAGSLAB_TLS_MODEL = false;

// How many Locks the calling thread holds or is taking (by lock(), not for a
// fork). The exit report reads it (api/report.cc): exit() called from a signal
// handler that interrupted one of this thread's slow paths inside a Lock must
// not wait for that Lock (stop 50's bug hunt: the show_stats report hung for
// ever). Slow paths only, a plain thread-local: no other thread reads it.
inline constinit thread_local unsigned t_locks_held MAGSLAB_TLS_MODEL = 0;

class Lock {
 public:
  constexpr Lock() = default;
  // glibc's adaptive mutex: a waiter spins a bounded, self-tuning number of
  // times before it sleeps. For a lock whose critical sections are short and
  // which two threads take at every operation (large/'s huge lock).
  struct Adaptive {};
  explicit constexpr Lock(Adaptive) : m_(PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP) {}
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  // t_locks_held counts from before the mutex is taken to after it is let go
  // (a handler may interrupt pthread_mutex_lock or _unlock halfway); the calls
  // are opaque, so the compiler keeps the count's updates on their sides.
  void lock() {
    if (MAGSLAB_UNLIKELY(held_for_this_fork())) return;
    ++t_locks_held;
    pthread_mutex_lock(&m_);
  }
  // lock() if no other thread holds it, else false at once (unlock() only
  // after true).
  bool try_lock() {
    if (MAGSLAB_UNLIKELY(held_for_this_fork())) return true;
    ++t_locks_held;
    if (pthread_mutex_trylock(&m_) == 0) return true;
    --t_locks_held;
    return false;
  }
  void unlock() {
    if (MAGSLAB_UNLIKELY(held_for_this_fork())) return;
    pthread_mutex_unlock(&m_);
    --t_locks_held;
  }
  // fork()'s prepare handler, and its parent and child handlers (above). A
  // Lock made meanwhile (an object cache that such a handler created) was not
  // taken for the fork, and stays as it is.
  void lock_for_fork() {
    pthread_mutex_lock(&m_);
    fork_held_ = true;
  }
  void unlock_after_fork() {
    if (!fork_held_) return;
    fork_held_ = false;
    pthread_mutex_unlock(&m_);
  }

 private:
  // fork_held_ is written by the forking thread while it holds m_, and read
  // only by a thread whose t_fork_holder is set: that same thread.
  bool held_for_this_fork() const { return t_fork_holder && fork_held_; }

  pthread_mutex_t m_ = PTHREAD_MUTEX_INITIALIZER;
  bool fork_held_ = false;
};

class LockGuard {
 public:
  explicit LockGuard(Lock& l) : l_(l) { l_.lock(); }
  ~LockGuard() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  Lock& l_;
};

}  // namespace magslab
