/* stress/selftest/shim_common.h: shared parts of the LD_PRELOAD shims that
 * wrap glibc's allocator (__libc_malloc & co.) for magslab-stress's
 * self-tests. Each shim defines SHIM_MALLOC / SHIM_FREE hooks or uses the
 * defaults; a small table maps "fake" pointers (blocks the shim must not hand
 * to glibc's free) to what to do with them. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern void* __libc_malloc(size_t);
extern void __libc_free(void*);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);

/* glibc's usable size without calling the interposed symbol: from the chunk
 * header (size field at p-8; bit 1 = mmapped, whose overhead is 16 not 8). */
static size_t glibc_usable(void* p) {
  if (p == NULL) return 0;
  size_t sz = ((size_t*)p)[-1];
  size_t chunk = sz & ~(size_t)7;
  return (sz & 2) ? chunk - 16 : chunk - 8;
}

/* Fake-pointer table: open addressing, spinlock, entries never removed
 * except by the owner of the fake pointer freeing it. */
#define FAKE_SLOTS 65536
struct fake {
  void* fake;
  void* real;
  size_t size;
};
static struct fake fakes[FAKE_SLOTS];
static atomic_flag fake_lock = ATOMIC_FLAG_INIT;
static atomic_int fake_count;

static void lock(void) {
  while (atomic_flag_test_and_set_explicit(&fake_lock, memory_order_acquire)) {
  }
}
static void unlock(void) { atomic_flag_clear_explicit(&fake_lock, memory_order_release); }
static size_t slot_of(void* p) { return (((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull) >> 48; }

/* real == NULL: the fake pointer must simply never reach glibc's free. */
__attribute__((unused)) static int fake_add(void* f, void* real, size_t size) {
  lock();
  size_t i = slot_of(f);
  for (size_t n = 0; n < FAKE_SLOTS; ++n, i = (i + 1) % FAKE_SLOTS) {
    if (fakes[i].fake == NULL || fakes[i].fake == (void*)1) {
      fakes[i].fake = f;
      fakes[i].real = real;
      fakes[i].size = size;
      atomic_fetch_add(&fake_count, 1);
      unlock();
      return 1;
    }
  }
  unlock();
  return 0;
}

/* Removes f if it is fake; returns 1 and fills *out then. */
static int fake_take(void* f, struct fake* out) {
  if (atomic_load_explicit(&fake_count, memory_order_relaxed) == 0 || f == NULL) return 0;
  lock();
  size_t i = slot_of(f);
  for (size_t n = 0; n < FAKE_SLOTS && fakes[i].fake != NULL; ++n, i = (i + 1) % FAKE_SLOTS) {
    if (fakes[i].fake == f) {
      *out = fakes[i];
      fakes[i].fake = (void*)1; /* tombstone */
      atomic_fetch_sub(&fake_count, 1);
      unlock();
      return 1;
    }
  }
  unlock();
  return 0;
}

static int fake_size(void* f, size_t* size) {
  if (atomic_load_explicit(&fake_count, memory_order_relaxed) == 0 || f == NULL) return 0;
  lock();
  size_t i = slot_of(f);
  for (size_t n = 0; n < FAKE_SLOTS && fakes[i].fake != NULL; ++n, i = (i + 1) % FAKE_SLOTS) {
    if (fakes[i].fake == f) {
      *size = fakes[i].size;
      unlock();
      return 1;
    }
  }
  unlock();
  return 0;
}

static __attribute__((unused)) atomic_ulong shim_calls;

#ifndef SHIM_MALLOC
#define SHIM_MALLOC(n) __libc_malloc(n)
#endif
#ifndef SHIM_ALIGNED
#define SHIM_ALIGNED(a, n) __libc_memalign(a, n)
#endif
#ifndef SHIM_ON_FREE
#define SHIM_ON_FREE(p) 0
#endif
#ifndef SHIM_USABLE
#define SHIM_USABLE(p, usable) (usable)
#endif

void* malloc(size_t n) { return SHIM_MALLOC(n); }

void free(void* p) {
  struct fake f;
  if (fake_take(p, &f)) {
    if (f.real != NULL) __libc_free(f.real);
    return;
  }
  if (SHIM_ON_FREE(p)) return;
  __libc_free(p);
}

/* The sized frees go through free() above: the harness calls the process's
 * free_sized where there is one (a C library from glibc 2.39 on has its own,
 * which must not see a fake pointer). */
void free_sized(void* p, size_t n) {
  (void)n;
  free(p);
}
void free_aligned_sized(void* p, size_t a, size_t n) {
  (void)a;
  (void)n;
  free(p);
}

void* calloc(size_t n, size_t m) { return __libc_calloc(n, m); }

size_t malloc_usable_size(void* p) {
  size_t s;
  if (fake_size(p, &s)) return s;
  return SHIM_USABLE(p, glibc_usable(p));
}

void* realloc(void* p, size_t n) {
  struct fake f;
  size_t s;
  if (p != NULL && fake_size(p, &s)) {
    void* q = __libc_malloc(n ? n : 1);
    if (q == NULL) return NULL;
    memcpy(q, p, s < n ? s : n);
    if (fake_take(p, &f) && f.real != NULL) __libc_free(f.real);
    return q;
  }
  return __libc_realloc(p, n);
}

void* memalign(size_t a, size_t n) { return SHIM_ALIGNED(a, n); }

void* aligned_alloc(size_t a, size_t n) {
  if (a == 0 || (a & (a - 1)) != 0) {
    errno = EINVAL;
    return NULL;
  }
  return SHIM_ALIGNED(a, n);
}

int posix_memalign(void** out, size_t a, size_t n) {
  if (a < sizeof(void*) || (a & (a - 1)) != 0) return EINVAL;
  void* p = SHIM_ALIGNED(a, n);
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

void* valloc(size_t n) { return __libc_memalign(4096, n); }
void* pvalloc(size_t n) { return __libc_memalign(4096, (n + 4095) & ~(size_t)4095); }
