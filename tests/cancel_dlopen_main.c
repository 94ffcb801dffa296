// dlopen() of libmagslab.so (argv[1]) by a thread with a cancel pending (deferred):
// the library's constructor runs under glibc's loader lock, and until stop 41 the
// options' NUMA probe in it (open, read: cancellation points) cancelled the thread
// there — the lock stayed held, and the main thread's dlopen() below waited for ever
// (ctest dlopen_in_a_thread_with_a_cancel_pending; SIGALRM after 20 s). Now the
// constructor keeps cancellation off, and the thread is cancelled at its next
// cancellation point after dlopen() returned.
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static const char* g_lib;
static volatile int g_reached;

static void* worker(void* arg) {
  (void)arg;
  pthread_cancel(pthread_self());  // pending: dlopen() is no cancellation point
  void* h = dlopen(g_lib, RTLD_NOW | RTLD_LOCAL);
  g_reached = h != NULL ? 1 : 2;
  pthread_testcancel();
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  g_lib = argv[1];
  alarm(20);
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) return 1;
  void* res = NULL;
  pthread_join(t, &res);
  if (g_reached != 1) {
    printf("FAIL the thread was cancelled inside dlopen (%d)\n", g_reached);
    return 1;
  }
  void* h = dlopen(g_lib, RTLD_NOW | RTLD_LOCAL);
  void* (*m)(size_t) = h != NULL ? (void* (*)(size_t))dlsym(h, "magslab_malloc") : NULL;
  void* p = m != NULL ? m(100) : NULL;
  if (p == NULL) {
    printf("FAIL dlopen or magslab_malloc in the main thread\n");
    return 1;
  }
  printf("OK %s\n", res == PTHREAD_CANCELED ? "cancelled after dlopen" : "not cancelled");
  return 0;
}
