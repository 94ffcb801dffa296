/* Override test: a program with a malloc of its own — the set glibc's manual
 * says a replacement must define (malloc, free, calloc, realloc), from an
 * arena — under the override. glibc's reallocarray calls realloc through the
 * global scope, so here it reaches the program's; magslab's must too. Until
 * stop 52's bug hunt it served from magslab: its block reached the program's
 * free (or the program's block magslab's realloc, an invalid free).
 * Usage: own_malloc --expect=glibc|magslab; prints OK and exits 0. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA ((size_t)256 << 20)
static char* arena;
static size_t used;
/* volatile: glibc declares reallocarray a leaf (it does not call back into this
 * file), which is just what it does here. */
static volatile long reallocs;

static void die(const char* m) {
  ssize_t ignored = write(2, m, strlen(m));
  (void)ignored;
  abort();
}

/* Each block is preceded by 16 bytes holding its size. */
static void* bump(size_t n) {
  if (arena == NULL) {
    void* m = mmap(NULL, ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) die("own_malloc: mmap failed\n");
    arena = m;
  }
  if (n > ARENA || used + ((n + 31) & ~(size_t)15) > ARENA) {
    errno = ENOMEM;
    return NULL;
  }
  char* p = arena + used;
  used += (n + 31) & ~(size_t)15;
  *(size_t*)p = n;
  return p + 16;
}

static int ours(const void* p) { return (const char*)p >= arena && (const char*)p < arena + ARENA; }

void* malloc(size_t n) { return bump(n); }
void free(void* p) {
  if (p != NULL && !ours(p)) die("own_malloc: the program's free got a block it did not make\n");
}
void* calloc(size_t a, size_t b) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  void* p = bump(n);
  if (p != NULL) memset(p, 0, n);
  return p;
}
void* realloc(void* p, size_t n) {
  ++reallocs;
  if (p == NULL) return bump(n);
  if (!ours(p)) die("own_malloc: the program's realloc got a block it did not make\n");
  if (n == 0) {
    free(p);
    return NULL;
  }
  void* q = bump(n);
  if (q == NULL) return NULL;
  size_t old = *(size_t*)((char*)p - 16);
  memcpy(q, p, old < n ? old : n);
  free(p);
  return q;
}

int main(int argc, char** argv) {
  int expect_magslab = argc > 1 && strcmp(argv[1], "--expect=magslab") == 0;
  if ((dlsym(RTLD_DEFAULT, "magslab_malloc") != NULL) != expect_magslab) {
    fprintf(stderr, "magslab %s, expected otherwise\n", expect_magslab ? "absent" : "loaded");
    return 2;
  }
  long before = reallocs;
  int* a = reallocarray(NULL, 10, sizeof(int));
  if (a == NULL || !ours(a)) die("own_malloc: reallocarray(NULL, ...) did not call realloc\n");
  for (int i = 0; i < 10; ++i) a[i] = i;
  a = reallocarray(a, 1000, sizeof(int));
  if (a == NULL || !ours(a) || a[9] != 9) die("own_malloc: reallocarray(p, ...) went wrong\n");
  errno = 0;
  if (reallocarray(a, SIZE_MAX / 2, 4) != NULL || errno != ENOMEM)
    die("own_malloc: an overflowing reallocarray did not fail with ENOMEM\n");
  if (reallocarray(a, 0, 4) != NULL) die("own_malloc: reallocarray(p, 0, 4) did not free\n");
  /* (The loader's own reallocs, at load, count too: only these are counted.) */
  if (reallocs - before != 3) {
    fprintf(stderr, "own_malloc: realloc called %ld times, 3 expected\n", reallocs - before);
    return 1;
  }
  char* s = strdup("the C library's block");
  if (!ours(s)) die("own_malloc: strdup did not use the program's malloc\n");
  free(s);
  printf("OK\n");
  return 0;
}
