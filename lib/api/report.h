// api/report: the MAGSLAB_* environment options and the human-readable stats
// report, all written without allocating.
#pragma once

namespace magslab::report {

// Read MAGSLAB_SHOW_STATS and MAGSLAB_VERBOSE (once, from the library's
// constructor); a summary is then printed at exit if asked for.
void load_options();

// Write the stats summary (live, peak, mapped, committed, per-class counts) to fd.
void print_stats(int fd = 2);

}  // namespace magslab::report
