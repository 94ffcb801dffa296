// platform/options: the MAGSLAB_* run-time options — one table, read from the
// environment once, before the first allocation is served, without allocating
// (docs/options.md). Every layer above reads a value with opt::get(opt::kName):
// a relaxed load of a word, no lock.
//
// Adding an option is one line of MAGSLAB_OPTION_TABLE below; its
// MAGSLAB_<NAME> variable, its MAGSLAB_OPTIONS entry, magslab_option_get/set,
// the MAGSLAB_VERBOSE table and the JSON stats follow from it. Then use it
// and document it in docs/options.md.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace magslab::opt {

// How a value is written and shown.
enum class Kind : uint8_t {
  kBytes,   // a count of bytes: digits with an optional k/K, m/M, g/G suffix (binary, "KiB" too)
  kCount,   // digits
  kMillis,  // milliseconds: digits, optionally "ms", or "s" for seconds
  kChoice,  // one of `choices` ("off|text|json"), or its index; the value is the index
  kPath,    // a file name (up to kMaxPath - 1 bytes); the value is 1 when set
};

inline constexpr uint64_t kKiB = 1024, kMiB = kKiB << 10, kGiB = kMiB << 10, kTiB = kGiB << 10;

// X(id, name, kind, default, min, max, runtime, choices, help)
//   id       the enum constant consumers use: opt::get(opt::kDirtyMax)
//   name     MAGSLAB_OPTIONS spelling; the variable is MAGSLAB_ + name in upper case
//   runtime  magslab_option_set may change it while the program runs (read at its every use);
//            false: fixed once the first allocation is served
// clang-format off
#define MAGSLAB_OPTION_TABLE(X)                                                                   \
  X(kDirtyMax, "dirty_max", kBytes, 64 * kMiB, 0, kTiB, true, nullptr,                            \
    "dirty free pages kept committed whatever their age; past it the oldest go (down to half)")  \
  X(kDecayMs, "decay_ms", kMillis, 500, 0, 86400000, true, nullptr,                               \
    "a dirty page run or an unused page of slab records untouched this long is decommitted")      \
  X(kBackgroundThread, "background_thread", kCount, 1, 0, 1, true, nullptr,                       \
    "1: a multithreaded process runs decay passes in a thread of its own (read when it would start); 0: slow paths do") \
  X(kThreadLargeBytes, "thread_large_bytes", kBytes, 512 * kKiB, 0, kTiB, true, nullptr,         \
    "bytes of other large classes' blocks one thread keeps in its magazines")                    \
  X(kStashBytes, "stash_bytes", kBytes, 8 * kMiB, 0, kTiB, true, nullptr,                         \
    "bytes of objects one thread keeps in full magazines of its own frees, for its own next misses") \
  X(kFreeChunks, "free_chunks", kCount, 2, 0, 4096, true, nullptr,                                \
    "fully free 4 MiB chunks kept mapped; more are unmapped")                                     \
  X(kDepotBytes, "depot_bytes", kBytes, 1 * kMiB, 0, kTiB, true, nullptr,                         \
    "objects per class the depot keeps in full magazines (at least 4 magazines, 8 for large classes; small classes' magazines at most an eighth of it in metadata)") \
  X(kMagBytes, "mag_bytes", kBytes, 32 * kKiB, 1 * kKiB, 1 * kMiB, false, nullptr,                \
    "bytes of objects per magazine of a small class (capacity = mag_bytes / size, at least 4)")   \
  X(kMagMax, "mag_max", kCount, 256, 4, 1024, false, nullptr,                                     \
    "most objects in one magazine of a small class")                                              \
  X(kHugeCacheEntries, "huge_cache_entries", kCount, 8, 0, 64, true, nullptr,                     \
    "freed huge mappings (above 1 MiB, or huge by alignment) kept for reuse")                     \
  X(kHugeCacheBytes, "huge_cache_bytes", kBytes, 32 * kMiB, 0, kTiB, true, nullptr,               \
    "bytes of freed huge mappings kept for reuse, in all")                                        \
  X(kHugeCacheBlock, "huge_cache_block", kBytes, 16 * kMiB, 0, kTiB, true, nullptr,               \
    "largest freed huge mapping kept; larger ones are unmapped at once")                          \
  X(kHugeCacheMs, "huge_cache_ms", kMillis, 1000, 0, 86400000, true, nullptr,                     \
    "a cached huge mapping unused this long is unmapped at the next huge free or decay pass")     \
  X(kHugePark, "huge_park", kCount, 1, 0, 1, true, nullptr,                                      \
    "1: a thread keeps the last huge block it freed for its next huge malloc of about that size") \
  X(kNuma, "numa", kChoice, 2, 0, 2, false, "off|on|auto",                                       \
    "per-NUMA-node chunks, slabs and depot, memory bound to its node (auto: on a machine of several nodes)") \
  X(kShowStats, "show_stats", kChoice, 0, 0, 2, false, "off|text|json",                           \
    "print statistics at exit (1 = text), to stderr or stats_file")                              \
  X(kStatsFile, "stats_file", kPath, 0, 0, 1, false, nullptr,                                     \
    "write the exit statistics to this file (created or truncated) instead of stderr")           \
  X(kVerbose, "verbose", kCount, 0, 0, 1, false, nullptr,                                         \
    "1: print the version and the options in effect to stderr at start")                        \
  X(kQuarantine, "quarantine", kBytes, 4 * kMiB, 0, kTiB, true, nullptr,                          \
    "check mode: bytes of freed blocks held back (filled, or inaccessible) before reuse")         \
  X(kFill, "fill", kCount, 1, 0, 1, true, nullptr,                                                \
    "check mode: 1 fills new blocks (not calloc's) with 0xbe bytes")                              \
  X(kLeakReport, "leak_report", kCount, 0, 0, 1, true, nullptr,                                   \
    "check mode: 1 prints at exit the blocks allocated since then still live, by allocation site")
// clang-format on

enum Id : unsigned {
#define MAGSLAB_OPTION_ID(id, ...) id,
  MAGSLAB_OPTION_TABLE(MAGSLAB_OPTION_ID)
#undef MAGSLAB_OPTION_ID
      kNumOptions
};

// Each option's upper bound, for code that sizes an array by it.
inline constexpr uint64_t kMaxOf[kNumOptions] = {
#define MAGSLAB_OPTION_MAX(id, name, kind, def, min, max, ...) max,
    MAGSLAB_OPTION_TABLE(MAGSLAB_OPTION_MAX)
#undef MAGSLAB_OPTION_MAX
};

struct Option {
  const char* name;
  Kind kind;
  uint64_t def, min, max;
  bool runtime;
  const char* choices;
  const char* help;
};

// The table, in MAGSLAB_OPTION_TABLE order.
extern const Option kOptions[kNumOptions];

// Current values; constant-initialised to the defaults, so they are valid even
// before load() (e.g. a static program's first allocation before its constructors).
extern std::atomic<uint64_t> g_values[kNumOptions];

// relaxed: each option is one independent word; a change made by
// magslab_option_set reaches the next use on any thread, and no memory is
// published through it.
inline uint64_t get(Id id) { return g_values[id].load(std::memory_order_relaxed); }

// Parse MAGSLAB_OPTIONS and every MAGSLAB_<NAME>, once (later calls return at
// once). Called by the slow paths that serve a process's first allocation and
// by the library's constructor, whichever comes first. Never allocates; a bad
// entry gets one line on stderr and keeps the default. Returns at once without
// marking the options read while the C library has no environment yet (an
// allocation inside the dynamic loader): the next call reads it. envp: the
// environment the loader passed to the library's constructor, read when the C
// library has not set its own yet (the constructor runs before the C
// library's: -z initfirst, api/fork.cc).
void load(char* const* envp = nullptr);
// 0 not read, 2 read; being read by a thread of process P: (P << 2) | 1.
extern std::atomic<int> g_load_state;
inline void ensure_loaded() {
  // acquire: pairs with load()'s release; the values it parsed are visible.
  if (__builtin_expect(g_load_state.load(std::memory_order_acquire) != 2, 0)) load();
}

// Tests only: every option back to its default and unread, so that the next
// load() parses the environment again.
void reset_for_testing();
// Tests only: the state as a thread of this process leaves it while it reads
// the options (as a fork() in that moment leaves it in the child).
void mark_loading_for_testing();

// The option called `name`, or kNumOptions.
unsigned find(const char* name, size_t len);

// Set option id to `value` (magslab_option_set). 0, or ERANGE (outside
// [min, max]) or EPERM (not a run-time option, or a path).
int set(Id id, uint64_t value);

// A kPath option's text ("" when unset).
const char* path(Id id);

// "name=value" of option id as MAGSLAB_OPTIONS would take it, NUL-terminated
// in out[0..cap). Returns its length.
size_t format_value(Id id, char* out, size_t cap);

}  // namespace magslab::opt
