/* dlopen() of the plugin named on the command line, by a program that does
 * not link magslab itself (so a plugin with libmagslab.a linked in uses its
 * own copy). Prints "dlopen ok". ctest
 * dlopen_static_plugin_whose_constructor_waits_for_a_thread: the plugin's
 * constructor starts a thread and joins it (tests/ctor_thread_plugin.c), and
 * the thread's first allocation is the plugin's copy's first. A first
 * version of stop 42's pin of such plugins (RTLD_NODELETE) ran there, in
 * that thread: its dladdr waited for the loader's lock, which the joining
 * constructor held, and dlopen() never returned (a review found it). */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  void* h = dlopen(argv[1], RTLD_NOW);
  printf("dlopen %s\n", h != NULL ? "ok" : dlerror());
  return h != NULL ? 0 : 1;
}
