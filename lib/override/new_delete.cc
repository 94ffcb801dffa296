// override/new_delete: every C++ operator new/delete form over the magslab API.
// new loops on the new_handler and throws std::bad_alloc when there is none;
// the nothrow forms return nullptr.
#include <new>

#include "magslab/magslab.h"

namespace {

void* alloc_or_handle(std::size_t n, std::size_t align) {
  for (;;) {
    void* p = align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__ ? magslab_malloc(n)
                                                        : magslab_aligned_alloc(align, n);
    if (p != nullptr) return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr) return nullptr;
    h();  // may free memory, throw, or abort
  }
}

void* new_or_throw(std::size_t n, std::size_t align) {
  void* p = alloc_or_handle(n, align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* new_nothrow(std::size_t n, std::size_t align) noexcept {
  try {
    return alloc_or_handle(n, align);
  } catch (...) {  // a new_handler may throw
    return nullptr;
  }
}

}  // namespace

#define MAGSLAB_EXPORT __attribute__((visibility("default")))

MAGSLAB_EXPORT void* operator new(std::size_t n) { return new_or_throw(n, 1); }
MAGSLAB_EXPORT void* operator new[](std::size_t n) { return new_or_throw(n, 1); }
MAGSLAB_EXPORT void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return new_nothrow(n, 1);
}
MAGSLAB_EXPORT void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return new_nothrow(n, 1);
}
MAGSLAB_EXPORT void* operator new(std::size_t n, std::align_val_t a) {
  return new_or_throw(n, static_cast<std::size_t>(a));
}
MAGSLAB_EXPORT void* operator new[](std::size_t n, std::align_val_t a) {
  return new_or_throw(n, static_cast<std::size_t>(a));
}
MAGSLAB_EXPORT void* operator new(std::size_t n, std::align_val_t a,
                                  const std::nothrow_t&) noexcept {
  return new_nothrow(n, static_cast<std::size_t>(a));
}
MAGSLAB_EXPORT void* operator new[](std::size_t n, std::align_val_t a,
                                    const std::nothrow_t&) noexcept {
  return new_nothrow(n, static_cast<std::size_t>(a));
}

MAGSLAB_EXPORT void operator delete(void* p) noexcept { magslab_free(p); }
MAGSLAB_EXPORT void operator delete[](void* p) noexcept { magslab_free(p); }
MAGSLAB_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { magslab_free(p); }
MAGSLAB_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { magslab_free(p); }
MAGSLAB_EXPORT void operator delete(void* p, std::size_t n) noexcept { magslab_free_sized(p, n); }
MAGSLAB_EXPORT void operator delete[](void* p, std::size_t n) noexcept { magslab_free_sized(p, n); }
MAGSLAB_EXPORT void operator delete(void* p, std::align_val_t) noexcept { magslab_free(p); }
MAGSLAB_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { magslab_free(p); }
MAGSLAB_EXPORT void operator delete(void* p, std::size_t n, std::align_val_t) noexcept {
  magslab_free_sized(p, n);
}
MAGSLAB_EXPORT void operator delete[](void* p, std::size_t n, std::align_val_t) noexcept {
  magslab_free_sized(p, n);
}
MAGSLAB_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  magslab_free(p);
}
MAGSLAB_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  magslab_free(p);
}
