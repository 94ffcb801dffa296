// small/requested: exact requested-byte statistics for slab-class blocks, compiled
// in with MAGSLAB_EXACT_REQUESTED (kExactRequested; config.h). Default builds
// never call anything here and magslab_stats counts small blocks at their
// usable size (requested_bytes_exact == 0).
//
// Where the numbers live:
//  * per object: Slab::requested[i], the size the program asked for object i
//    (written when the object is handed out, read when it is freed);
//  * per thread: ThreadCache::requested, + on allocation, − on free (a thread
//    that frees what another allocated goes negative; only the sum matters);
//  * g_folded: counts of caches that went away (thread exit, or the other
//    threads of a forked parent) and of the rare operation with no cache.
// live requested bytes = g_folded + Σ live caches (cache::requested_sum()),
// exact when no thread is allocating or freeing. Nothing here is atomic
// read-modify-write on the allocation path: the per-thread counter has one
// writer.
#pragma once

#include <atomic>
#include <cstdint>

#include "small/size_classes.h"
#include "small/slab.h"
#include "small/thread_cache.h"

namespace magslab::requested {

extern std::atomic<int64_t> g_folded;

// The side-array entry of p, an object of s. Its index off / size, without a
// division: for off = k * size (k < 2^11) and magic = ceil(2^64 / size) =
// (2^64 + e) / size with 0 <= e < size, off * magic = k * 2^64 + k * e and
// k * e < 2^27, so the high word of the product is k (slab.h, OffsetCheck).
inline uint32_t& slot(const Slab* s, const void* p) {
  uint64_t off = reinterpret_cast<uintptr_t>(p) - s->start();
  uint64_t magic = kClasses[s->cls].magic;
  return s->requested[static_cast<uint64_t>((static_cast<unsigned __int128>(off) * magic) >> 64)];
}

// Add d to the calling thread's count (to g_folded if it has no cache: after
// creating one failed, or after the thread's exit destructor ran).
inline void note(int64_t d) {
  ThreadCache* tc = t_cache;
  if (MAGSLAB_LIKELY(is_owned_cache(tc))) {
    std::atomic_ref<int64_t> r(tc->requested);
    r.store(r.load(std::memory_order_relaxed) + d,
            std::memory_order_relaxed);  // relaxed: one writer
  } else {
    g_folded.fetch_add(d, std::memory_order_relaxed);  // relaxed: a statistic
  }
}

}  // namespace magslab::requested
