// tests/sanitized.h: MS_SANITIZED is defined when building under ThreadSanitizer
// or AddressSanitizer (g++ or clang), so tests can scale their counts down.
#pragma once

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define MS_SANITIZED 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define MS_SANITIZED 1
#endif
#endif

// MS_TSAN: ThreadSanitizer only (it cannot run intercepted calls in a
// thread's last pthread-key destructor round: its own thread state is gone).
#if defined(__SANITIZE_THREAD__)
#define MS_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MS_TSAN 1
#endif
#endif
