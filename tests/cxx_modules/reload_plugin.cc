// A plugin built with -fvisibility=hidden over libmagslab.so, which
// tests/cxx_modules/reload_main.cc loads and unloads again and again.
#include <memory_resource>
#include <stdexcept>

#include "magslab/magslab.hpp"

#define PLUGIN_API extern "C" __attribute__((visibility("default")))

PLUGIN_API std::pmr::memory_resource* plugin_resource() { return magslab::pmr::resource(); }

namespace {
// An exception type of the plugin's own: its code goes with the plugin.
struct PluginError : std::runtime_error {
  PluginError() : std::runtime_error("the plugin's T() failed") {}
};
struct Throws {
  Throws() { throw PluginError(); }
};
}  // namespace

// A C caller of magslab_cache_alloc on a cache whose T() throws: nobody waits
// for the exception. false: the allocation succeeded.
PLUGIN_API bool plugin_c_caller() {
  magslab::ObjectCache<Throws> cache("plugin");
  return magslab_cache_alloc(cache.native_handle()) == nullptr;
}
