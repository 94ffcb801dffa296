/* cache_arena.c: the C counterparts — an object cache with a constructor and
 * destructor (magslab_cache_*) and an arena (magslab_arena_*).
 *
 * Build: cc -std=c11 cache_arena.c -lmagslab */
#include <magslab/magslab.h>

#include <stdio.h>
#include <string.h>

struct session {
  char key[32];
  int uses;
};

static long g_ctors, g_dtors;

static int session_ctor(void* obj, void* arg) {
  struct session* s = obj;
  (void)arg;
  memset(s->key, 0, sizeof s->key);
  s->uses = 0;
  ++g_ctors;
  return 0;
}

static void session_dtor(void* obj, void* arg) {
  (void)obj;
  (void)arg;
  ++g_dtors;
}

int main(void) {
  magslab_cache* cache =
      magslab_cache_create("sessions", sizeof(struct session), _Alignof(struct session),
                           session_ctor, session_dtor, NULL);
  if (cache == NULL) return 1;
  for (int i = 0; i < 100000; ++i) {
    struct session* s = magslab_cache_alloc(cache);
    if (s == NULL || s->uses != 0) return 1;
    magslab_cache_free(cache, s); /* returned in its constructed state */
  }
  struct magslab_cache_stats st;
  magslab_cache_stats(cache, &st);
  printf("cache: %zu constructor calls for 100000 allocations, %zu live\n", st.ctor_calls, st.live);
  printf("cache: reap freed %zu bytes\n", magslab_cache_reap(cache));
  if (magslab_cache_destroy(cache) != 0 || g_ctors != g_dtors) return 1;

  magslab_arena* arena = magslab_arena_create(1 << 16);
  if (arena == NULL) return 1;
  char* line = magslab_arena_alloc(arena, 80);
  double* values = magslab_arena_alloc_aligned(arena, 100 * sizeof(double), 64);
  if (line == NULL || values == NULL) return 1;
  printf("arena: %zu bytes remaining\n", magslab_arena_remaining(arena));
  if (magslab_arena_alloc(arena, 0) != NULL || magslab_arena_alloc_aligned(arena, 8, 12) != NULL)
    return 1;
  magslab_arena_reset(arena);
  printf("arena: %zu bytes remaining after reset\n", magslab_arena_remaining(arena));
  magslab_arena_destroy(arena);
  return 0;
}
