// A program run under a small data or address-space limit (`ulimit -d`, `ulimit -v`: CMake's
// ctests small_limit_*), magslab preloaded: small, large and huge blocks, a realloc across the
// three, and a thread that allocates. glibc runs it under `ulimit -d 16384` or `ulimit -v 65536`;
// before stop 41 a 64 MiB page-map leaf, mapped at the first allocation, made every allocation
// fail under `ulimit -d 65536` or `ulimit -v 65536` (chunks/chunk_map.h); now it runs under
// 38-40 MiB of either.
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char* what, size_t n) {
  printf("FAIL %s of %zu bytes: errno %d\n", what, n, errno);
  return 1;
}

static int churn(void) {
  enum { kSmall = 4096 };
  static void* v[kSmall];
  for (int i = 0; i < kSmall; ++i) {
    size_t n = 16 + (size_t)(i % 64) * 24;
    v[i] = malloc(n);
    if (v[i] == NULL) return fail("malloc", n);
    memset(v[i], i & 0xff, n);
  }
  for (int i = 0; i < kSmall; ++i) free(v[i]);
  const size_t sizes[] = {40u << 10, 300u << 10, 1u << 20, 6u << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; ++k) {
    char* p = malloc(sizes[k]);
    if (p == NULL) return fail("malloc", sizes[k]);
    memset(p, 0x5a, sizes[k]);
    free(p);
  }
  char* r = malloc(100);
  if (r == NULL) return fail("malloc", 100);
  memset(r, 7, 100);
  const size_t grow[] = {5000, 200u << 10, 5u << 20, 60};
  for (size_t k = 0; k < sizeof grow / sizeof grow[0]; ++k) {
    char* q = realloc(r, grow[k]);
    if (q == NULL) return fail("realloc", grow[k]);
    r = q;
    if (r[0] != 7 || r[59] != 7) return fail("realloc kept the contents", grow[k]);
  }
  free(r);
  return 0;
}

static void* worker(void* arg) {
  (void)arg;
  return (void*)(size_t)churn();
}

int main(void) {
  if (churn() != 0) return 1;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, (size_t)1 << 20);
  pthread_t t;
  int rc = pthread_create(&t, &attr, worker, NULL);
  if (rc != 0) {
    printf("FAIL pthread_create: %s\n", strerror(rc));
    return 1;
  }
  void* res = NULL;
  pthread_join(t, &res);
  if (res != NULL) return 1;
  puts("OK");
  return 0;
}
