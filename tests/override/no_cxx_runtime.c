/* Override test: a C program that preloads (or links) libmagslab-override.so
 * loads no C++ runtime. The library reaches libstdc++ only through dlsym
 * (lib/override/new_delete.cc), so `ls` or `sort` under magslab do not map
 * libstdc++, libm and libgcc_s (about 1.1 MiB of RSS). Exit 0: magslab is the
 * malloc in use and none of them is mapped. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  if (dlsym(RTLD_DEFAULT, "magslab_malloc") == NULL) {
    fprintf(stderr, "magslab is not loaded\n");
    return 2;
  }
  void* p = malloc(100);
  free(p);
  FILE* f = fopen("/proc/self/maps", "r");
  if (f == NULL) return 2;
  char line[4096];
  int bad = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    if (strstr(line, "libstdc++") != NULL || strstr(line, "libgcc_s") != NULL) {
      fprintf(stderr, "mapped: %s", line);
      bad = 1;
    }
  }
  fclose(f);
  if (!bad) printf("OK: no C++ runtime mapped\n");
  return bad;
}
