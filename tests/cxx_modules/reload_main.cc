// A plugin (tests/cxx_modules/reload_plugin.cc) loaded and unloaded again and
// again, each time at another address (a page mapped where it was keeps the
// loader from reusing the range), as programs that reload plugins do. Each
// time its heap resource equals the program's; the heap forgets the class of
// a plugin unloaded, so that (a) 150 loads do not use up the classes it keeps
// (until a review of stop 47's first version every load kept one, and from the
// 64th on the resources compared unequal) and (b) the plugin loaded again in a
// namespace of its own (dlmopen: a libmagslab.so and a heap of its own) at an
// address it had before is not taken for the program's heap (it was: the
// program then freed the plugin's blocks into its own heap and aborted).
// Also: T()'s exception of a C caller in the plugin is not left behind for a
// throwing T() of the program after the plugin is gone (that crashed, calling
// the unloaded plugin's code to destroy it). Prints "OK".
#include <dlfcn.h>
#include <sys/mman.h>

#include <cstdio>
#include <memory_resource>
#include <stdexcept>
#include <string>

#include "magslab/magslab.hpp"

namespace {

int bad = 0;
using ResourceFn = std::pmr::memory_resource* (*)();

struct Throws {
  Throws() { throw std::runtime_error("the program's T() failed"); }
};

void* load(const char* path, Lmid_t ns, ResourceFn* fn, void** base) {
  void* h = ns == LM_ID_BASE ? dlopen(path, RTLD_NOW) : dlmopen(ns, path, RTLD_NOW);
  if (h == nullptr) {
    std::printf("cannot load %s: %s\n", path, dlerror());
    std::exit(2);
  }
  *fn = reinterpret_cast<ResourceFn>(dlsym(h, "plugin_resource"));
  Dl_info info;
  if (*fn == nullptr || dladdr(reinterpret_cast<void*>(*fn), &info) == 0) std::exit(2);
  *base = info.dli_fbase;
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  std::pmr::memory_resource* mine = magslab::pmr::resource();
  ResourceFn fn;
  void* base;
  void* first_base;

  // Loaded, its T()'s exception for a C caller, unloaded; then the program's.
  void* h = load(argv[1], LM_ID_BASE, &fn, &first_base);
  if (!(*mine == *fn()) || !(*fn() == *mine)) bad = 1;
  auto c_caller = reinterpret_cast<bool (*)()>(dlsym(h, "plugin_c_caller"));
  if (c_caller == nullptr || !c_caller()) bad = 1;
  if (magslab::detail::magslab_cxx_ctor_error_v1 != nullptr) {
    std::printf("the plugin's exception is left in the slot\n");
    bad = 1;
  }
  dlclose(h);
  {
    // The plugin's exception, had it been kept, is destroyed here with its code unloaded.
    magslab::ObjectCache<Throws> cache("program");
    try {
      cache.release(cache.acquire());
      bad = 1;
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()) != "the program's T() failed") bad = 1;
    }
  }

  // In a namespace of its own the plugin gets a heap of its own (the loader
  // puts it where the first load was).
  h = load(argv[1], LM_ID_NEWLM, &fn, &base);
  if (base != first_base)  // (glibc 2.36 on x86-64 puts it there; another loader may not)
    std::printf(
        "note: dlmopen put the plugin at %p, not where the first load was (%p): the "
        "class it left there was not put to the test\n",
        base, first_base);
  std::pmr::memory_resource* theirs = fn();
  if (*mine == *theirs || *theirs == *mine) {
    std::printf(
        "a plugin with a heap of its own (dlmopen, at %p; first load at %p) compares equal\n", base,
        first_base);
    bad = 1;
  }
  dlclose(h);

  for (int i = 0; i < 150; ++i) {
    h = load(argv[1], LM_ID_BASE, &fn, &base);
    theirs = fn();
    if (!(*mine == *theirs) || !(*theirs == *mine)) {
      std::printf("load %d at %p: the plugin's resource compares unequal\n", i, base);
      bad = 1;
      break;
    }
    dlclose(h);
    if (mmap(base, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) ==
        MAP_FAILED) {
      std::printf("cannot map a page where load %d was\n", i);
      return 2;
    }
  }
  if (!bad) std::printf("OK\n");
  return bad;
}
