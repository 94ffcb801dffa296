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
/* magslab_stats and magslab_cache_stats each name a struct and a function, as
 * C allows: g++'s -Wshadow said that the function hides the struct's
 * constructor, an error in a program built with -Werror. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#endif
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
/* Like magslab_free; size must be the size passed when the block was allocated.
 * Release names only a size above the block's usable size (a small block's
 * class size; one line, then abort); check mode names any other size
 * (docs/check.md). */
MAGSLAB_API void magslab_free_sized(void* ptr, size_t size);
/* C17/C23: alignment must be a power of two (else NULL, errno = EINVAL). */
MAGSLAB_API void* magslab_aligned_alloc(size_t alignment, size_t size);
/* POSIX: alignment must be a power of two multiple of sizeof(void*), else EINVAL.
 * Returns 0 or an error number; *memptr is untouched on error. */
MAGSLAB_API int magslab_posix_memalign(void** memptr, size_t alignment, size_t size);
/* Bytes usable at ptr (>= the size requested; check mode, docs/check.md:
 * exactly the size requested); 0 for NULL. */
MAGSLAB_API size_t magslab_usable_size(const void* ptr);

/* The version of the library in use, as MAGSLAB_VERSION (e.g. 200 for 0.2.0).
 * A program may compare it with the MAGSLAB_VERSION it was compiled with. */
MAGSLAB_API int magslab_version(void);

/* Per size class. The event counters (depot_gets onwards) count since the
 * process started; they are bumped only on slow paths (a depot trade, a trip
 * to the slabs under the class lock), never per malloc or free, and are exact
 * when no thread is allocating or freeing (under traffic they may lag, but
 * never go back from one read to the next). docs/options.md explains how to
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
                                        without a syscall, given back by magslab_trim()
                                        — but other threads' magazines only by
                                        magslab_trim_all() or their own next calls */
  size_t mapped_bytes;               /* address space mapped from the OS for heap blocks
                                        (arenas' regions are mapped apart: not here) */
  size_t committed_bytes;            /* of that, not decommitted: an upper bound of RSS,
                                        unless transparent huge pages are "always" (the
                                        kernel may then back a whole 2 MiB region of a
                                        chunk or huge mapping at its first touch) */
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
 * allocating or freeing. Never allocates from the heap; a caller built with an
 * older, shorter struct gets its part of a copy the library maps for the call
 * (0 returned and *out zeroed if the OS refuses that page mapping). NULL:
 * nothing filled, 0 returned. */
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
 * unknown format, or the errno of a failed write(2). Never allocates. As
 * write(2), to a pipe whose reader has gone it raises SIGPIPE (EPIPE returned
 * only where SIGPIPE is ignored or blocked). */
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
 * records and every thread's "previous" magazines and inboxes (objects other
 * threads freed, waiting for it), now; every other thread
 * flushes the rest of its magazines at its next allocation or free that
 * leaves its fast path (a thread that makes no more calls keeps what its
 * loaded and remote magazines hold: at most a few dozen KiB per size class it
 * used; see magslab_thread_idle). The pages of slabs in use that only free
 * objects overlap, and of empty magazines, go back too. It holds each size
 * class's lock while it walks that class's slabs: for an explicit trim, not a
 * periodic call. Returns bytes given back now. malloc_trim() of the override
 * calls it. Idle memory also goes back by itself within about
 * a second in a multithreaded process (docs/design.md, Decay). */
MAGSLAB_API size_t magslab_trim_all(void);

/* For a thread about to sleep (a pool's worker): its magazines go to the shared
 * depot (where other threads reuse them, and decay returns what nobody does)
 * or to the slabs, and the partly used slabs kept for its refills become
 * every thread's. The thread may allocate again at any time. Its magazines of
 * object caches and pools stay (docs/cpp.md): magslab_cache_reap gives back
 * the calling thread's of one cache. */
MAGSLAB_API void magslab_thread_idle(void);

/* ---- Object caches (Bonwick's kmem_cache; docs/cpp.md) ----
 *
 * A cache of *constructed* objects of one size: ctor runs on every object when
 * the cache populates a slab, dtor when a slab is reaped or the cache destroyed,
 * not on every alloc/free. The program frees objects back in their constructed
 * state. Objects travel through per-thread magazines and a per-cache lock-free
 * depot: alloc and free take no lock and no atomic in the common case.
 *
 * Thread safety: alloc, free, reap and stats may be called from any thread at
 * once. destroy must not race with any other call on the same cache (threads
 * that used the cache earlier may still hold magazines of it: destroy takes
 * them back).
 *
 * Misuse aborts with one line on stderr:
 *   magslab: invalid release of 0x… to cache "name" (not an object of any cache)
 *   magslab: invalid release of 0x… to cache "name" (an object of cache "other")
 *   magslab: invalid release of 0x… to cache "name" (inside an object of 64 B)
 *   magslab: double release of 0x… to cache "name" (already free in its slab)
 * A double release is detected when the object is already free in its slab
 * (not while its first release still sits in a magazine). */
typedef struct magslab_cache magslab_cache;
/* (Every call takes a cache magslab_cache_create returned and that has not been
 * destroyed; only magslab_cache_destroy and magslab_cache_free's object accept
 * NULL. Likewise for pools below; every arena call takes NULL as an empty fixed
 * arena: nothing allocated, 0 used, remaining and capacity.) */

/* Constructor: initialise obj (size bytes at the cache's alignment); return 0,
 * or non-zero on failure (the slab being populated is then given up, its
 * objects destructed, and the alloc that needed it returns NULL). */
typedef int (*magslab_cache_ctor)(void* obj, void* arg);
typedef void (*magslab_cache_dtor)(void* obj, void* arg);

/* A cache of objects of `size` bytes aligned to `align` (0: 16; else a power of
 * two up to 4096). name is copied (up to 47 bytes) and used in messages. ctor
 * and dtor may be NULL. NULL with errno = EINVAL for size 0, size above 256 MiB
 * or a bad alignment; NULL with errno = ENOMEM without memory. */
MAGSLAB_API magslab_cache* magslab_cache_create(const char* name, size_t size, size_t align,
                                                magslab_cache_ctor ctor, magslab_cache_dtor dtor,
                                                void* arg);
/* A constructed object, or NULL (ENOMEM, or the constructor failed). */
MAGSLAB_API void* magslab_cache_alloc(magslab_cache* cache);
/* Give obj (from magslab_cache_alloc of this cache, in its constructed state)
 * back. NULL is ignored. */
MAGSLAB_API void magslab_cache_free(magslab_cache* cache, void* obj);
/* Return the cache's unused slabs to the heap: the calling thread's magazines
 * and the depot are emptied into the slabs, then every slab with no object
 * out has its objects destructed and its memory freed. Magazines of other
 * threads are not touched. Returns the bytes of slab memory freed. The
 * destructors it runs may use the cache but not destroy it (one line, then
 * abort: magslab: cache "name": magslab_cache_destroy while a
 * magslab_cache_reap of it runs). */
MAGSLAB_API size_t magslab_cache_reap(magslab_cache* cache);
/* Destroy the cache: every thread's magazines and the depot are emptied, every
 * free object destructed and its slab freed. Objects still out (live) are
 * reported on stderr in one line ("magslab: cache "name" destroyed with N live
 * objects of S B: 0x…, …"), neither destructed nor freed (their slabs leak), and
 * their number returned. NULL is ignored. The destructors it runs must not
 * allocate from, release to, reap or destroy this cache (one line, then abort:
 *   magslab: cache "name": magslab_cache_alloc from a destructor that
 *   magslab_cache_destroy runs for it; or _free, _reap, _destroy). */
MAGSLAB_API size_t magslab_cache_destroy(magslab_cache* cache);

struct magslab_cache_stats {
  size_t object_size;      /* bytes per object as created */
  size_t object_align;     /* alignment of every object */
  size_t slab_size;        /* bytes per slab (a heap block) */
  size_t objects_per_slab; /* objects constructed in each slab */
  size_t slabs;            /* slabs held now */
  size_t live;             /* objects handed out and not released */
  size_t cached;           /* constructed and free: in magazines or in slabs */
  size_t in_magazines;     /* of cached, held in thread magazines and the depot */
  size_t ctor_calls;       /* constructor calls since creation */
  size_t dtor_calls;       /* destructor calls since creation */
};
/* Fills *out (NULL: nothing). Exact when no thread is using the cache. Never
 * allocates. */
MAGSLAB_API void magslab_cache_stats(const magslab_cache* cache, struct magslab_cache_stats* out);

/* ---- Arenas (bump allocation with reset; docs/cpp.md) ----
 *
 * Not thread safe: one thread at a time per arena (C++: magslab::ConcurrentArena
 * allocates from many threads). Memory is reserved from the OS up front and
 * committed as it is touched; destroy gives it back to the OS.
 * Edge behaviour (never undefined): size 0, an alignment that is not a power of
 * two, a size or alignment whose rounding overflows, or more than remains in a
 * fixed arena: NULL, nothing allocated, the arena unchanged. */
typedef struct magslab_arena magslab_arena;

/* Every magslab_arena begins with its bump cursor: [cur, end) is the free part
 * of its current region. magslab.hpp's Arena bumps it inline and calls
 * magslab_arena_alloc_aligned only when the request does not fit. */
struct magslab_arena_cursor {
  char* cur;
  char* end;
};

/* A fixed arena of `capacity` bytes (rounded up to whole pages; 0 is allowed:
 * every allocation then fails). NULL when the OS refuses the reservation. */
MAGSLAB_API magslab_arena* magslab_arena_create(size_t capacity);
/* A growing arena: `capacity` reserved now, and when a request does not fit,
 * another region of at least `chunk` bytes (a page if 0) is reserved. */
MAGSLAB_API magslab_arena* magslab_arena_create_growing(size_t capacity, size_t chunk);
/* size bytes aligned to 16 (alignof(max_align_t)). */
MAGSLAB_API void* magslab_arena_alloc(magslab_arena* arena, size_t size);
MAGSLAB_API void* magslab_arena_alloc_aligned(magslab_arena* arena, size_t size, size_t align);
/* Bytes left in the reserved regions (a request of that many bytes at
 * alignment 1 succeeds in a fixed arena). */
MAGSLAB_API size_t magslab_arena_remaining(const magslab_arena* arena);
/* Bytes consumed since creation or the last reset, alignment padding included. */
MAGSLAB_API size_t magslab_arena_used(const magslab_arena* arena);
/* Bytes reserved (all regions). */
MAGSLAB_API size_t magslab_arena_capacity(const magslab_arena* arena);
/* Forget every allocation at once: the next one starts at the beginning of the
 * first region. Regions stay reserved and committed (warm reuse). */
MAGSLAB_API void magslab_arena_reset(magslab_arena* arena);
/* Unmap every region. NULL is ignored. */
MAGSLAB_API void magslab_arena_destroy(magslab_arena* arena);

/* ---- Pools of node sizes (the engine of magslab::pmr::PoolResource) ----
 *
 * Requests up to 4 KiB at alignments up to 4 KiB are served from an object
 * cache per size class (per-thread magazines), larger ones from the heap and
 * tracked; destroy frees everything the pool ever handed out. Thread safe
 * except destroy. */
typedef struct magslab_pool magslab_pool;
MAGSLAB_API magslab_pool* magslab_pool_create(void);
/* NULL for a bad alignment or without memory; size 0 is served as 1 byte. */
MAGSLAB_API void* magslab_pool_alloc(magslab_pool* pool, size_t size, size_t align);
/* size and align as passed to magslab_pool_alloc. */
MAGSLAB_API void magslab_pool_free(magslab_pool* pool, void* ptr, size_t size, size_t align);
MAGSLAB_API void magslab_pool_destroy(magslab_pool* pool);
/* The object cache from which the pool serves requests of (size, align),
 * created if it was not yet; NULL when no cache serves them (above 4 KiB, an
 * alignment that is not a power of two) or without memory. It belongs to the
 * pool (destroyed with it; never pass it to magslab_cache_destroy), and
 * magslab_cache_alloc/magslab_cache_free on it are magslab_pool_alloc/_free
 * of those sizes: magslab.hpp's PoolResource uses it for its inline paths. */
MAGSLAB_API magslab_cache* magslab_pool_cache(magslab_pool* pool, size_t size, size_t align);

/* ---- For magslab.hpp: one heap, many modules ----
 *
 * A module that includes magslab.hpp has its own copy of the header's inline
 * functions and variables when it is built with -fvisibility=hidden or linked
 * -Bsymbolic. These keep what must be one per heap in the library instead.
 *
 * magslab::pmr::resource() is an object of each such module; each registers
 * its class (its vtable's address) with the heap it calls while the module is
 * loaded, and two of them compare equal when the heap that one module calls
 * knows the other's class: so over the same heap they do, and one of a module
 * that links a heap of its own (libmagslab.a, its symbols hidden) does not.
 * Adding a class known already does nothing (two racing adds may record it
 * twice: removing takes every copy); at most 128 are known at once (the rest
 * are not recorded: a resource of such a module is then equal to those of
 * the classes its heap knows, but they are not equal to it — one-sided, so
 * containers may not be spliced or swapped across). Classes are not removed
 * once the process exits (static destructors compare them still; for the
 * first 64 classes added: an atexit handler each). */
MAGSLAB_API void magslab_resource_class_add(const void* vtable);
/* The class added before is known no more (its module is being unloaded). */
MAGSLAB_API void magslab_resource_class_remove(const void* vtable);
/* 1 if vtable is a class added to this heap and not removed, else 0. */
MAGSLAB_API int magslab_resource_class_known(const void* vtable);

/* Not for programs: the heap's set-up at load (options, fork handlers), which
 * each magslab library's constructor calls through this name before its own.
 * A libmagslab.so that another magslab interposes on (the override preloaded
 * into a program linked with it) so sets that one up at its own, first,
 * constructor. Once per heap; the arguments are those the loader passes to
 * constructors. */
MAGSLAB_API void magslab_at_load_v1(int argc, char** argv, char** envp);

#ifdef __cplusplus
} /* extern "C" */
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

#endif /* MAGSLAB_MAGSLAB_H */
