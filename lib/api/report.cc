// api/report: what the options ask for at start and exit (platform/options.h:
// MAGSLAB_VERBOSE's table, MAGSLAB_SHOW_STATS and MAGSLAB_STATS_FILE's exit
// report), the text and JSON statistics (magslab_stats_print,
// magslab_stats_json), magslab_option_get/set and magslab_version. Nothing
// here allocates: output is formatted into buffers on the stack and written
// with write(2), so it works inside a program whose malloc is magslab itself.
#include "api/report.h"

#include <errno.h>

#include <cstring>

#include "api/check.h"
#include "api/entry.h"
#include "base/config.h"
#include "base/format.h"
#include "base/lock.h"
#include "magslab/magslab.h"
#include "platform/options.h"
#include "platform/platform.h"
#include "small/decay.h"
#include "small/size_classes.h"

// The C++ ABI's exit-handler registration (libc), declared here: no header has it.
extern "C" int __cxa_atexit(void (*fn)(void*), void* arg, void* dso_handle);

namespace magslab::report {
namespace {

// A sink for text: to an fd through a stack buffer, or into a caller's buffer
// (cut at its size, always NUL-terminated) while counting the whole length.
class Out {
 public:
  static Out to_fd(int fd) { return Out(true, fd, nullptr, 0); }
  static Out to_buf(char* buf, size_t len) { return Out(false, -1, buf, len); }

  Out& put(const char* s, size_t n) {
    total_ += n;
    if (is_fd_) {
      while (n > 0) {
        if (used_ == sizeof buf_) flush();
        size_t k = sizeof buf_ - used_ < n ? sizeof buf_ - used_ : n;
        memcpy(buf_ + used_, s, k);
        used_ += k;
        s += k;
        n -= k;
      }
    } else {
      for (size_t i = 0; i < n && pos_ + 1 < cap_; ++i) dst_[pos_++] = s[i];
    }
    return *this;
  }
  Out& str(const char* s) { return put(s, strlen(s)); }
  Out& num(uint64_t v) {
    LineBuf b;
    b.num(v);
    return put(b.data(), b.size());
  }
  Out& line(const LineBuf& l) { return put(l.data(), l.size()); }
  // A JSON string literal, escaped. JSON text is UTF-8 (RFC 8259): a byte
  // that does not start a well-formed UTF-8 sequence (a file name may hold
  // any) is written as U+FFFD, the replacement character.
  Out& json_str(const char* s) {
    put("\"", 1);
    while (*s != '\0') {
      unsigned char c = static_cast<unsigned char>(*s);
      if (c == '"' || c == '\\') {
        char e[2] = {'\\', *s};
        put(e, 2);
        ++s;
      } else if (c < 0x20) {
        char e[6] = {'\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]};
        put(e, 6);
        ++s;
      } else if (size_t n = utf8_length(s)) {
        put(s, n);
        s += n;
      } else {
        put("\\ufffd", 6);
        ++s;
      }
    }
    return put("\"", 1);
  }
  // The length of the well-formed UTF-8 sequence at s (1 for ASCII), or 0
  // (Unicode's table 3-7: no overlong form, no surrogate, nothing past U+10FFFF).
  static size_t utf8_length(const char* s) {
    auto b = [s](int i) { return static_cast<unsigned char>(s[i]); };
    auto cont = [&](int i, unsigned lo = 0x80, unsigned hi = 0xBF) {
      return b(i) >= lo && b(i) <= hi;  // the terminating 0 is never one
    };
    unsigned c = b(0);
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
      bool second = c == 0xE0 ? cont(1, 0xA0) : c == 0xED ? cont(1, 0x80, 0x9F) : cont(1);
      return second && cont(2) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
      bool second = c == 0xF0 ? cont(1, 0x90) : c == 0xF4 ? cont(1, 0x80, 0x8F) : cont(1);
      return second && cont(2) && cont(3) ? 4 : 0;
    }
    return 0;
  }
  // "name":value with a leading comma unless first.
  Out& field(const char* name, uint64_t v, bool first = false) {
    if (!first) put(",", 1);
    return json_str(name).put(":", 1).num(v);
  }
  // Ends the output: flushes (fd) or terminates (buffer). Returns 0 or the
  // errno of the first failed write.
  int finish() {
    if (is_fd_)
      flush();
    else if (cap_ != 0)
      dst_[pos_] = '\0';
    return err_;
  }
  size_t total() const { return total_; }

 private:
  Out(bool is_fd, int fd, char* dst, size_t cap) : is_fd_(is_fd), fd_(fd), dst_(dst), cap_(cap) {}
  void flush() {
    if (used_ != 0 && err_ == 0) err_ = platform::write_fd(fd_, buf_, used_);
    used_ = 0;
  }

  bool is_fd_;
  int fd_;
  char* dst_;
  size_t cap_;
  size_t pos_ = 0;
  size_t total_ = 0;
  int err_ = 0;
  size_t used_ = 0;
  char buf_[2048];
};

// The exit report goes to a duplicate of stderr taken at load time: GNU
// coreutils (sort, ls, …) close stderr in an atexit handler, before library
// destructors run. A stats_file is opened at exit.
int g_report_fd = -1;
// The file it was a duplicate of: a program that closes every fd above 2 (a
// daemon) may open one of its own files at the same number before it exits.
platform::FileId g_report_file;

// Where the exit report goes: the duplicate while it is still the stderr it
// was made of, else fd 2 as it is now.
int report_fd() {
  if (g_report_fd < 0) return 2;
  const platform::FileId now = platform::file_id(g_report_fd);
  return now == g_report_file && now != platform::FileId{} ? g_report_fd : 2;
}

void version_string(LineBuf& l) {
  l.num(MAGSLAB_VERSION_MAJOR)
      .str(".")
      .num(MAGSLAB_VERSION_MINOR)
      .str(".")
      .num(MAGSLAB_VERSION_PATCH);
}

// The index-th word of "a|b|c" (up to its '|').
const char* choice(const char* choices, uint64_t index) {
  for (uint64_t k = 0; k < index && *choices != '\0'; ++choices)
    if (*choices == '|') ++k;
  return choices;
}

void print_verbose() {
  LineBuf l;
  auto emit = [&l]() {
    l.end();
    platform::write_stderr(l.data(), l.size());
    l.clear();
  };
  l.str("magslab: active (version ");
  version_string(l);
  l.str(")");
  emit();
  l.str("magslab:   chunk ").bytes(kChunkSize).str(", page ").bytes(kPageSize);
  emit();
  l.str("magslab:   ")
      .num(kNumClasses)
      .str(" size classes up to ")
      .bytes(kMaxClassSize)
      .str("; own mapping above ")
      .bytes(kHugeThreshold);
  emit();
  // The options table in effect: one line each, as MAGSLAB_OPTIONS takes it.
  for (unsigned i = 0; i < opt::kNumOptions; ++i) {
    const opt::Option& o = opt::kOptions[i];
    char v[1100];
    opt::format_value(static_cast<opt::Id>(i), v, sizeof v);
    l.str("magslab:   option ").str(v);
    if (opt::get(static_cast<opt::Id>(i)) == o.def)
      l.str(" (default");
    else if (o.kind == opt::Kind::kChoice)
      l.str(" (default ").str(choice(o.choices, o.def), strcspn(choice(o.choices, o.def), "|"));
    else
      l.str(" (default ").num(o.def);
    l.str(o.runtime ? "; run-time)" : ")");
    emit();
  }
}

void write_text(Out& out) {
  StatsSnapshot snap;
  LineBuf l;
  auto emit = [&]() {
    l.end();
    out.line(l);
    l.clear();
  };
  l.str("magslab: stats (version ");
  version_string(l);
  l.str(")");
  emit();
  if (snap.get() == nullptr) {
    l.str("  (none: the OS refused the memory to take them in)");
    emit();
    return;
  }
  const struct magslab_stats& st = *snap.get();
  l.str("  live        ").bytes(st.live_bytes).str(" in ").num(st.live_objects).str(" blocks");
  emit();
  l.str("  requested   ")
      .bytes(st.live_requested_bytes)
      .str(st.requested_bytes_exact ? " (exact)" : " (small blocks at usable size)");
  emit();
  l.str("  peak in use ").bytes(st.peak_in_use_bytes);
  emit();
  l.str("  cached      ").bytes(st.cached_bytes);
  emit();
  l.str("  mapped      ").bytes(st.mapped_bytes);
  emit();
  l.str("  committed   ").bytes(st.committed_bytes);
  emit();
  l.str("  metadata    ").bytes(st.metadata_bytes);
  emit();
  l.str("  large/huge  ")
      .num(st.large_live_blocks)
      .str(" live (")
      .num(st.huge_live_blocks)
      .str(" huge, ")
      .bytes(st.huge_live_bytes)
      .str("), ")
      .bytes(st.live_large_requested_bytes)
      .str(" requested");
  emit();
  l.str("  threads     ").num(st.thread_caches).str(" with a cache");
  emit();
  // Classes with anything to show; the event columns as in magslab_class_stats.
  l.str(
      "  class size live cached slabs | depot: gets puts overflows | remote_frees | "
      "slabs: refills releases carved returned");
  emit();
  for (size_t c = 0; c < st.class_count; ++c) {
    const magslab_class_stats& cs = st.classes[c];
    if (cs.live_objects == 0 && cs.cached_objects == 0 && cs.slabs == 0 && cs.slab_refills == 0)
      continue;
    l.str("  ").num(c).str(" ").num(cs.object_size).str(" ").num(cs.live_objects).str(" ");
    l.num(cs.cached_objects).str(" ").num(cs.slabs).str(" | ").num(cs.depot_gets).str(" ");
    l.num(cs.depot_puts).str(" ").num(cs.depot_overflows).str(" | ").num(cs.remote_frees);
    l.str(" | ").num(cs.slab_refills).str(" ").num(cs.slab_releases).str(" ");
    l.num(cs.slabs_carved).str(" ").num(cs.slabs_returned);
    emit();
  }
}

void write_json(Out& out) {
  StatsSnapshot snap;
  LineBuf v;
  version_string(v);
  out.str("{\"version\":\"").put(v.data(), v.size()).str("\"");
  if (snap.get() == nullptr) {
    out.str(",\"error\":\"the OS refused the memory to take the statistics in\"}");
    return;
  }
  const struct magslab_stats& st = *snap.get();
  out.field("live_bytes", st.live_bytes);
  out.field("live_objects", st.live_objects);
  out.field("live_large_requested_bytes", st.live_large_requested_bytes);
  out.field("live_requested_bytes", st.live_requested_bytes);
  out.field("requested_bytes_exact", st.requested_bytes_exact);
  out.field("peak_in_use_bytes", st.peak_in_use_bytes);
  out.field("cached_bytes", st.cached_bytes);
  out.field("mapped_bytes", st.mapped_bytes);
  out.field("committed_bytes", st.committed_bytes);
  out.field("metadata_bytes", st.metadata_bytes);
  out.field("large_live_blocks", st.large_live_blocks);
  out.field("huge_live_blocks", st.huge_live_blocks);
  out.field("huge_live_bytes", st.huge_live_bytes);
  out.field("thread_caches", st.thread_caches);
  // The options in effect: numbers, a choice's name, a path as a string.
  out.str(",\"options\":{");
  for (unsigned i = 0; i < opt::kNumOptions; ++i) {
    const opt::Option& o = opt::kOptions[i];
    auto id = static_cast<opt::Id>(i);
    if (i != 0) out.str(",");
    out.json_str(o.name).str(":");
    if (o.kind == opt::Kind::kPath) {
      out.json_str(opt::path(id));
    } else if (o.kind == opt::Kind::kChoice) {
      char text[64];
      size_t n = opt::format_value(id, text, sizeof text);
      size_t eq = strlen(o.name) + 1;  // format_value writes "name=value"
      text[n] = '\0';
      out.json_str(text + eq);
    } else {
      out.num(opt::get(id));
    }
  }
  out.str("},\"classes\":[");
  for (size_t c = 0; c < st.class_count; ++c) {
    const magslab_class_stats& cs = st.classes[c];
    out.str(c == 0 ? "{" : ",{");
    out.field("class", c, true);
    out.field("object_size", cs.object_size);
    out.field("slab_size", cs.slab_size);
    out.field("live_objects", cs.live_objects);
    out.field("cached_objects", cs.cached_objects);
    out.field("slabs", cs.slabs);
    out.field("depot_gets", cs.depot_gets);
    out.field("depot_puts", cs.depot_puts);
    out.field("depot_overflows", cs.depot_overflows);
    out.field("remote_frees", cs.remote_frees);
    out.field("slab_refills", cs.slab_refills);
    out.field("slab_releases", cs.slab_releases);
    out.field("slabs_carved", cs.slabs_carved);
    out.field("slabs_returned", cs.slabs_returned);
    out.str("}");
  }
  out.str("]}\n");
}

}  // namespace

void load_options(char* const* envp) {
  opt::load(envp);
  // show_stats=1/text/json, or a stats_file alone (text): a report at exit.
  // Check mode's leak report (api/check.h) goes there too, and so does the
  // line saying a stats_file could not be opened (before stop 42 it went to
  // fd 2 as it was at exit: into a file the program had opened there).
  if (opt::get(opt::kShowStats) != 0 || opt::get(opt::kStatsFile) != 0 ||
      (kCheckMode && opt::get(opt::kLeakReport) != 0)) {
    g_report_fd = platform::dup_stderr();
    if (g_report_fd >= 0) g_report_file = platform::file_id(g_report_fd);
  }
  if (opt::get(opt::kVerbose) != 0) print_verbose();
}

void after_fork_child() {
  // A forked child reports through its fd 2 as it is at exit, not through the
  // parent's duplicate: a child that closes 0-2 (a daemon) must not keep the
  // caller's stderr open (a shell reading it would wait for the daemon's
  // exit). Closed only while it still is that duplicate.
  if (g_report_fd < 0) return;
  const platform::FileId now = platform::file_id(g_report_fd);
  if (now == g_report_file && now != platform::FileId{}) platform::close_fd(g_report_fd);
  g_report_fd = -1;
}

namespace {

void report_at_exit() {
  if constexpr (kCheckMode) check::check_quarantine_at_exit();
  if constexpr (kCheckMode) check::report_leaks(report_fd());
  uint64_t format = opt::get(opt::kShowStats);
  bool to_file = opt::get(opt::kStatsFile) != 0;
  if (format == 0 && !to_file) return;
  // exit() from a signal handler that interrupted this thread inside a Lock
  // (a huge malloc under the huge lock, a refill under its class lock): the
  // statistics would wait for that Lock for ever, so there are none (stop
  // 50's bug hunt: 40 of 200 such exits hung). One line says so.
  if (t_locks_held != 0) {
    LineBuf l;
    l.str(
         "magslab: no statistics at exit: exit() was called while this thread held a "
         "lock of magslab's (from a signal handler that interrupted an allocation?)")
        .end();
    platform::write_fd(report_fd(), l.data(), l.size());
    return;
  }
  int fd = to_file ? platform::open_for_writing(opt::path(opt::kStatsFile)) : report_fd();
  if (fd < 0) {
    LineBuf l;
    l.str("magslab: cannot open stats_file ").str(opt::path(opt::kStatsFile)).end();
    platform::write_fd(report_fd(), l.data(), l.size());
    return;
  }
  magslab_stats_print(fd, format == 2 ? MAGSLAB_STATS_JSON : MAGSLAB_STATS_TEXT);
  if (to_file) platform::close_fd(fd);
}

// At exit the dynamic loader runs the libraries' destructors in the reverse
// order of their constructors, and a preloaded magslab's may come before
// those of libraries the program links: blocks those destructors still free
// were reported as leaks (a C++ library's static std::vector<std::string>;
// found by a bug-hunt helper, stop 39), and the statistics counted them live.
// So the destructor, which runs inside the loader's exit handler, registers
// the report as an exit handler of its own: exit() runs handlers registered
// while it runs them after the one running, so the report comes after every
// library's destructor. Registered for no shared object (__cxa_atexit's third
// argument): atexit() would name this library, whose own finalisation, right
// after this destructor, runs what was registered for it. So only where this
// code stays mapped until exit (platform::never_unloaded: the program, or a
// -z nodelete library): libmagslab.a in a plugin reports at once, as before —
// a handler left behind by a plugin dlclose()d crashed the program at its
// exit (found by a review). (Since stop 42 such a plugin is pinned as it
// loads, platform.cc, and this destructor runs at exit, not at dlclose; its
// DT_FLAGS_1 still say it may be unloaded. If the registration is refused,
// the report comes at once too.)
[[gnu::destructor]] void on_unload() {
  if (!platform::never_unloaded(reinterpret_cast<const void*>(&report_at_exit)) ||
      __cxa_atexit([](void*) { report_at_exit(); }, nullptr, nullptr) != 0)
    report_at_exit();
}

}  // namespace

void print_stats(int fd) { magslab_stats_print(fd, MAGSLAB_STATS_TEXT); }

}  // namespace magslab::report

using namespace magslab;

extern "C" {

int magslab_version(void) { return MAGSLAB_VERSION; }

void magslab_at_load_v1(int argc, char** argv, char** envp) { api::at_load(argc, argv, envp); }

size_t magslab_stats_json(char* buf, size_t len) {
  report::Out out = report::Out::to_buf(buf, buf == nullptr ? 0 : len);
  report::write_json(out);
  out.finish();
  return out.total();
}

int magslab_stats_print(int fd, int format) {
  if (format != MAGSLAB_STATS_TEXT && format != MAGSLAB_STATS_JSON) return EINVAL;
  int saved = errno;
  report::Out out = report::Out::to_fd(fd);
  if (format == MAGSLAB_STATS_JSON)
    report::write_json(out);
  else
    report::write_text(out);
  int err = out.finish();
  errno = saved;
  return err;
}

int magslab_option_get(const char* name, size_t* value) {
  if (name == nullptr) return ENOENT;
  opt::ensure_loaded();
  unsigned id = opt::find(name, strlen(name));
  if (id == opt::kNumOptions) return ENOENT;
  if (value != nullptr) *value = opt::get(static_cast<opt::Id>(id));
  return 0;
}

int magslab_option_set(const char* name, size_t value) {
  if (name == nullptr) return ENOENT;
  opt::ensure_loaded();  // a later load() must not overwrite what is set here
  unsigned id = opt::find(name, strlen(name));
  if (id == opt::kNumOptions) return ENOENT;
  const int rc = opt::set(static_cast<opt::Id>(id), value);
  // The decay thread the option kept from starting starts now (it was kept
  // from starting only in a process that had a second thread; else a second
  // thread's first call starts it). Until stop 48 it never started once a
  // second thread had come with the option at 0. Not async-signal-safe: it
  // may create a thread.
  if (rc == 0 && id == opt::kBackgroundThread && value != 0 && decay::option_turned_on())
    decay::on_multithreaded();
  return rc;
}

}  // extern "C"
