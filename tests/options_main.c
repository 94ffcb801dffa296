/* options_main: options read from the environment take effect the same way
 * whether magslab is linked (libmagslab.so, libmagslab.a) or preloaded
 * (libmagslab-override.so; built with OPTIONS_VIA_MALLOC, it calls malloc and
 * finds the stats through dlsym), and before the first allocation is served.
 *
 * Blocks of 1700 B (class 1792: 18 objects per magazine by default) are
 * allocated one by one; a slab refill shows as the class's cached count going
 * up, by the refill less the one handed out. Refills start small and double up
 * to the magazine's capacity (slow start, lib/small/thread_cache.cc), so the
 * largest one shows the capacity in effect. Prints "refill=<largest refill>
 * max_cached=<most free objects cached in any class> free_chunks=<value>".
 * With MAGSLAB_MAG_MAX=8, refill=8 and no class may hold more than three
 * magazines of 8 (loaded, previous, remote): had any magazine been made before
 * the options were read, it would hold up to 256. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <stdio.h>
#include <stdlib.h>

#include "magslab/magslab.h"

#ifdef OPTIONS_VIA_MALLOC
#include <dlfcn.h>
#define ALLOC malloc
#else
#define ALLOC magslab_malloc
#endif

int main(void) {
#ifdef OPTIONS_VIA_MALLOC
  /* Not linked with magslab (not even at -O0): found in the preloaded override. */
  size_t (*stats_get)(struct magslab_stats*, size_t) =
      (size_t(*)(struct magslab_stats*, size_t))dlsym(RTLD_DEFAULT, "magslab_stats_get");
  int (*option_get)(const char*, size_t*) =
      (int (*)(const char*, size_t*))dlsym(RTLD_DEFAULT, "magslab_option_get");
  if (stats_get == NULL || option_get == NULL) {
    printf("magslab is not loaded\n");
    return 1;
  }
#else
  size_t (*stats_get)(struct magslab_stats*, size_t) = magslab_stats_get;
  int (*option_get)(const char*, size_t*) = magslab_option_get;
#endif
  static struct magslab_stats st;
  size_t cached = 0, refill = 0;
  for (int i = 0; i < 64; ++i) { /* 1 + 2 + 4 + 8 + 16 + 18 < 64 */
    void* volatile p = ALLOC(1700);
    if (p == NULL) return 1;
    stats_get(&st, sizeof st);
    for (size_t c = 0; c < st.class_count; ++c) {
      if (st.classes[c].object_size != 1792) continue;
      size_t now = st.classes[c].cached_objects;
      if (now >= cached && now + 1 > refill) refill = now + 1; /* this one refilled */
      cached = now;
    }
  }
  size_t max_cached = 0;
  for (size_t c = 0; c < st.class_count; ++c)
    if (st.classes[c].cached_objects > max_cached) max_cached = st.classes[c].cached_objects;
  size_t free_chunks = 0;
  option_get("free_chunks", &free_chunks);
  printf("refill=%zu max_cached=%zu free_chunks=%zu\n", refill, max_cached, free_chunks);
  return 0;
}
