// pthread_atfork handlers registered before libmagslab.so or
// libmagslab-check-api.so is dlopen()ed — so before the library registers its
// own — run after its prepare handler, which holds every lock of the heap, and
// before its parent and child handlers: here they allocate and free through
// the library (check mode: its free takes the thread's quarantine ring's lock,
// held for the fork too). Until stop 49 fork() never returned
// (tests/fork_handler_order_mt_test.cc is the same for a static link).
// Usage: fork_handler_dlopen_main <library>; prints OK.
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { kBlocks = 40 };
static void* (*lib_malloc)(size_t);
static void (*lib_free)(void*);
static void* kept[kBlocks];
static int armed;

static size_t size_of(int i) {
  if (i < kBlocks - 2) return 16 + 48 * (size_t)i;  // classes used before and new ones
  return i == kBlocks - 2 ? (size_t)300 << 10 : (size_t)9 << 20;  // a page run, a huge block
}

static void prepare(void) {
  if (!armed) return;
  for (int i = 0; i < kBlocks; ++i) {
    kept[i] = lib_malloc(size_of(i));
    if (kept[i] != NULL) memset(kept[i], 1, 16);
  }
}
static void release(void) {
  if (!armed) return;
  for (int i = 0; i < kBlocks; ++i) {
    lib_free(kept[i]);
    kept[i] = NULL;
  }
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  alarm(30);  // fork() that never returns ends the test here, not at CTest's timeout
  if (pthread_atfork(prepare, release, release) != 0) return 3;
  void* h = dlopen(argv[1], RTLD_NOW);
  if (h == NULL) {
    fprintf(stderr, "%s\n", dlerror());
    return 4;
  }
  lib_malloc = (void* (*)(size_t))dlsym(h, "magslab_malloc");
  lib_free = (void (*)(void*))dlsym(h, "magslab_free");
  if (lib_malloc == NULL || lib_free == NULL) return 5;
  for (int i = 0; i < 2000; ++i) lib_free(lib_malloc(size_of(i % 8)));  // a ring in use
  armed = 1;
  pid_t c = fork();
  if (c < 0) return 6;
  if (c == 0) _exit(kept[0] == NULL ? 0 : 1);  // the child handler freed them
  int st = 0;
  if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 7;
  for (int i = 0; i < kBlocks; ++i)
    if (kept[i] != NULL) return 8;
  puts("OK");
  return 0;
}
