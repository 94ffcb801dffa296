/* A program that dlopen()s libmagslab.so, allocates in a thread, dlclose()s
 * the library while that thread is alive, then lets the thread exit. The
 * thread's exit runs magslab's pthread-key destructor: if dlclose had unmapped
 * the library, glibc would call into unmapped code (SIGSEGV, issue #12's
 * dlclose transition). libmagslab.so is linked with -z nodelete, so dlclose
 * leaves it mapped (blocks it handed out may still be in use anyway).
 *
 * Usage: dlclose_main <path/to/libmagslab.so>; prints OK and exits 0. */
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>

static sem_t g_allocated, g_closed;
static void* (*g_malloc)(size_t);
static void (*g_free)(void*);
static void* g_kept;

static void* body(void* arg) {
  (void)arg;
  for (int i = 0; i < 100; ++i) g_free(g_malloc(16 + (size_t)i * 24));
  g_kept = g_malloc(200);
  memset(g_kept, 7, 200);
  sem_post(&g_allocated);
  sem_wait(&g_closed);
  return NULL; /* thread exit: magslab's destructor runs now */
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  g_malloc = (void* (*)(size_t))dlsym(h, "magslab_malloc");
  g_free = (void (*)(void*))dlsym(h, "magslab_free");
  if (g_malloc == NULL || g_free == NULL) return 2;
  sem_init(&g_allocated, 0, 0);
  sem_init(&g_closed, 0, 0);
  pthread_t t;
  if (pthread_create(&t, NULL, body, NULL) != 0) return 2;
  sem_wait(&g_allocated);
  if (dlclose(h) != 0) return 2;
  sem_post(&g_closed);
  pthread_join(t, NULL);
  printf("OK\n");
  return 0;
}
