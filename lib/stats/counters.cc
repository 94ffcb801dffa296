// stats/counters: the byte counters behind magslab_stats (in use now and its
// high-water mark). A leaf: it includes nothing of magslab but base, and the
// layers above call it; api/stats.cc assembles the report.
#include "stats/counters.h"

#include "stats/events.h"

namespace magslab::stats {

constinit ClassEvents g_events[kEventClasses];
namespace {
// relaxed: statistics only; no other memory is published through them.
std::atomic<size_t> g_in_use{0};
std::atomic<size_t> g_peak{0};
}  // namespace

void add_in_use(size_t bytes) {
  size_t now = g_in_use.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  size_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
void sub_in_use(size_t bytes) { g_in_use.fetch_sub(bytes, std::memory_order_relaxed); }
size_t in_use() { return g_in_use.load(std::memory_order_relaxed); }
size_t peak_in_use() { return g_peak.load(std::memory_order_relaxed); }

}  // namespace magslab::stats
