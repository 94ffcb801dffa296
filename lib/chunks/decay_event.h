// chunks/decay_event: how the layers that cache memory (the page heap's dirty
// runs, the depot, empty slabs, the huge-mapping cache) wake the decay thread
// (small/decay.h) when it sleeps because nothing was left to decay. Cheap when
// it is awake or absent: a fence and a load, on slow paths only.
#pragma once
#include <atomic>
#include <cstdint>

#include "base/config.h"

namespace magslab::decay_event {

// 1 while the decay thread sleeps with nothing to decay (it waits on this word).
extern std::atomic<uint32_t> g_parked;

MAGSLAB_NOINLINE void wake_parked();

// Set by decay::pause() (tests that assert exact cache contents): no decay by
// age anywhere. relaxed: a switch read on slow paths.
extern std::atomic<bool> g_paused;
inline bool paused() { return g_paused.load(std::memory_order_relaxed); }

// Call after caching something that decay should give back later.
inline void note() {
  // seq_cst fence: orders the caller's caching before its load of g_parked,
  // and pairs with the decay thread's seq_cst store of g_parked before its last
  // look for work (Dekker): either it sees the new work or we see it parked.
#if MAGSLAB_TSAN
  // ThreadSanitizer does not model fences: the same ordering by a seq_cst RMW
  // (which makes every caller write the word's line: sanitizer builds only).
  if (MAGSLAB_UNLIKELY(g_parked.fetch_add(0, std::memory_order_seq_cst) != 0)) wake_parked();
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // relaxed: ordered by the fence above.
  if (MAGSLAB_UNLIKELY(g_parked.load(std::memory_order_relaxed) != 0)) wake_parked();
#endif
}

// note() for a caller whose caching was a seq_cst read-modify-write (a
// parked huge block's slot): that RMW orders it before the seq_cst load below
// as note()'s fence would, with the decay thread's fence after its store of
// g_parked (decay.cc). On x86 the fence is an mfence: 4.5 ns of the 23 a 4 MiB
// malloc+free pair took on one thread (stop 36).
inline void note_after_seq_cst_rmw() {
#if MAGSLAB_TSAN
  if (MAGSLAB_UNLIKELY(g_parked.fetch_add(0, std::memory_order_seq_cst) != 0)) wake_parked();
#else
  // seq_cst: see above.
  if (MAGSLAB_UNLIKELY(g_parked.load(std::memory_order_seq_cst) != 0)) wake_parked();
#endif
}

// For what a pass finds by looking rather than being handed (a thread's
// previous magazine, an inbox): a relaxed look, no fence. A slow path that
// races with the decay thread parking at that moment leaves what it cached to
// the thread's bounded sleep (10 s), as before this call existed (stop 39).
inline void note_hint() {
  // relaxed: a hint (above).
  if (MAGSLAB_UNLIKELY(g_parked.load(std::memory_order_relaxed) != 0)) wake_parked();
}

}  // namespace magslab::decay_event
