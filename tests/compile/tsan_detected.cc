// Compiled (never run) by the tests sanitizer_macro_{gcc,clang}{,_tsan}
// (CMakeLists.txt): base/config.h's MAGSLAB_TSAN must say whether the
// translation unit is built with ThreadSanitizer, under g++ (which defines
// __SANITIZE_THREAD__) and under clang++ (which only answers
// __has_feature(thread_sanitizer)). The lock-free code that tells TSan what it
// cannot see (ds/tagged_stack.h, chunks/decay_event.h) keys on it: under
// clang's TSan it once took the uninstrumented path, whose 16-byte atomics
// the TSan runtime serialises under a lock it does not take across fork().
#include "base/config.h"

#if !defined(EXPECT_TSAN)
#error "compile with -DEXPECT_TSAN=0 or 1"
#endif
static_assert(MAGSLAB_TSAN == EXPECT_TSAN, "MAGSLAB_TSAN does not match the -fsanitize flags");
