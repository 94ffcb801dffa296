// Compiled with -fno-rtti (tests/cxx_modules/cxx_modules.h): a resource whose
// class has no type information, and nothing but its vtable pointer.
#include "cxx_modules.h"

namespace {
class Plain final : public std::pmr::memory_resource {
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    return ::operator new(bytes, std::align_val_t(align));
  }
  void do_deallocate(void* p, std::size_t, std::size_t align) override {
    ::operator delete(p, std::align_val_t(align));
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
};
}  // namespace

std::pmr::memory_resource* nortti_resource() {
  static Plain r;
  return &r;
}
