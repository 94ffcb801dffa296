/* A library with fork handlers of its own, registered from its constructor —
 * which the loader runs before magslab's unless magslab is initialised first
 * (-z initfirst, CMakeLists.txt). Its prepare handler takes its lock, and its
 * API allocates while holding that lock (a registry, a cache: common); its
 * child handler allocates. Used by tests/override/atfork_main.c. */
#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;
static int child_allocates;

static void prepare(void) { pthread_mutex_lock(&lib_lock); }
static void parent(void) { pthread_mutex_unlock(&lib_lock); }
static void child(void) {
  pthread_mutex_unlock(&lib_lock);
  if (child_allocates) {  // a huge block and a page run, while the child starts
    void* volatile a = malloc(3 << 20);
    void* volatile b = malloc(12000);
    free(a);
    free(b);
  }
}

__attribute__((constructor)) static void init(void) {
  child_allocates = getenv("ATFORK_CHILD_ALLOCATES") != NULL;
  pthread_atfork(prepare, parent, child);
}

void* atfork_lib_make(size_t n) {
  pthread_mutex_lock(&lib_lock);
  void* p = malloc(n);
  pthread_mutex_unlock(&lib_lock);
  return p;
}
