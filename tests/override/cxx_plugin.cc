// A C++ plugin (tests/override/cxx_plugin_main.c dlopen()s it with RTLD_LOCAL
// into a C program): its libstdc++ is in the plugin's local scope only, not in
// the global one the preloaded override searches for the C++ runtime.
#include <cstddef>
#include <new>

namespace {
int g_calls = 0;
void handler() {
  ++g_calls;
  std::set_new_handler(nullptr);
}
void* volatile g_sink;
}  // namespace

// 1 when an impossible array new threw std::bad_alloc and was caught here.
extern "C" int plugin_catches(std::size_t n) {
  try {
    g_sink = ::operator new[](n);
    ::operator delete[](g_sink);
    return 0;
  } catch (const std::bad_alloc&) {
    return 1;
  }
}

// The new_handler's calls (it uninstalls itself) times 10, plus 1 when the
// nothrow new then returned nullptr.
extern "C" int plugin_handler_calls(std::size_t n) {
  g_calls = 0;
  std::set_new_handler(handler);
  void* p = ::operator new(n, std::nothrow);
  std::set_new_handler(nullptr);
  return g_calls * 10 + (p == nullptr);
}
