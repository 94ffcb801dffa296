// A plugin with libmagslab.a linked in (tests/static_plugin_host.c, ctest
// static_plugin_dlclosed_then_exit; tests/static_plugin_worker_host.c). Its
// calls allocate and free, so its copy of magslab is set up and its exit
// destructor has something to do; static_plugin_work also goes through an
// object cache, whose thread-exit handler is one more of the plugin's.
#include "magslab/magslab.h"

extern "C" int static_plugin_work() {
  void* p = magslab_malloc(100);
  int ok = p != nullptr;
  magslab_free(p);
  static magslab_cache* cache =
      magslab_cache_create("static_plugin", 48, 0, nullptr, nullptr, nullptr);
  if (cache == nullptr) return 0;
  void* o = magslab_cache_alloc(cache);
  ok &= o != nullptr;
  if (o != nullptr) magslab_cache_free(cache, o);
  return ok;
}
