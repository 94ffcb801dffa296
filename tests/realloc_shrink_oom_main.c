// A realloc that shrinks a block succeeds when no memory is left for a new
// one: the block stays where it is, as glibc's does (C allows a failure, but
// programs rarely check a shrink). Run preloaded under an address-space limit
// (CMakeLists.txt): the heap is filled with blocks from 64 MiB down to 8 B,
// and of the new sizes, until none more can be had, then a small, a large and
// two huge blocks made before are each shrunk to a size of another class. Until stop 43 (a bug
// hunt) every one of these returned NULL with ENOMEM. Prints "OK" on success.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILL 4000000
static void* fill[MAX_FILL];

struct Case {
  size_t from, to;
  char* p;
};

int main(void) {
  struct Case cases[] = {
      {1000, 10, NULL}, {500000, 1000, NULL}, {3000000, 100000, NULL}, {3000000, 8, NULL}};
  const size_t ncases = sizeof cases / sizeof cases[0];
  for (size_t i = 0; i < ncases; ++i) {
    cases[i].p = malloc(cases[i].from);
    if (cases[i].p == NULL) {
      printf("malloc(%zu) failed before the heap was full\n", cases[i].from);
      return 1;
    }
    memset(cases[i].p, 'a' + (int)i, cases[i].from);
  }
  size_t n = 0;
  for (size_t s = (size_t)64 << 20; s >= 8 && n < MAX_FILL; s /= 2) {
    while (n < MAX_FILL) {
      void* q = malloc(s);
      if (q == NULL) break;
      fill[n++] = q;
    }
  }
  for (size_t i = 0; i < ncases && n < MAX_FILL; ++i) {  // and the new sizes' classes
    while (n < MAX_FILL) {
      void* q = malloc(cases[i].to);
      if (q == NULL) break;
      fill[n++] = q;
    }
  }
  if (n == MAX_FILL) {
    printf("the heap did not fill up (%zu blocks): is the address-space limit set?\n", n);
    return 1;
  }
  // None left of the new sizes either (checked before any shrink, which may
  // give memory back).
  for (size_t i = 0; i < ncases; ++i) {
    void* probe = malloc(cases[i].to);
    if (probe != NULL) {
      printf("malloc(%zu) still succeeds: the heap is not full\n", cases[i].to);
      return 1;
    }
  }
  int bad = 0;
  for (size_t i = 0; i < ncases; ++i) {
    errno = 0;
    char* r = realloc(cases[i].p, cases[i].to);
    if (r == NULL) {
      printf("realloc(%zu -> %zu) with the heap full: NULL, errno %d\n", cases[i].from, cases[i].to,
             errno);
      bad = 1;
      continue;
    }
    int intact = 1;
    for (size_t k = 0; k < cases[i].to; ++k) intact &= r[k] == 'a' + (int)i;
    if (!intact || errno != 0) {
      printf("realloc(%zu -> %zu) with the heap full: contents %s, errno %d\n", cases[i].from,
             cases[i].to, intact ? "kept" : "changed", errno);
      bad = 1;
    }
    cases[i].p = r;
  }
  for (size_t k = 0; k < n; ++k) free(fill[k]);
  for (size_t i = 0; i < ncases; ++i) free(cases[i].p);
  if (!bad) printf("OK\n");
  return bad;
}
