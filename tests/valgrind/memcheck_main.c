/* memcheck_main: Valgrind's memcheck understands magslab's blocks (issue #15,
 * lib/platform/valgrind.h). Run under `valgrind --leak-check=full`; the mode
 * picks one misuse, which memcheck must report in its own words (the CTest
 * checks the line), or none ("clean": no error at all, no leak).
 *
 * Linked with libmagslab-check-api.so (magslab::check) and calling the
 * magslab_* API, or (OVERRIDE) calling malloc with libmagslab-check.so
 * preloaded: the check variants always carry the client requests. Preloaded,
 * valgrind needs --soname-synonyms=somalloc=nouserintercepts, or memcheck
 * replaces magslab's malloc with its own (clean mode checks it did not).
 *
 * Usage: memcheck_main clean|clean-exit|uninit|overflow|overflow-large|use-after-free|
 *                      realloc-stale|double-free|leak|usable */
#define _GNU_SOURCE /* RTLD_DEFAULT, posix_memalign */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magslab/magslab.h"

#ifdef OVERRIDE
#define M(n) malloc(n)
#define F(p) free(p)
#define C(n, m) calloc(n, m)
#define R(p, n) realloc(p, n)
#define U(p) malloc_usable_size(p)
#define PM(out, a, n) posix_memalign(out, a, n)
#define TRIM() malloc_trim(0)
#include <malloc.h>
#else
#define M(n) magslab_malloc(n)
#define F(p) magslab_free(p)
#define C(n, m) magslab_calloc(n, m)
#define R(p, n) magslab_realloc(p, n)
#define U(p) magslab_usable_size(p)
#define PM(out, a, n) magslab_posix_memalign(out, a, n)
#define TRIM() magslab_trim()
#endif

/* Keeps the compiler from dropping the accesses under test (and from
 * seeing, at compile time, an index past the block). */
static volatile unsigned char sink;
static volatile size_t past_24 = 24, past_200000 = 200000;

/* trim: give the quarantine back before returning; without, the exit's
 * check of the quarantined blocks reads them (freed blocks to memcheck), which
 * memcheck reported as the program's invalid reads (found by a bug hunt). */
static int clean(int trim) {
  /* Small, large-class and huge blocks, every byte written and read back. */
  static const size_t sizes[] = {1, 24, 100, 4000, 70000, 300000, 3u << 20};
  void* keep[sizeof sizes / sizeof sizes[0]];
  unsigned sum = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    unsigned char* p = M(sizes[i]);
    if (p == NULL) return 1;
    memset(p, (int)i, sizes[i]);
    for (size_t k = 0; k < sizes[i]; k += 97) sum += p[k];
    keep[i] = p;
  }
  /* calloc's bytes are defined; realloc keeps the old ones, growing and shrinking. */
  unsigned char* z = C(1000, 3);
  if (z == NULL) return 1;
  for (size_t k = 0; k < 3000; ++k)
    if (z[k] != 0) return 1;
  char* s = M(10);
  if (s == NULL) return 1;
  strcpy(s, "magslab");
  for (size_t n = 20; n < 200000; n *= 3) {
    s = R(s, n);
    if (s == NULL || strcmp(s, "magslab") != 0) return 1;
  }
  s = R(s, 8);
  if (s == NULL || strcmp(s, "magslab") != 0) return 1;
  void* a = NULL;
  if (PM(&a, 4096, 5000) != 0) return 1;
  memset(a, 1, 5000);
  F(a);
  /* malloc(0): distinct pointers, freed like any block. */
  void* z0 = M(0);
  void* z1 = M(0);
  if (z0 == NULL || z1 == NULL || z0 == z1) return 1;
  F(z0);
  F(z1);
  /* The usable size is what memcheck lets the program touch. */
  unsigned char* u = M(20);
  size_t n = U(u);
  if (n < 20) return 1;
  memset(u, 2, n);
  F(u);
  F(s);
  F(z);
  /* magslab served these blocks, not memcheck's own malloc. */
  size_t (*stats_get)(struct magslab_stats*, size_t) =
      (size_t(*)(struct magslab_stats*, size_t))dlsym(RTLD_DEFAULT, "magslab_stats_get");
  static struct magslab_stats st;
  if (stats_get == NULL || stats_get(&st, sizeof st) == 0 || st.live_bytes < (3u << 20)) {
    printf("clean: the blocks are not magslab's\n");
    return 1;
  }
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) F(keep[i]);
  if (trim) TRIM();
  printf("clean: sum %u\n", sum);
  return 0;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "clean") == 0) return clean(1);
  if (strcmp(mode, "clean-exit") == 0) return clean(0);
  if (strcmp(mode, "uninit") == 0) {
    unsigned char* p = M(64);
    if (p[10] == 7) sink = 1; /* never written */
    F(p);
    return 0;
  }
  if (strcmp(mode, "overflow") == 0) {
    unsigned char* p = M(24); /* a class of 32: 8 bytes of slack */
    p[past_24] = 1;
    F(p);
    return 0;
  }
  if (strcmp(mode, "overflow-large") == 0) {
    unsigned char* p = M(200000);
    p[past_200000] = 1;
    F(p);
    return 0;
  }
  if (strcmp(mode, "use-after-free") == 0) {
    unsigned char* p = M(100);
    memset(p, 1, 100);
    F(p);
    sink = p[50];
    return 0;
  }
  if (strcmp(mode, "realloc-stale") == 0) {
    unsigned char* p = M(16);
    memset(p, 1, 16);
    unsigned char* q = R(p, 4000);
    sink = p[0]; /* the old block is gone */
    F(q);
    return 0;
  }
  if (strcmp(mode, "double-free") == 0) {
    void* p = M(48);
    F(p);
    F(p);
    return 0;
  }
  if (strcmp(mode, "leak") == 0) {
    void* volatile p = M(777);
    p = NULL;
    (void)p;
    return 0;
  }
  fprintf(stderr, "memcheck_main: unknown mode '%s'\n", mode);
  return 2;
}
