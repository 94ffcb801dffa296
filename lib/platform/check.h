// platform/check: MAGSLAB_CHECK(cond, "what"), the invariant assertion of the
// debug preset (kDebugChecks, base/config.h). A broken invariant prints one
// line "magslab: invariant broken at <file>:<line>: <what>" and aborts; in
// other builds the condition is not even evaluated.
#pragma once

#include "base/config.h"

namespace magslab::platform {
[[noreturn]] void invariant_failed(const char* file, int line, const char* what);
}  // namespace magslab::platform

#define MAGSLAB_CHECK(cond, what)                                        \
  do {                                                                   \
    if constexpr (::magslab::kDebugChecks) {                             \
      if (MAGSLAB_UNLIKELY(!(cond)))                                     \
        ::magslab::platform::invariant_failed(__FILE__, __LINE__, what); \
    }                                                                    \
  } while (0)
