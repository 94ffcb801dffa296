// stats/events: per size class, counts of slow-path events — magazines traded
// with the depot, depot overflows, remote frees, trips to the slabs, slabs
// carved and given back (magslab_class_stats, docs/options.md). Counted only
// where the code already takes a lock or a depot CAS, never on the malloc/free
// fast path. A leaf, like counters.h: the layers above call count().
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/config.h"

namespace magslab::stats {

enum Event : unsigned {
  kDepotGet,       // a full magazine taken from the depot
  kDepotPut,       // a full magazine handed to the depot
  kDepotOverflow,  // a full magazine the depot refused (at its limit): flushed to the slabs
  kRemoteFree,     // objects freed into a remote magazine (counted when it leaves the thread)
  kSlabRefill,     // magazine refills from the slabs (class lock)
  kSlabRelease,    // trips that returned objects to the slabs (class lock)
  kSlabCarved,     // slabs carved from the page heap
  kSlabReturned,   // empty slabs given back to the page heap
  kNumEvents
};

// At least kNumClasses (static_assert in api/stats.cc) and MAGSLAB_MAX_CLASSES.
inline constexpr unsigned kEventClasses = 128;

// One cache line per class: classes do not share lines with each other.
struct alignas(kCacheLine) ClassEvents {
  std::atomic<uint64_t> n[kNumEvents];
};
extern ClassEvents g_events[kEventClasses];

// relaxed: statistics only; no memory is published through them.
inline void count(unsigned cls, Event e, uint64_t n = 1) {
  g_events[cls].n[e].fetch_add(n, std::memory_order_relaxed);
}
inline uint64_t events(unsigned cls, Event e) {
  return g_events[cls].n[e].load(std::memory_order_relaxed);
}
// The same for a count that publishes what its caller did before it (the
// remote magazine it took out of its slot: thread_cache.cc, count_remote_frees)
// to a reader that loads it with events_acquire (api/stats.cc): release /
// acquire on the counter itself, which ThreadSanitizer models (it does not
// model fences). The relaxed adds between continue the release sequence.
inline void count_release(unsigned cls, Event e, uint64_t n) {
  g_events[cls].n[e].fetch_add(n, std::memory_order_release);
}
inline uint64_t events_acquire(unsigned cls, Event e) {
  return g_events[cls].n[e].load(std::memory_order_acquire);
}

}  // namespace magslab::stats
