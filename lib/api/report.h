// api/report: the MAGSLAB_* options at start (MAGSLAB_VERBOSE's table) and at
// exit (MAGSLAB_SHOW_STATS, MAGSLAB_STATS_FILE), and the stats report, all
// written without allocating. The options themselves: platform/options.h.
#pragma once

#include "platform/platform.h"

struct magslab_stats;

namespace magslab::report {

// A snapshot of the statistics in a mapping of its own, not on the caller's
// stack: struct magslab_stats is 13 KiB (128 classes), and the caller may be a
// thread with a stack of PTHREAD_STACK_MIN (16 KiB), or exit() there running
// the exit report (a review found SIGSEGVs in both); nor in the heap, which the
// reports never use. get() is nullptr when the mapping was refused. No
// cancellation while it lives: its users write it out (write, fwrite:
// cancellation points), and a thread cancelled there leaked the mapping.
class StatsSnapshot {
 public:
  StatsSnapshot();
  ~StatsSnapshot();
  StatsSnapshot(const StatsSnapshot&) = delete;
  StatsSnapshot& operator=(const StatsSnapshot&) = delete;
  const struct magslab_stats* get() const { return st_; }

 private:
  platform::NoCancel no_cancel_;  // first: before the mapping, gone after it
  struct magslab_stats* st_;
};

// Read the options (once, from the library's constructor, unless an earlier
// allocation already did) and act on them: the verbose table now, a stats
// report at exit if asked for.
void load_options(char* const* envp = nullptr);

// fork(), in the child: the exit report goes to the child's own fd 2, and
// the duplicate of the parent's stderr taken at load is closed.
void after_fork_child();

// Write the text stats summary (magslab_stats_print's MAGSLAB_STATS_TEXT) to fd.
void print_stats(int fd = 2);

}  // namespace magslab::report
