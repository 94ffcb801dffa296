// platform/options: parsing the MAGSLAB_* options (options.h). The environment
// is read in place, values are parsed from the string without copying
// (a path is copied into static storage), and warnings are built in a stack
// LineBuf and written with write(2): nothing here allocates, so it may run
// inside the first malloc of a program whose malloc is magslab.
#include "platform/options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "base/format.h"
#include "platform/numa.h"
#include "platform/platform.h"

namespace magslab::opt {

const Option kOptions[kNumOptions] = {
#define MAGSLAB_OPTION_ROW(id, name, kind, def, min, max, runtime, choices, help) \
  {name, Kind::kind, def, min, max, runtime, choices, help},
    MAGSLAB_OPTION_TABLE(MAGSLAB_OPTION_ROW)
#undef MAGSLAB_OPTION_ROW
};

constinit std::atomic<uint64_t> g_values[kNumOptions] = {
#define MAGSLAB_OPTION_DEFAULT(id, name, kind, def, ...) def,
    MAGSLAB_OPTION_TABLE(MAGSLAB_OPTION_DEFAULT)
#undef MAGSLAB_OPTION_DEFAULT
};

constinit std::atomic<int> g_load_state{0};

namespace {

constexpr size_t kMaxPath = 1024;
// kPath values, by option (bss: untouched pages cost nothing). Written once,
// by load(), before g_load_state is released.
char g_paths[kNumOptions][kMaxPath];

enum class Parse { kOk, kMalformed, kRange };

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// s[0..n) equals the NUL-terminated word w, ignoring case.
bool equals(const char* s, size_t n, const char* w) {
  size_t i = 0;
  for (; i < n; ++i)
    if (w[i] == '\0' || lower(s[i]) != lower(w[i])) return false;
  return w[i] == '\0';
}

// Decimal digits at s[0..n) into *v; returns how many were read (0: none).
// *overflow: they stand for a number past 2^64 - 1.
size_t digits(const char* s, size_t n, uint64_t* v, bool* overflow) {
  uint64_t x = 0;
  size_t i = 0;
  *overflow = false;
  for (; i < n && s[i] >= '0' && s[i] <= '9'; ++i) {
    if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, s[i] - '0', &x))
      *overflow = true;
  }
  *v = x;
  return i;
}

// The multiplier a unit suffix stands for, or 0 if it is not one of `kind`'s.
uint64_t suffix(Kind kind, const char* s, size_t n) {
  if (n == 0) return 1;
  if (kind == Kind::kBytes) {
    if (equals(s, n, "b")) return 1;
    static const char kLetters[] = "kmgt";
    for (int k = 0; k < 4; ++k) {
      if (lower(s[0]) != kLetters[k]) continue;
      if (n == 1 || equals(s + 1, n - 1, "b") || equals(s + 1, n - 1, "ib"))
        return kKiB << (10 * k);
    }
    return 0;
  }
  if (kind == Kind::kMillis) {
    if (equals(s, n, "ms")) return 1;
    if (equals(s, n, "s")) return 1000;
  }
  return 0;
}

// Index of s[0..n) among `choices` ("off|text|json"), or -1.
int choice_index(const char* choices, const char* s, size_t n) {
  int idx = 0;
  const char* w = choices;
  while (*w != '\0') {
    size_t len = 0;
    while (w[len] != '\0' && w[len] != '|') ++len;
    bool same = len == n;
    for (size_t i = 0; same && i < n; ++i) same = lower(s[i]) == w[i];
    if (same) return idx;
    w += len;
    if (*w == '|') ++w;
    ++idx;
  }
  return -1;
}

Parse parse(Id id, const char* s, size_t n, uint64_t* out) {
  const Option& o = kOptions[id];
  if (n == 0) return Parse::kMalformed;
  if (o.kind == Kind::kPath) {
    if (n >= kMaxPath) return Parse::kRange;
    *out = 1;
    return Parse::kOk;
  }
  if (o.kind == Kind::kChoice) {
    int c = choice_index(o.choices, s, n);
    if (c >= 0) {
      *out = static_cast<uint64_t>(c);
      return Parse::kOk;
    }
  }
  uint64_t v;
  bool overflow;
  size_t d = digits(s, n, &v, &overflow);
  if (d == 0) return Parse::kMalformed;
  uint64_t mul = suffix(o.kind, s + d, n - d);
  if (mul == 0) return Parse::kMalformed;
  if (overflow || __builtin_mul_overflow(v, mul, &v)) return Parse::kRange;
  if (v < o.min || v > o.max) return Parse::kRange;
  *out = v;
  return Parse::kOk;
}

const char* expected(const Option& o) {
  switch (o.kind) {
    case Kind::kBytes:
      return "a size in bytes, e.g. 8388608 or 8M";
    case Kind::kCount:
      return "a whole number";
    case Kind::kMillis:
      return "milliseconds, e.g. 500 or 2s";
    case Kind::kChoice:
      return o.choices;
    case Kind::kPath:
      return "a file name";
  }
  return "";
}

// A warning line: "magslab: ignoring <source>: <why>; keeping <value>", where
// <source> is "MAGSLAB_X=v" or "x=v in MAGSLAB_OPTIONS". begin() writes up to
// "<source>: ", the caller the reason, finish() the rest (id == kNumOptions:
// no value to keep) and writes the line.
void begin(LineBuf& l, const char* env, const char* v, size_t n) {
  l.str("magslab: ignoring ");
  if (env != nullptr) l.str(env).str("=");
  // A long value (a path) is cut short, so that the reason fits the line.
  constexpr size_t kEcho = 80;
  l.str(v, n < kEcho ? n : kEcho);
  if (n > kEcho) l.str("...");
  if (env == nullptr) l.str(" in MAGSLAB_OPTIONS");
  l.str(": ");
}

void finish(LineBuf& l, unsigned id) {
  if (id < kNumOptions) {
    char cur[kMaxPath + 64];
    format_value(static_cast<Id>(id), cur, sizeof cur);
    l.str("; keeping ").str(cur);
  }
  l.end();
  platform::write_stderr(l.data(), l.size());
}

// Apply the text s[0..n) to option id, or warn. env: the variable it came
// from, nullptr for an entry of MAGSLAB_OPTIONS (then s is within "name=value").
void apply(Id id, const char* env, const char* entry, size_t entry_len, const char* s, size_t n) {
  const Option& o = kOptions[id];
  uint64_t v = 0;
  Parse r = parse(id, s, n, &v);
  bool dir_too_long = false;
  if (r == Parse::kOk && o.kind == Kind::kPath) {
    // A relative path is anchored here, at the directory the process is in
    // now: it is opened at exit, when the program may have chdir()ed
    // anywhere. getcwd takes the caller's buffer (no allocation). Should the
    // directory not fit with the path, the option is refused (one line, the
    // value kept) rather than left relative to wherever the program ends; a
    // directory getcwd cannot name for another reason (removed) leaves it
    // relative.
    // (A buffer of its own, not 1 KiB more on a stack that may be a small
    // thread's first malloc: options are read once, by one thread.)
    static char dir[kMaxPath];
    size_t at = 0;
    if (s[0] != '/') {
      const int saved = errno;  // options load inside a malloc, which keeps errno
      if (getcwd(dir, sizeof dir) != nullptr) {
        at = strlen(dir);
        if (at + 1 + n < kMaxPath)
          dir[at++] = '/';
        else
          dir_too_long = true;
      } else if (errno == ERANGE) {
        dir_too_long = true;
      }
      errno = saved;
    }
    if (dir_too_long) {
      r = Parse::kRange;
    } else {
      char* out = g_paths[id];
      memcpy(out, dir, at);
      for (size_t i = 0; i < n; ++i) out[at + i] = s[i];
      out[at + n] = '\0';
    }
  }
  if (r == Parse::kOk) {
    // relaxed: published by load()'s release of g_load_state.
    g_values[id].store(v, std::memory_order_relaxed);
    return;
  }
  LineBuf l;
  begin(l, env, entry, entry_len);
  if (r == Parse::kMalformed)
    l.str("expected ").str(expected(o));
  else if (dir_too_long)
    l.str("longer than ").num(kMaxPath - 1).str(" bytes with the working directory before it");
  else if (o.kind == Kind::kPath)
    l.str("longer than ").num(kMaxPath - 1).str(" bytes");
  else
    l.str("out of range [").num(o.min).str(", ").num(o.max).str("]");
  finish(l, id);
}

void parse_options_list(const char* list) {
  const char* p = list;
  while (*p != '\0') {
    const char* item = p;
    while (*p != '\0' && *p != ',') ++p;
    size_t len = static_cast<size_t>(p - item);
    if (*p == ',') ++p;
    if (len == 0) continue;
    size_t eq = 0;
    while (eq < len && item[eq] != '=') ++eq;
    unsigned id = find(item, eq);
    if (eq == len || id == kNumOptions) {
      LineBuf l;
      begin(l, nullptr, item, len);
      l.str(eq == len ? "expected name=value" : "unknown option");
      finish(l, kNumOptions);
    } else {
      apply(static_cast<Id>(id), nullptr, item, len, item + eq + 1, len - eq - 1);
    }
  }
}

// The value of `name` in env (a NULL-terminated array of "NAME=value"), or nullptr.
const char* env_value(char* const* env, const char* name) {
  size_t len = strlen(name);
  for (; *env != nullptr; ++env)
    if (strncmp(*env, name, len) == 0 && (*env)[len] == '=') return *env + len + 1;
  return nullptr;
}

// Every MAGSLAB_* variable of `environment`: the list first, then each option's own.
void read_environment(char* const* environment) {
  if (const char* list = env_value(environment, "MAGSLAB_OPTIONS")) parse_options_list(list);
  for (unsigned i = 0; i < kNumOptions; ++i) {
    char env[64] = "MAGSLAB_";
    size_t k = 8;
    for (const char* n = kOptions[i].name; *n != '\0' && k + 1 < sizeof env; ++n)
      env[k++] = (*n >= 'a' && *n <= 'z') ? static_cast<char>(*n - 'a' + 'A') : *n;
    env[k] = '\0';
    const char* v = env_value(environment, env);
    if (v == nullptr || v[0] == '\0') continue;  // set but empty: as unset
    size_t n = 0;
    while (v[n] != '\0') ++n;
    apply(static_cast<Id>(i), env, v, n, v, n);
  }
}

}  // namespace

unsigned find(const char* name, size_t len) {
  for (unsigned i = 0; i < kNumOptions; ++i)
    if (equals(name, len, kOptions[i].name)) return i;
  return kNumOptions;
}

namespace {
// g_load_state while a thread of this process reads the options (pids are
// below 2^22, so the mark fits an int; odd, so it is neither 0 nor 2).
int loading_mark() { return (static_cast<int>(getpid()) << 2) | 1; }
}  // namespace

void load(char* const* envp) {
  // While a thread reads them the state is its process's loading_mark(). A
  // fork() by another thread meanwhile (a libmagslab.so being dlopen()ed,
  // whose constructor reads them, in a process whose other threads fork)
  // leaves the parent's mark in the child, where no thread will finish: the
  // child reads them itself (stop 51: with a plain "being read" value the
  // child's first allocation waited for ever). getpid() is a system call;
  // load() runs until the options are read, once or twice a process.
  const int mine = loading_mark();
  int state = 0;
  // acquire on failure: a finished load's values are visible to the caller.
  while (!g_load_state.compare_exchange_strong(state, mine, std::memory_order_acquire,
                                               std::memory_order_acquire)) {
    if (state == 2) return;
    if (state == mine) {
      // Another thread of this process is reading them (microseconds, no
      // allocation): wait.
      while (state == mine) {
        __builtin_ia32_pause();
        // acquire: as above.
        state = g_load_state.load(std::memory_order_acquire);
      }
      return;
    }
    // Another process's mark (0 cannot fail the exchange): the next exchange
    // takes it over from `state`.
  }
  // The C library's environment, or before the C library has set it up (the
  // library's constructor runs first: -z initfirst) the one the loader passed
  // to that constructor.
  char* const* environment = environ != nullptr ? environ : envp;
  if (environment == nullptr) {
    // Too early (an allocation inside the dynamic loader): keep the defaults
    // for now and read the environment at the next call.
    // release: nothing was written; pairs with the waiters' acquire.
    g_load_state.store(0, std::memory_order_release);
    return;
  }
  // Secure execution (a setuid or setgid program, or one with file
  // capabilities, run by another user: AT_SECURE): no MAGSLAB_* variable is
  // read, as glibc reads no MALLOC_* one there. They would let the caller make
  // the program create or truncate a file of its choosing with the program's
  // rights (stats_file), or print its heap's addresses (verbose, show_stats).
  // Nothing here is a cancellation point (the NUMA probe's file calls are the
  // system calls themselves: numa.cc): until stop 41 a dlopen() by a thread
  // with a cancel pending was cancelled in the probe, under glibc's loader
  // lock, and the state stayed 1 for good.
  if (getauxval(AT_SECURE) == 0) read_environment(environment);
  // A stats_file alone means a text report (docs/options.md): say so where
  // the option is read back (magslab_option_get, the report's "options").
  // relaxed: see get().
  if (get(kStatsFile) != 0 && get(kShowStats) == 0)
    g_values[kShowStats].store(1, std::memory_order_relaxed);
  numa::init();  // the node pools, as MAGSLAB_NUMA says, before the first allocation is served
  // release: every value stored above is visible to a thread that sees 2.
  g_load_state.store(2, std::memory_order_release);
}

void mark_loading_for_testing() {
  // release: as load()'s own stores of the state.
  g_load_state.store(loading_mark(), std::memory_order_release);
}

void reset_for_testing() {
  for (unsigned i = 0; i < kNumOptions; ++i) {
    g_paths[i][0] = '\0';
    // relaxed: a test calls this with no other thread using magslab's options.
    g_values[i].store(kOptions[i].def, std::memory_order_relaxed);
  }
  // release: the defaults above are visible to the next load().
  g_load_state.store(0, std::memory_order_release);
}

int set(Id id, uint64_t value) {
  const Option& o = kOptions[id];
  if (!o.runtime || o.kind == Kind::kPath) return EPERM;
  if (value < o.min || value > o.max) return ERANGE;
  // relaxed: see get().
  g_values[id].store(value, std::memory_order_relaxed);
  return 0;
}

const char* path(Id id) { return g_paths[id]; }

size_t format_value(Id id, char* out, size_t cap) {
  const Option& o = kOptions[id];
  size_t n = 0;
  auto put = [&](const char* s) {
    while (*s != '\0' && n + 1 < cap) out[n++] = *s++;
  };
  put(o.name);
  put("=");
  uint64_t v = get(id);
  if (o.kind == Kind::kPath) {
    put(g_paths[id]);
  } else if (o.kind == Kind::kChoice) {
    const char* w = o.choices;
    for (uint64_t i = 0; i < v && *w != '\0'; ++w)
      if (*w == '|') ++i;
    while (*w != '\0' && *w != '|' && n + 1 < cap) out[n++] = *w++;
  } else {
    LineBuf l;
    l.num(v);
    for (size_t i = 0; i < l.size() && n + 1 < cap; ++i) out[n++] = l.data()[i];
  }
  if (cap != 0) out[n] = '\0';
  return n;
}

}  // namespace magslab::opt
