// api/stats: magslab_stats — per-class live counts derived from slow-path state:
//   live(c) = carved(c) − in thread magazines(c) − in depot magazines(c)
// carved is kept by the slab layer under its class lock, the magazine counts by
// their owners (relaxed atomic_ref stores). Nothing is counted on the fast
// path, and the sum is exact when no thread is allocating or freeing (decay
// passes, which move objects from the depot to the slabs, wait meanwhile).
#include <atomic>
#include <cstring>

#include "api/report.h"
#include "base/config.h"
#include "chunks/meta_arena.h"
#include "chunks/page_heap.h"
#include "large/large.h"
#include "magslab/magslab.h"
#include "platform/platform.h"
#include "small/decay.h"
#include "small/depot.h"
#include "small/slab.h"
#include "small/thread_cache.h"
#include "stats/counters.h"
#include "stats/events.h"

using namespace magslab;

static_assert(kNumClasses <= stats::kEventClasses && kNumClasses <= MAGSLAB_MAX_CLASSES);

namespace {

// Per class, the highest remote_frees reported so far (relaxed: a counter's
// floor; it orders nothing).
std::atomic<size_t> g_remote_frees_seen[kNumClasses];

// remote_frees never goes back between two reads: the events are read before
// the remote magazines, and a thread counts a magazine's frees as events only
// once it has left its slot (thread_cache.cc), so a read under traffic may
// miss a magazine on its way out but never count it twice; what it reports is
// at least every earlier report (a monitor taking rates reads a decrease as a
// restart). At quiescence the sum is exact, and so the report.
size_t remote_frees_floor(unsigned c, size_t now) {
  size_t seen = g_remote_frees_seen[c].load(std::memory_order_relaxed);
  while (seen < now && !g_remote_frees_seen[c].compare_exchange_weak(
                           seen, now, std::memory_order_relaxed, std::memory_order_relaxed)) {
  }
  return seen > now ? seen : now;
}

void fill(struct magslab_stats* out) {
  memset(out, 0, sizeof *out);
  decay::NoPassScope no_pass;
  uint64_t remote_events[kNumClasses];
  // acquire: pairs with the release add of a magazine's frees
  // (thread_cache.cc, count_remote_frees): a count read here comes with its
  // magazine's leaving its slot, which the walk below then sees.
  for (unsigned c = 0; c < kNumClasses; ++c)
    remote_events[c] = stats::events_acquire(c, stats::kRemoteFree);
  cache::CachedCounts in_caches;
  cache::cached_objects(&in_caches);
  out->class_count = kNumClasses;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    const ClassInfo& ci = kClasses[c];
    slab::ClassCounts sc = slab::counts(c);
    size_t cached = in_caches.objects[c] + depot::cached_objects(c);
    // Under concurrent traffic the parts are read at different moments.
    size_t out_of_slabs = cached + in_caches.lost[c];
    size_t live = sc.carved_objects > out_of_slabs ? sc.carved_objects - out_of_slabs : 0;
    magslab_class_stats& cs = out->classes[c];
    cs.object_size = ci.size;
    cs.slab_size = size_t{ci.slab_pages} * kPageSize;
    cs.live_objects = live;
    cs.cached_objects = cached;
    cs.slabs = sc.slabs;
    cs.depot_gets = stats::events(c, stats::kDepotGet);
    cs.depot_puts = stats::events(c, stats::kDepotPut);
    cs.depot_overflows = stats::events(c, stats::kDepotOverflow);
    // Frees into remote magazines are counted when the magazine leaves its
    // thread; those still there are added here.
    cs.remote_frees = remote_frees_floor(c, remote_events[c] + in_caches.remote[c]);
    cs.slab_refills = stats::events(c, stats::kSlabRefill);
    cs.slab_releases = stats::events(c, stats::kSlabRelease);
    cs.slabs_carved = stats::events(c, stats::kSlabCarved);
    cs.slabs_returned = stats::events(c, stats::kSlabReturned);
    out->live_objects += live;
    out->live_bytes += live * ci.size;
    out->cached_bytes += cached * ci.size + sc.empty_cached_slabs * cs.slab_size;
  }
  large::Counts lc = large::counts();
  if constexpr (kExactRequested) {
    int64_t small = cache::requested_sum();  // < 0 only transiently, under traffic
    out->live_requested_bytes = (small > 0 ? static_cast<size_t>(small) : 0) + lc.live_requested;
    out->requested_bytes_exact = 1;
  } else {
    out->live_requested_bytes = out->live_bytes + lc.live_requested;  // small: usable
  }
  out->live_objects += lc.live_blocks;
  out->live_bytes += lc.live_bytes;
  out->live_large_requested_bytes = lc.live_requested;
  out->large_live_blocks = lc.live_blocks;
  out->huge_live_blocks = lc.huge_blocks;
  out->huge_live_bytes = lc.huge_bytes;
  out->thread_caches = cache::live_caches();
  heap::Totals t;
  {
    LockGuard g(heap::g_lock);
    t = heap::totals_locked();
  }
  out->cached_bytes += t.dirty_pages * kPageSize;  // free runs not purged yet
  out->cached_bytes += lc.huge_cached_bytes;
  out->mapped_bytes = t.chunks * kChunkSize + lc.huge_mapped_bytes;
  // Purged free pages, hollow pages of slabs in use and huge mappings' pages
  // never touched are not committed; dirty ones may be.
  out->committed_bytes = out->mapped_bytes - (t.free_pages - t.dirty_pages) * kPageSize -
                         slab::hollow_bytes() - lc.huge_untouched_bytes;
  out->metadata_bytes = meta::mapped_bytes();
  out->peak_in_use_bytes = stats::peak_in_use();
}

}  // namespace

namespace magslab::report {

namespace {
constexpr size_t kSnapshotBytes = align_up(sizeof(struct magslab_stats), kPageSize);
}

// A mapping outside the test seam (platform::map_sparse, as the page map's
// leaves): the fake OS of the tests neither refuses nor counts it.
StatsSnapshot::StatsSnapshot()
    : st_(static_cast<struct magslab_stats*>(platform::map_sparse(kSnapshotBytes))) {
  if (st_ != nullptr) fill(st_);
}

StatsSnapshot::~StatsSnapshot() {
  if (st_ != nullptr) platform::unmap_sparse(st_, kSnapshotBytes);
}

}  // namespace magslab::report

// A caller compiled with this header (or a later one, whose struct is longer)
// gets the struct filled in place; one compiled with an earlier, shorter one
// gets its part of a snapshot (never a 13 KiB copy on its stack). 0 and its
// bytes zeroed: that snapshot could not be mapped.
extern "C" size_t magslab_stats_get(struct magslab_stats* out, size_t size) {
  if (out == nullptr) return 0;  // as magslab_stats(NULL)
  size_t n = sizeof(struct magslab_stats);
  if (size >= n) {
    fill(out);
  } else {
    report::StatsSnapshot snap;
    n = snap.get() != nullptr ? size : 0;
    if (n != 0) memcpy(out, snap.get(), n);
  }
  if (size > n) memset(reinterpret_cast<char*>(out) + n, 0, size - n);
  return n;
}

extern "C" void magslab_stats(struct magslab_stats* out) {
  if (out != nullptr) fill(out);
}
