// override/report: MAGSLAB_* environment options of the override library and
// the human-readable stats report, all written without allocating.
#pragma once

namespace magslab::override_report {

// Write the stats summary (live, peak, mapped, committed, per-class counts) to fd.
void print_stats(int fd = 2);

}  // namespace magslab::override_report
