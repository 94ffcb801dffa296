/* dlopen() of a plugin whose constructor starts a thread and joins it, in a
 * process that allocated before: the thread's first allocation starts
 * magslab's decay thread while glibc holds its loader lock for the
 * constructor. A first version of stop 40's thread-count fix looked up
 * __nptl_nthreads with dlsym there, which waits for that lock: the plugin's
 * thread never ended and dlopen() never returned (a review found it). Prints
 * "dlopen ok". */
#include <dlfcn.h>
#include <stdio.h>

#include "magslab/magslab.h"

static void* volatile sink;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  sink = magslab_malloc(10);
  magslab_free(sink);
  void* h = dlopen(argv[1], RTLD_NOW);
  printf("dlopen %s\n", h != NULL ? "ok" : dlerror());
  return h != NULL ? 0 : 1;
}
