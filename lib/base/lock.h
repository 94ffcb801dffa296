// base/lock: the mutex used off the fast path (slab classes, page heap, registry).
// A futex-based pthread mutex: waiters sleep instead of spinning, so a holder
// that is preempted on an oversubscribed machine does not start a convoy of
// spinners. PTHREAD_MUTEX_INITIALIZER makes it constant-initialised: usable
// before any constructor has run, and it never allocates.
#pragma once
#include <pthread.h>

namespace magslab {

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
  void lock() { pthread_mutex_lock(&m_); }
  void unlock() { pthread_mutex_unlock(&m_); }

 private:
  pthread_mutex_t m_ = PTHREAD_MUTEX_INITIALIZER;
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
