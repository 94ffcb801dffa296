// api/report: options read once at load time from the environment (by the
// library's constructor, api/magslab.cc, whether magslab is linked or
// preloaded), and the stats report. getenv() does not allocate, and output is formatted into a
// stack buffer and written with write(2), so this works inside a program whose
// malloc is magslab itself.
//
// | variable            | default | meaning                                        |
// | MAGSLAB_SHOW_STATS  | 0       | 1: print a stats summary to stderr at exit     |
// | MAGSLAB_VERBOSE     | 0       | 1: print the configuration to stderr at load   |
// A value other than 0 or 1 is reported on stderr and the default is kept.
#include "api/report.h"

#include <stdlib.h>

#include <cstring>

#include "base/config.h"
#include "base/format.h"
#include "magslab/magslab.h"
#include "platform/platform.h"
#include "small/size_classes.h"

namespace magslab::report {
namespace {

// A base/format LineBuf that writes itself to fd: emit() ends the line,
// writes it and starts the next one. The formatting itself is LineBuf's.
class Line {
 public:
  explicit Line(int fd = 2) : fd_(fd) {}
  Line& str(const char* s) {
    b_.str(s);
    return *this;
  }
  Line& num(size_t v) {
    b_.num(v);
    return *this;
  }
  Line& bytes(size_t v) {
    b_.bytes(v);
    return *this;
  }
  void emit() {
    b_.end();
    platform::write_fd(fd_, b_.data(), b_.size());
    b_.clear();
  }

 private:
  int fd_;
  LineBuf b_;
};

bool g_show_stats = false;
// The exit report goes to a duplicate of stderr taken at load time: GNU
// coreutils (sort, ls, …) close stderr in an atexit handler, before library
// destructors run.
int g_report_fd = -1;

bool flag(const char* name) {
  const char* v = getenv(name);
  if (v == nullptr || strcmp(v, "0") == 0 || v[0] == '\0') return false;
  if (strcmp(v, "1") == 0) return true;
  Line().str("magslab: ignoring ").str(name).str("=").str(v).str(" (expected 0 or 1)").emit();
  return false;
}

}  // namespace

void load_options() {
  g_show_stats = flag("MAGSLAB_SHOW_STATS");
  if (g_show_stats) g_report_fd = platform::dup_stderr();
  if (flag("MAGSLAB_VERBOSE")) {
    Line l;
    l.str("magslab: active (version ")
        .num(MAGSLAB_VERSION_MAJOR)
        .str(".")
        .num(MAGSLAB_VERSION_MINOR)
        .str(".")
        .num(MAGSLAB_VERSION_PATCH)
        .str(")")
        .emit();
    l.str("magslab:   chunk ").bytes(kChunkSize).str(", page ").bytes(kPageSize).emit();
    l.str("magslab:   ")
        .num(kNumClasses)
        .str(" size classes up to ")
        .bytes(kMaxSmallSize)
        .str("; own mapping above ")
        .bytes(kHugeThreshold)
        .emit();
    l.str("magslab:   MAGSLAB_SHOW_STATS=").num(g_show_stats ? 1 : 0).emit();
  }
}

namespace {

[[gnu::destructor]] void on_unload() {
  if (g_show_stats) print_stats(g_report_fd >= 0 ? g_report_fd : 2);
}

}  // namespace

void print_stats(int fd) {
  struct magslab_stats st;
  magslab_stats(&st);
  Line l(fd);
  l.str("magslab: stats").emit();
  l.str("  live        ")
      .bytes(st.live_bytes)
      .str(" in ")
      .num(st.live_objects)
      .str(" blocks")
      .emit();
  l.str("  requested   ")
      .bytes(st.live_requested_bytes)
      .str(st.requested_bytes_exact ? " (exact)" : " (small blocks at usable size)")
      .emit();
  l.str("  peak in use ").bytes(st.peak_in_use_bytes).emit();
  l.str("  cached      ").bytes(st.cached_bytes).emit();
  l.str("  mapped      ").bytes(st.mapped_bytes).emit();
  l.str("  committed   ").bytes(st.committed_bytes).emit();
  l.str("  metadata    ").bytes(st.metadata_bytes).emit();
  l.str("  large/huge  ")
      .num(st.large_live_blocks)
      .str(" live (")
      .num(st.huge_live_blocks)
      .str(" huge), ")
      .bytes(st.live_large_requested_bytes)
      .str(" requested")
      .emit();
  l.str("  class   size   live objects   cached   slabs").emit();
  for (size_t c = 0; c < st.class_count; ++c) {
    const magslab_class_stats& cs = st.classes[c];
    if (cs.live_objects == 0 && cs.cached_objects == 0 && cs.slabs == 0) continue;
    l.str("  ")
        .num(c)
        .str("\t")
        .num(cs.object_size)
        .str("\t")
        .num(cs.live_objects)
        .str("\t")
        .num(cs.cached_objects)
        .str("\t")
        .num(cs.slabs)
        .emit();
  }
}

}  // namespace magslab::report
