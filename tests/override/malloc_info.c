/* malloc_info(0, stdout) after some traffic (blocks of many sizes, half freed,
 * a live huge block); malloc_info(1, …) must fail. Run preloaded and
 * on glibc by check_malloc_info.py, which parses both outputs with the same
 * schema checks (glibc's XML: <malloc><heap><sizes>…). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  static void* blocks[4000];
  for (int i = 0; i < 4000; ++i) blocks[i] = malloc((size_t)(16 + (i % 100) * 40));
  for (int i = 0; i < 4000; i += 2) free(blocks[i]);
  void* volatile huge = malloc(5 << 20);
  if (huge == NULL) return 1;
  fflush(stdout);
  if (malloc_info(0, stdout) != 0) return 1;
  if (malloc_info(1, stdout) == 0) return 2; /* glibc 2.36 returns EINVAL */
  return 0;
}
