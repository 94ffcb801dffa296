// A plugin with libmagslab.a linked in (tests/static_plugin_host.c, ctest
// static_plugin_dlclosed_then_exit). Its one call allocates and frees, so its
// copy of magslab is set up and its exit destructor has something to do.
#include "magslab/magslab.h"

extern "C" int static_plugin_work() {
  void* p = magslab_malloc(100);
  const int ok = p != nullptr;
  magslab_free(p);
  return ok;
}
