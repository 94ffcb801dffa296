// stats/counters: slow-path counters behind magslab_stats. Nothing here is
// touched by the malloc/free fast path.
#pragma once
#include <atomic>
#include <cstddef>

namespace magslab::stats {

// Bytes taken out of slabs and page runs (live + cached in magazines), and its
// high-water mark. Updated once per magazine refill/flush and per large block.
void add_in_use(size_t bytes);
void sub_in_use(size_t bytes);
size_t in_use();
size_t peak_in_use();

}  // namespace magslab::stats
