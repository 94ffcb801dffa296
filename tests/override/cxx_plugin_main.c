/* A C program (no C++ runtime of its own) dlopen()s a C++ plugin with
 * RTLD_LOCAL — as Python loads its extensions — whose operator new is the
 * override's (the preload is in the global scope). An impossible new in the
 * plugin must throw std::bad_alloc that the plugin catches, and a nothrow new
 * must call the plugin's new_handler, as on glibc (review, stop 31: the
 * override looked for the runtime only in the global scope, found none, never
 * called the handler and aborted instead of throwing).
 * Usage: cxx_plugin_main --expect=glibc|magslab <libcxx_plugin.so> */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  const char* expect = NULL;
  const char* path = NULL;
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--expect=", 9) == 0)
      expect = argv[i] + 9;
    else
      path = argv[i];
  }
  int magslab = dlsym(RTLD_DEFAULT, "magslab_malloc") != NULL;
  if (expect == NULL || path == NULL || magslab != (strcmp(expect, "magslab") == 0)) {
    fprintf(stderr, "usage: cxx_plugin_main --expect=glibc|magslab plugin.so (magslab %s)\n",
            magslab ? "present" : "absent");
    return 3;
  }
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    printf("dlopen: %s\n", dlerror());
    return 2;
  }
  int (*catches)(size_t) = (int (*)(size_t))dlsym(h, "plugin_catches");
  int (*handler_calls)(size_t) = (int (*)(size_t))dlsym(h, "plugin_handler_calls");
  if (catches == NULL || handler_calls == NULL) return 2;
  const size_t impossible = (size_t)1 << 50;
  printf("nothrow new with a new_handler: %d (11: called once, then nullptr)\n",
         handler_calls(impossible));
  fflush(stdout);
  printf("impossible new[] in the plugin: %s\n",
         catches(impossible) ? "std::bad_alloc caught" : "returned memory");
  return 0;
}
