// testing/args.h: whole-string number parsing for the command-line tools
// (bench/macro, bench/latency): "1x", "", "-3" where not allowed, NaN and
// overflow are errors, so a malformed value is a usage error, not a silent 1.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>

namespace mstest {

// lo <= value <= hi.
inline bool parse_long(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// lo <= value <= hi (NaN fails both).
inline bool parse_double(const char* s, double lo, double hi, double* out) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

// An unsigned 64-bit number, decimal or 0x-hex (a seed); no sign allowed.
inline bool parse_u64(const char* s, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 0);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-') return false;
  *out = v;
  return true;
}

}  // namespace mstest
