/* magslab: a lock-free concurrent slab allocator — public C API.
 *
 * Every function is thread-safe. Edge behaviour follows glibc's malloc family
 * (see docs/design.md, "Behaviour at the edges"). Misuse that cannot be survived
 * (freeing a pointer magslab never handed out, a detected double free) writes one
 * line to stderr ("magslab: invalid free of 0x…" / "magslab: double free of 0x…")
 * and aborts. */
#ifndef MAGSLAB_MAGSLAB_H
#define MAGSLAB_MAGSLAB_H

#include <stddef.h>

#if defined(__GNUC__)
#define MAGSLAB_API __attribute__((visibility("default")))
#else
#define MAGSLAB_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MAGSLAB_VERSION_MAJOR 0
#define MAGSLAB_VERSION_MINOR 1
#define MAGSLAB_VERSION_PATCH 0

/* Upper bound on the number of slab size classes reported by magslab_stats. */
#define MAGSLAB_MAX_CLASSES 128

MAGSLAB_API void* magslab_malloc(size_t size);
MAGSLAB_API void* magslab_calloc(size_t count, size_t size);
MAGSLAB_API void* magslab_realloc(void* ptr, size_t size);
MAGSLAB_API void magslab_free(void* ptr);
/* Like magslab_free; size must be the size passed when the block was allocated
 * (or any size up to magslab_usable_size). */
MAGSLAB_API void magslab_free_sized(void* ptr, size_t size);
/* C17/C23: alignment must be a power of two (else NULL, errno = EINVAL). */
MAGSLAB_API void* magslab_aligned_alloc(size_t alignment, size_t size);
/* POSIX: alignment must be a power of two multiple of sizeof(void*), else EINVAL.
 * Returns 0 or an error number; *memptr is untouched on error. */
MAGSLAB_API int magslab_posix_memalign(void** memptr, size_t alignment, size_t size);
/* Bytes usable at ptr (>= the size requested); 0 for NULL. */
MAGSLAB_API size_t magslab_usable_size(const void* ptr);

struct magslab_class_stats {
  size_t object_size;    /* bytes per object of this class */
  size_t slab_size;      /* bytes per slab of this class */
  size_t live_objects;   /* handed out to the program and not yet freed */
  size_t cached_objects; /* free, held in magazines (thread caches and depot) */
  size_t slabs;          /* slabs of this class currently carved */
};

struct magslab_stats {
  size_t live_bytes;                 /* usable bytes of all blocks handed out, not freed */
  size_t live_objects;               /* number of such blocks */
  size_t live_large_requested_bytes; /* requested bytes of those (large_live_blocks) */
  size_t live_requested_bytes;       /* bytes the program asked for, over all live
                                        blocks. Exact when requested_bytes_exact is 1
                                        (built with MAGSLAB_EXACT_REQUESTED=ON); else
                                        small blocks count at their usable size and
                                        this is an upper bound. */
  size_t requested_bytes_exact;      /* 1 or 0, as above */
  size_t peak_in_use_bytes;          /* high-water mark of bytes taken out of slabs and
                                        page runs (live + cached in magazines) */
  size_t cached_bytes;               /* free bytes held in magazines, cached empty slabs
                                        and free page runs not purged yet: reusable
                                        without a syscall, given back by magslab_trim() */
  size_t mapped_bytes;               /* address space mapped from the OS for user memory */
  size_t committed_bytes;            /* of that, not decommitted (upper bound of RSS) */
  size_t metadata_bytes;             /* mapped for magslab's own metadata (never unmapped) */
  size_t large_live_blocks;          /* live blocks in no size class: above 1 MiB, or aligned
                                        beyond a page (page runs) */
  size_t huge_live_blocks;           /* of those, blocks in a mapping of their own */
  size_t class_count;                /* entries used in classes[] */
  struct magslab_class_stats classes[MAGSLAB_MAX_CLASSES];
};

/* Fills *out. Exact when no thread is allocating or freeing. Never allocates. */
MAGSLAB_API void magslab_stats(struct magslab_stats* out);

/* Gives cached memory back to the OS now: the calling thread's magazines, the
 * depot, empty slabs, the large-run cache and free chunks. Returns bytes
 * unmapped or decommitted. Other threads' private caches are not touched. */
MAGSLAB_API size_t magslab_trim(void);

/* magslab_trim() for the whole process: also the pages of unused slab
 * records, and every other thread flushes its magazines at its next
 * allocation or free that leaves its fast path (a thread that makes no more
 * calls keeps what its magazines hold: at most a few hundred KiB per size class
 * it used; see magslab_thread_idle). Returns bytes given back now. malloc_trim()
 * of the override calls it. Idle memory also goes back by itself within about
 * a second in a multithreaded process (docs/design.md, Decay). */
MAGSLAB_API size_t magslab_trim_all(void);

/* For a thread about to sleep (a pool's worker): its magazines go to the shared
 * depot (where other threads reuse them, and decay returns what nobody does)
 * or to the slabs. The thread may allocate again at any time. */
MAGSLAB_API void magslab_thread_idle(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MAGSLAB_MAGSLAB_H */
