/* Override test: cfree, glibc's obsolete free. glibc 2.26 took it out of its
 * headers but keeps it as a compatibility symbol (cfree@GLIBC_2.2.5), which
 * programs and libraries linked against an older glibc still call; this
 * program references it as they do. Under the override, cfree of a magslab
 * block reached glibc's free, which aborted ("free(): invalid pointer") until
 * stop 52's bug hunt. Usage: cfree --expect=glibc|magslab; the transcript is
 * compared with glibc's (compare.sh). */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__asm__(".symver cfree,cfree@GLIBC_2.2.5");
void cfree(void* p);

int main(int argc, char** argv) {
  int expect_magslab = argc > 1 && strcmp(argv[1], "--expect=magslab") == 0;
  if ((dlsym(RTLD_DEFAULT, "magslab_malloc") != NULL) != expect_magslab) {
    fprintf(stderr, "magslab %s, expected otherwise\n", expect_magslab ? "absent" : "loaded");
    return 2;
  }
  size_t sizes[] = {0, 1, 24, 100, 1000, 5000, 70000, 2 << 20, 9 << 20};
  int n = 0;
  for (int round = 0; round < 3; ++round)
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; ++i) {
      char* p = malloc(sizes[i]);
      if (p == NULL) return 1;
      memset(p, 1, sizes[i]);
      cfree(p);
      p = calloc(1, sizes[i]);
      if (p == NULL) return 1;
      cfree(p);
      void* a = memalign(4096, sizes[i]);
      if (a == NULL) return 1;
      cfree(a);
      n += 3;
    }
  cfree(NULL);
  char* s = strdup("a string of the C library's");
  cfree(s);
  printf("cfree: %d blocks and NULL freed\n", n + 1);
  return 0;
}
