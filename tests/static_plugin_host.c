// A program that dlopen()s a plugin with libmagslab.a linked in
// (tests/static_plugin.cc), calls it, dlclose()s it and exits. The plugin's
// exit report once registered an exit handler for no shared object from its
// destructor, which dlclose() ran: exit() then jumped into the unmapped
// plugin (SIGSEGV; found by a review, stop 39). ctest
// static_plugin_dlclosed_then_exit: exit status 0.
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  int (*work)(void) = (int (*)(void))dlsym(h, "static_plugin_work");
  if (work == NULL || work() != 1) return 3;
  if (dlclose(h) != 0) return 4;
  return 0;
}
