// testing/sanitizers.h: which sanitizer this translation unit is built with
// (g++ or clang), so tests and the stress harness can scale their work down.
//   MS_SANITIZED  ThreadSanitizer or AddressSanitizer
//   MS_TSAN       ThreadSanitizer only (it cannot run intercepted calls in a
//                 thread's last pthread-key destructor round: its own thread
//                 state is gone)
#pragma once

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define MS_SANITIZED 1
#endif
#if defined(__SANITIZE_THREAD__)
#define MS_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define MS_SANITIZED 1
#endif
#if __has_feature(thread_sanitizer)
#define MS_TSAN 1
#endif
#endif
