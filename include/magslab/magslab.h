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

/* The version of this header. 0.x: a new minor version may change the ABI
 * (the soname is libmagslab.so.0.MINOR, and the CMake package accepts only the
 * same 0.MINOR); a patch release never does. From 1.0 on, the major version. */
#define MAGSLAB_VERSION_MAJOR 0
#define MAGSLAB_VERSION_MINOR 2
#define MAGSLAB_VERSION_PATCH 0
#define MAGSLAB_VERSION \
  (MAGSLAB_VERSION_MAJOR * 10000 + MAGSLAB_VERSION_MINOR * 100 + MAGSLAB_VERSION_PATCH)

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

/* The version of the library in use, as MAGSLAB_VERSION (e.g. 200 for 0.2.0).
 * A program may compare it with the MAGSLAB_VERSION it was compiled with. */
MAGSLAB_API int magslab_version(void);

/* Per size class. The event counters (depot_gets onwards) count since the
 * process started; they are bumped only on slow paths (a depot trade, a trip
 * to the slabs under the class lock), never per malloc or free, and are exact
 * when no thread is allocating or freeing. docs/options.md explains how to
 * read them. */
struct magslab_class_stats {
  size_t object_size;     /* bytes per object of this class */
  size_t slab_size;       /* bytes per slab of this class */
  size_t live_objects;    /* handed out to the program and not yet freed */
  size_t cached_objects;  /* free, held in magazines (thread caches and depot) */
  size_t slabs;           /* slabs of this class currently carved */
  size_t depot_gets;      /* full magazines taken from the depot: allocation misses that
                             another thread's frees (or an exited thread) served */
  size_t depot_puts;      /* full magazines handed to the depot */
  size_t depot_overflows; /* full magazines the depot refused (at its per-class limit,
                             option depot_bytes): flushed to the slabs under the class lock */
  size_t remote_frees;    /* objects freed by a thread other than the one that last
                             refilled from their slab (they go to its remote magazine) */
  size_t slab_refills;    /* magazine refills from the slabs (class lock taken) */
  size_t slab_releases;   /* trips returning objects to the slabs (class lock taken):
                             depot overflows, trims, thread exits */
  size_t slabs_carved;    /* slabs carved from the page heap */
  size_t slabs_returned;  /* empty slabs given back to the page heap */
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
  /* Fields are only ever added here, at the end (magslab_stats_get). */
  size_t huge_live_bytes; /* bytes mapped for live huge blocks (their own mappings) */
  size_t thread_caches;   /* threads that own a cache now */
};

/* Fills the first `size` bytes of *out (pass sizeof *out) and returns how many
 * bytes it filled: min(size, the library's sizeof(struct magslab_stats)).
 * Bytes past that are zeroed, so a program built against a newer header reads
 * 0 in fields an older library does not know. Exact when no thread is
 * allocating or freeing. Never allocates. */
MAGSLAB_API size_t magslab_stats_get(struct magslab_stats* out, size_t size);
/* magslab_stats_get(out, sizeof *out). */
MAGSLAB_API void magslab_stats(struct magslab_stats* out);

#define MAGSLAB_STATS_TEXT 0
#define MAGSLAB_STATS_JSON 1
/* The statistics as one JSON object (schema in docs/options.md), as snprintf:
 * writes at most len - 1 bytes and a NUL (when len > 0) and returns the length
 * of the whole document, so a return >= len means it was cut. Never allocates. */
MAGSLAB_API size_t magslab_stats_json(char* buf, size_t len);
/* Writes the statistics to fd, as text (MAGSLAB_STATS_TEXT, the exit report)
 * or JSON (MAGSLAB_STATS_JSON, as magslab_stats_json). Returns 0, EINVAL for an
 * unknown format, or the errno of a failed write(2). Never allocates. */
MAGSLAB_API int magslab_stats_print(int fd, int format);

/* Run-time options (docs/options.md): read from MAGSLAB_OPTIONS and
 * MAGSLAB_<NAME> before the first allocation. magslab_option_get stores the
 * value of option `name` (e.g. "dirty_max") in *value: bytes, a count,
 * milliseconds, or the index of a choice. Returns 0, or ENOENT for an unknown
 * name. magslab_option_set changes an option that may change at run time
 * (docs/options.md says which); it applies from the option's next use.
 * Returns 0, ENOENT, ERANGE (outside its range) or EPERM (fixed at start). */
MAGSLAB_API int magslab_option_get(const char* name, size_t* value);
MAGSLAB_API int magslab_option_set(const char* name, size_t value);

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
