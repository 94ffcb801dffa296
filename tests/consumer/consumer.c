/* Smoke test for an installed magslab: allocate, write, check stats, free. */
#include <magslab/magslab.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  enum { kCount = 64 };
  void* blocks[kCount];
  for (int i = 0; i < kCount; ++i) {
    size_t size = (size_t)(i + 1) * 24;
    blocks[i] = magslab_malloc(size);
    if (blocks[i] == NULL) {
      fprintf(stderr, "consumer: magslab_malloc(%zu) returned NULL\n", size);
      return 1;
    }
    memset(blocks[i], i & 0xff, size);
  }

  struct magslab_stats stats;
  magslab_stats(&stats);
  if (stats.live_objects < (size_t)kCount) {
    fprintf(stderr, "consumer: stats report %zu live objects, expected >= %d\n", stats.live_objects,
            kCount);
    return 1;
  }
  printf("consumer: live_objects=%zu live_bytes=%zu mapped_bytes=%zu\n", stats.live_objects,
         stats.live_bytes, stats.mapped_bytes);

  for (int i = 0; i < kCount; ++i) {
    const unsigned char* p = (const unsigned char*)blocks[i];
    if (p[0] != (unsigned char)(i & 0xff)) {
      fprintf(stderr, "consumer: block %d corrupted\n", i);
      return 1;
    }
    magslab_free(blocks[i]);
  }

  magslab_stats(&stats);
  printf("consumer: after free live_objects=%zu\n", stats.live_objects);
  printf("consumer: OK (magslab %d.%d.%d)\n", MAGSLAB_VERSION_MAJOR, MAGSLAB_VERSION_MINOR,
         MAGSLAB_VERSION_PATCH);
  return 0;
}
