// magslab: the C++ API (C++20), header only over the C API of magslab.h, so
// libmagslab.so itself needs no C++ runtime (docs/cpp.md). ObjectCache's
// acquire/release, and PoolResource's requests up to 1 KiB, are inline and
// read two variables the library exports (detail::cache_abi); what must be one
// per heap and not one per module (pmr::resource()'s equality, the slot for
// T()'s exception) is in the library too: this header goes with the library
// of the same version.
//
//   magslab::ObjectCache<T>        typed cache of constructed objects (kmem_cache)
//   magslab::Arena                 bump allocation with reset (not thread safe)
//   magslab::ConcurrentArena       bump allocation from many threads (one fetch_add)
//   magslab::allocator<T>          stateless STL allocator over the magslab heap
//   magslab::pmr::resource()       std::pmr::memory_resource over the magslab heap
//   magslab::pmr::ArenaResource    monotonic std::pmr resource over an Arena
//   magslab::pmr::PoolResource     std::pmr pool of node sizes in per-thread magazines
#ifndef MAGSLAB_MAGSLAB_HPP
#define MAGSLAB_MAGSLAB_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <limits>
#include <memory>
#include <memory_resource>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "magslab.h"

namespace magslab {

namespace detail {
// Failures throw as the standard library does; a program built without
// exceptions (-fno-exceptions) aborts instead, as libstdc++ does there.
#if defined(__cpp_exceptions)
#define MAGSLAB_THROW(e) throw e
#else
#define MAGSLAB_THROW(e) std::abort()
#endif

// The exception a constructor threw while ObjectCache populated a slab on this
// thread; acquire() rethrows it (the C layer below only sees a failure). The
// slot is the library's, not an inline variable of this header: a module
// built with -fvisibility=hidden has its own copy of those, and a cache it
// made and another module acquires from would set one slot and read the other
// (lib/api/cxx_support.cc). It is nullptr but during alloc_catching's call,
// which marks it as waiting (kCtorErrorWanted) and takes what T() threw: a
// std::exception_ptr constructed in place. With nobody waiting (a C caller of
// magslab_cache_alloc, a module built without exceptions) construct() drops
// the exception at once, while the code that threw it is still loaded, and
// nothing is left for a later acquire() to rethrow or for the thread's exit.
extern "C" MAGSLAB_API __thread void* magslab_cxx_ctor_error_v1;
#if defined(__cpp_exceptions)
static_assert(sizeof(std::exception_ptr) == sizeof(void*) &&
                  alignof(std::exception_ptr) <= alignof(void*),
              "the library's slot holds one std::exception_ptr");
inline constexpr std::uintptr_t kCtorErrorWanted = 1;  // no exception_ptr holds 1

inline std::uintptr_t ctor_error_word() noexcept {
  std::uintptr_t w;
  __builtin_memcpy(&w, &magslab_cxx_ctor_error_v1, sizeof w);
  return w;
}
inline void set_ctor_error_word(std::uintptr_t w) noexcept {
  __builtin_memcpy(&magslab_cxx_ctor_error_v1, &w, sizeof w);
}
inline std::exception_ptr* kept_ctor_error() noexcept {
  return std::launder(reinterpret_cast<std::exception_ptr*>(&magslab_cxx_ctor_error_v1));
}

// In ObjectCache's construct(), handling T()'s exception: kept for the call
// that waits for it (the latest, if T() threw twice), else dropped.
inline void keep_ctor_error() noexcept {
  const std::uintptr_t w = ctor_error_word();
  if (w == 0) return;
  if (w != kCtorErrorWanted) kept_ctor_error()->~exception_ptr();
  ::new (static_cast<void*>(&magslab_cxx_ctor_error_v1))
      std::exception_ptr(std::current_exception());
}

// magslab_cache_alloc(c), with the exception a T() threw meanwhile in e. The
// slot's word before goes back after: a T() that acquires from another cache
// nests a call in an outer one's. Not noexcept: a T() that ends its thread
// (pthread_exit, glibc's forced unwind) unwinds through here, and the word
// goes back then too.
inline void* alloc_catching(magslab_cache* c, std::exception_ptr& e) {
  struct Restore {
    std::uintptr_t saved;
    ~Restore() {
      const std::uintptr_t w = ctor_error_word();
      if (w != kCtorErrorWanted && w != saved) kept_ctor_error()->~exception_ptr();
      set_ctor_error_word(saved);
    }
  } restore{ctor_error_word()};
  set_ctor_error_word(kCtorErrorWanted);
  void* p = magslab_cache_alloc(c);
  if (ctor_error_word() != kCtorErrorWanted) {
    std::exception_ptr* kept = kept_ctor_error();
    e = std::move(*kept);
    kept->~exception_ptr();
    set_ctor_error_word(kCtorErrorWanted);
  }
  return p;
}
#endif

inline bool is_pow2(std::size_t n) noexcept { return n != 0 && (n & (n - 1)) == 0; }

// A block of `bytes` aligned to `align` (a power of two), or nullptr.
// magslab_malloc's blocks are 16-aligned from 16 bytes up but its 8-byte
// class only 8-aligned, so smaller requests that need 16 take the aligned
// path (which serves them from the 16-byte class), as larger alignments do.
inline void* alloc_aligned_to(std::size_t bytes, std::size_t align) noexcept {
  return align < 16 || (align == 16 && bytes >= 16) ? magslab_malloc(bytes)
                                                    : magslab_aligned_alloc(align, bytes);
}

// ---- ObjectCache's fast paths, inline ----
// acquire() and release() take from / put into the calling thread's magazine of
// the cache without a call into the library: they read the library's
// structures at the offsets below, which lib/api/object_cache.cc asserts
// against its own, and hand anything but a plain hit (no table or magazine
// yet, an empty or full magazine, a pointer not in the two slabs last checked,
// a misuse) to magslab_cache_alloc/magslab_cache_free, which do everything.
// "_v2" names this layout: a library built with another exports other names,
// so a mismatched header and library fail to link instead of misreading.
namespace cache_abi {
// The calling thread's table (struct CacheTable), and the count of slabs
// given up by any cache so far (read relaxed; the library's full check reads
// it with acquire).
extern "C" MAGSLAB_API __thread void* magslab_objcache_table_v2;
extern "C" MAGSLAB_API std::uint64_t magslab_objcache_epoch_v2;
// magslab_cache: id, slab mask, first object's offset, objects * stride, and
// ceil(2^64 / stride); all constant after creation.
inline constexpr std::size_t kCacheId = 0, kCacheSlabMask = 8, kCacheFirstOff = 16, kCacheSpan = 24,
                             kCacheDivMagic = 32;
// CacheTable: slot count, then slots of (loaded magazine, previous magazine,
// first object of the slab last checked, the epoch both were checked at, first
// object of the slab checked before).
inline constexpr std::size_t kTableCap = 0, kTableSlots = 24, kSlotSize = 40, kSlotLoaded = 0,
                             kSlotCheckedFirst = 16, kSlotCheckedEpoch = 24,
                             kSlotCheckedFirst2 = 32;
// Magazine: count (written with relaxed atomic stores: statistics read it
// from other threads), capacity, objects.
inline constexpr std::size_t kMagCount = 8, kMagCap = 12, kMagObjs = 32;

// A plain load at a byte offset, without type punning.
template <class V>
inline V load(const void* base, std::size_t off) noexcept {
  V v;
  __builtin_memcpy(&v, static_cast<const char*>(base) + off, sizeof v);
  return v;
}
inline std::uint32_t* count_of(char* mag) noexcept {
  return reinterpret_cast<std::uint32_t*>(mag + kMagCount);
}
inline const char* slot_of(const char* table, std::uint32_t id) noexcept {
  return table + kTableSlots + std::size_t{id} * kSlotSize;
}

// An object from the loaded magazine, or miss()'s (magslab_cache_alloc's
// way) when there is none: called from the two tests that find out, so the
// caller does not test the object again.
template <class Miss>
inline void* take(magslab_cache* c, Miss miss) {
  const char* t = static_cast<const char*>(magslab_objcache_table_v2);
  const auto id = load<std::uint32_t>(c, kCacheId);
  if (__builtin_expect(id >= load<std::uint32_t>(t, kTableCap), 0)) return miss();
  char* m = load<char*>(slot_of(t, id), kSlotLoaded);
  std::uint32_t n = load<std::uint32_t>(m, kMagCount);
  if (__builtin_expect(n == 0, 0)) return miss();
  // relaxed: only other threads' statistics read it; the owner alone writes.
  std::atomic_ref<std::uint32_t>(*count_of(m)).store(n - 1, std::memory_order_relaxed);
  return load<void*>(m, kMagObjs + (n - 1) * sizeof(void*));
}

// true: p (an object of c, in one of the two slabs this thread last checked)
// is in the loaded magazine; false: nothing done (call magslab_cache_free).
// One subtraction places p in a remembered slab and at an object's start: its
// offset from the slab's first object is below the slab's span of objects and
// a multiple of the stride (one multiply). nullptr is false without a test of
// its own: a slot's first objects are 0 only while its epoch is 0, which never
// matches; an unused second entry repeats the first.
inline bool put(magslab_cache* c, void* p) noexcept {
  const char* t = static_cast<const char*>(magslab_objcache_table_v2);
  const auto id = load<std::uint32_t>(c, kCacheId);
  if (__builtin_expect(id >= load<std::uint32_t>(t, kTableCap), 0)) return false;
  const char* s = slot_of(t, id);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  // relaxed: a newer epoch than this read only sends p to the full check.
  const std::uint64_t epoch =
      std::atomic_ref<std::uint64_t>(magslab_objcache_epoch_v2).load(std::memory_order_relaxed);
  const auto span = load<std::uint64_t>(c, kCacheSpan);
  std::uint64_t off = a - load<std::uintptr_t>(s, kSlotCheckedFirst);
  if (off >= span) off = a - load<std::uintptr_t>(s, kSlotCheckedFirst2);
  const auto magic = load<std::uint64_t>(c, kCacheDivMagic);
  if (__builtin_expect(
          epoch != load<std::uint64_t>(s, kSlotCheckedEpoch) || off >= span || off * magic >= magic,
          0))
    return false;
  char* m = load<char*>(s, kSlotLoaded);
  std::uint32_t n = load<std::uint32_t>(m, kMagCount);
  if (__builtin_expect(n >= load<std::uint32_t>(m, kMagCap), 0)) return false;
  __builtin_memcpy(m + kMagObjs + n * sizeof(void*), &p, sizeof p);
  std::atomic_ref<std::uint32_t>(*count_of(m)).store(n + 1, std::memory_order_relaxed);
  return true;
}
}  // namespace cache_abi
}  // namespace detail

// ---------------------------------------------------------------------------
// ObjectCache<T>: a cache of constructed T (Bonwick's kmem_cache). T() runs for
// every object when the cache populates a slab, ~T() when a slab is reaped or
// the cache destroyed — not on acquire/release: release() takes an object back
// in the state the program leaves it, and acquire() hands out such an object
// (reset what you changed before releasing, as with kmem_cache).
//
// Thread safe: acquire/release/reap/stats from any thread; per-thread
// magazines and a lock-free depot, so the common case takes no lock and no
// atomic read-modify-write. Destroying the cache must not race with its use.
// Releasing a pointer that is not an object of this cache aborts with one
// line; destroying the cache with objects still out reports them on stderr
// (they are leaked, not destructed).
template <class T>
class ObjectCache {
  static_assert(alignof(T) <= 4096, "ObjectCache: alignments up to 4096");
  static_assert(std::is_default_constructible_v<T>, "ObjectCache: T must be default constructible");

 public:
  struct Stats {
    std::size_t live;          // handed out, not released
    std::size_t cached;        // constructed and free (magazines or slabs)
    std::size_t in_magazines;  // of cached, in thread magazines and the depot
    std::size_t slabs;         // slabs held
    std::size_t objects_per_slab;
    std::size_t slab_size;   // bytes per slab
    std::size_t ctor_calls;  // T() calls since creation
    std::size_t dtor_calls;  // ~T() calls since creation
  };

  struct Deleter {
    ObjectCache* cache = nullptr;
    void operator()(T* p) const noexcept { cache->release(p); }
  };
  using unique_ptr = std::unique_ptr<T, Deleter>;

  // name: for messages (up to 47 bytes kept). Throws std::bad_alloc.
  explicit ObjectCache(const char* name = "ObjectCache")
      : c_(magslab_cache_create(name, sizeof(T), alignof(T), &construct, destructor(), nullptr)) {
    if (c_ == nullptr) MAGSLAB_THROW(std::bad_alloc());
  }
  ~ObjectCache() { magslab_cache_destroy(c_); }
  ObjectCache(const ObjectCache&) = delete;
  ObjectCache& operator=(const ObjectCache&) = delete;

  // A constructed object. Throws what T() threw while populating a slab, or
  // std::bad_alloc without memory.
  T* acquire() {
    return static_cast<T*>(detail::cache_abi::take(c_, [this] { return acquire_slow(); }));
  }
  // nullptr instead of an exception.
  T* try_acquire() noexcept {
    return static_cast<T*>(detail::cache_abi::take(c_, [this] { return try_acquire_slow(); }));
  }
  // Give p (constructed, from this cache) back; nullptr is ignored.
  void release(T* p) noexcept {
    if (!detail::cache_abi::put(c_, p)) magslab_cache_free(c_, p);  // (nullptr: put says no)
  }
  // An object that releases itself to this cache.
  unique_ptr acquire_unique() { return unique_ptr(acquire(), Deleter{this}); }

  // Return unused slabs to the heap (destructing their objects): this
  // thread's magazines and the depot are emptied first; other threads'
  // magazines are not touched. Returns bytes freed.
  std::size_t reap() noexcept { return magslab_cache_reap(c_); }

  Stats stats() const noexcept {
    struct magslab_cache_stats s;
    magslab_cache_stats(c_, &s);
    return Stats{s.live,      s.cached,     s.in_magazines, s.slabs, s.objects_per_slab,
                 s.slab_size, s.ctor_calls, s.dtor_calls};
  }

  magslab_cache* native_handle() const noexcept { return c_; }

 private:
  // Not noexcept, and glibc's forced unwind passes: a T() that calls
  // pthread_exit ends its thread, unwinding through the cache's slow path
  // (which leaks the slab being populated and a magazine: the library is
  // built without exceptions), acquire() and the program's frames. Until stop
  // 49 the catch (...) below took it, and glibc ended the process ("FATAL:
  // exception not rethrown"; a bug hunt). try_acquire() is noexcept: there
  // such a T() ends the process (std::terminate), as in any noexcept function.
  // The forced unwind is no C++ exception: libstdc++'s std::current_exception()
  // is empty for it (catching abi::__forced_unwind& instead binds a reference
  // to no object, which UBSan reports; libc++ is untried).
  static int construct(void* p, void*) {
#if defined(__cpp_exceptions)
    try {
      ::new (p) T();
      return 0;
    } catch (...) {
      if (!std::current_exception()) throw;
      detail::keep_ctor_error();
      return -1;
    }
#else
    ::new (p) T();
    return 0;
#endif
  }
  static void destruct(void* p, void*) noexcept { static_cast<T*>(p)->~T(); }
  // The library's way: the slow paths, and the exception T() threw.
  [[gnu::noinline]] T* acquire_slow() {
#if defined(__cpp_exceptions)
    std::exception_ptr e;
    if (void* p = detail::alloc_catching(c_, e)) return static_cast<T*>(p);
    if (e) std::rethrow_exception(e);
#else
    if (void* p = magslab_cache_alloc(c_)) return static_cast<T*>(p);
#endif
    MAGSLAB_THROW(std::bad_alloc());
  }
  [[gnu::noinline]] T* try_acquire_slow() noexcept {
#if defined(__cpp_exceptions)
    std::exception_ptr e;  // dropped
    return static_cast<T*>(detail::alloc_catching(c_, e));
#else
    return static_cast<T*>(magslab_cache_alloc(c_));
#endif
  }
  static constexpr magslab_cache_dtor destructor() noexcept {
    return std::is_trivially_destructible_v<T> ? nullptr : &destruct;
  }

  magslab_cache* c_;
};

// ---------------------------------------------------------------------------
// Arena: bump allocation over regions reserved from the OS up front (committed
// as touched). NOT thread safe: one thread at a time (ConcurrentArena below
// serves many). allocate() never has undefined behaviour: size 0, an alignment
// that is not a power of two, a size/alignment whose rounding overflows, or
// more than remains (fixed arena) return nullptr and allocate nothing. reset()
// forgets every allocation at once and reuses the memory (no destructors run);
// destruction gives the memory back to the OS. A moved-from Arena is an empty
// fixed one (capacity 0: every request refused) until it is assigned to.
class Arena {
 public:
  // A fixed arena of `capacity` bytes (rounded up to pages), or, with
  // grow_chunk > 0, one that reserves regions of at least grow_chunk bytes
  // when a request does not fit. Throws std::bad_alloc.
  explicit Arena(std::size_t capacity, std::size_t grow_chunk = 0)
      : a_(grow_chunk == 0 ? magslab_arena_create(capacity)
                           : magslab_arena_create_growing(capacity, grow_chunk)) {
    if (a_ == nullptr) MAGSLAB_THROW(std::bad_alloc());
  }
  ~Arena() { magslab_arena_destroy(a_); }
  Arena(Arena&& o) noexcept : a_(std::exchange(o.a_, nullptr)) {}
  Arena& operator=(Arena&& o) noexcept {
    if (this != &o) {
      magslab_arena_destroy(a_);
      a_ = std::exchange(o.a_, nullptr);
    }
    return *this;
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // The common case inline (the arena's cursor, magslab.h); anything else —
  // a refused request, the next region, growth — in the library.
  void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
    // A moved-from Arena (a_ == nullptr) is an empty one: no room here, and
    // the library refuses every request of the NULL arena.
    static constinit magslab_arena_cursor empty{nullptr, nullptr};
    auto* c = a_ != nullptr ? reinterpret_cast<magslab_arena_cursor*>(a_) : &empty;
    std::size_t room = static_cast<std::size_t>(c->end - c->cur);
    std::size_t pad = (0 - reinterpret_cast<std::uintptr_t>(c->cur)) & (align - 1);
    if (size - 1 < room && pad <= room - size && detail::is_pow2(align)) {
      char* p = c->cur + pad;
      c->cur = p + size;
      return p;
    }
    return magslab_arena_alloc_aligned(a_, size, align);
  }
  // Room for n T (uninitialised), or nullptr (n == 0, overflow, exhausted).
  template <class T>
  T* allocate_array(std::size_t n) noexcept {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) return nullptr;
    return static_cast<T*>(allocate(n * sizeof(T), alignof(T)));
  }
  std::size_t used() const noexcept { return magslab_arena_used(a_); }
  std::size_t remaining() const noexcept { return magslab_arena_remaining(a_); }
  std::size_t capacity() const noexcept { return magslab_arena_capacity(a_); }
  void reset() noexcept { magslab_arena_reset(a_); }
  magslab_arena* native_handle() const noexcept { return a_; }

 private:
  magslab_arena* a_;
};

// ---------------------------------------------------------------------------
// ConcurrentArena: a fixed region (reserved up front, committed as touched)
// from which any number of threads allocate at once: allocate() is one atomic
// fetch_add. Same edge behaviour as Arena, except that a request which does
// not fit (but is not larger than the capacity) has moved the offset past the
// end: the arena stays exhausted until reset() (there is no undo of a
// fetch_add another thread may have followed). reset() must not run
// concurrently with allocate() (the caller knows when every user is done).
class ConcurrentArena {
 public:
  explicit ConcurrentArena(std::size_t capacity) : region_(capacity) {
    cap_ = region_.remaining();
    base_ = static_cast<char*>(region_.allocate(cap_, 4096));
    if (base_ == nullptr) cap_ = 0;  // capacity 0: every allocation fails
  }
  ConcurrentArena(const ConcurrentArena&) = delete;
  ConcurrentArena& operator=(const ConcurrentArena&) = delete;

  void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
    if (size == 0 || !detail::is_pow2(align) || size > cap_ || align > cap_) return nullptr;
    // Offsets are multiples of 16 and base_ is page aligned: an alignment up
    // to 16 needs no padding, a larger one at most align - 16 bytes.
    std::size_t n = (size + 15) & ~std::size_t{15};
    if (align > 16) n += align - 16;
    // relaxed: a hint that stops an exhausted arena's offset from growing
    // without bound (each failing call adds at most cap_ past it).
    if (next_.load(std::memory_order_relaxed) > cap_) return nullptr;
    // relaxed: the fetch_add only divides the range between threads; what
    // they write there is published by the program's own synchronisation.
    std::size_t off = next_.fetch_add(n, std::memory_order_relaxed);
    if (off > cap_ || n > cap_ - off) return nullptr;
    std::uintptr_t p = reinterpret_cast<std::uintptr_t>(base_) + off;
    p = (p + align - 1) & ~(std::uintptr_t{align} - 1);
    return reinterpret_cast<void*>(p);
  }
  std::size_t used() const noexcept {
    std::size_t n = next_.load(std::memory_order_relaxed);  // relaxed: a statistic
    return n < cap_ ? n : cap_;
  }
  std::size_t remaining() const noexcept { return cap_ - used(); }
  std::size_t capacity() const noexcept { return cap_; }
  // Not concurrently with allocate().
  void reset() noexcept { next_.store(0, std::memory_order_relaxed); }

 private:
  Arena region_;
  char* base_ = nullptr;
  std::size_t cap_ = 0;
  alignas(64) std::atomic<std::size_t> next_{0};
};

// ---------------------------------------------------------------------------
// allocator<T>: a stateless standard allocator over the magslab heap (per-thread
// magazines for small sizes). Over-aligned T are honoured. All instances are
// equal.
template <class T>
struct allocator {
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_move_assignment = std::true_type;
  using is_always_equal = std::true_type;

  allocator() noexcept = default;
  template <class U>
  allocator(const allocator<U>&) noexcept {}

  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T))
      MAGSLAB_THROW(std::bad_array_new_length());
    void* p = detail::alloc_aligned_to(n * sizeof(T), alignof(T));
    if (p == nullptr) MAGSLAB_THROW(std::bad_alloc());
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept { magslab_free_sized(p, n * sizeof(T)); }

  template <class U>
  friend bool operator==(const allocator&, const allocator<U>&) noexcept {
    return true;
  }
};

namespace pmr {

inline std::pmr::memory_resource* resource() noexcept;

// The std::pmr::memory_resource over the magslab heap: one object per module,
// made by resource(). Two compare equal when they are the same object or
// serve the same heap: a library built with -fvisibility=hidden or linked
// -Bsymbolic has its own copy of resource()'s object, which must equal the
// program's, while one that links a heap of its own (libmagslab.a, symbols
// hidden) must not. resource() registers its module's class with the heap it
// calls, and do_is_equal asks the heap this module calls whether it knows the
// other object's class (magslab_resource_class_known). No RTTI: the first word
// of a polymorphic object is its vtable pointer (Itanium C++ ABI).
class HeapResource final : public std::pmr::memory_resource {
 private:
  HeapResource() = default;
  friend std::pmr::memory_resource* resource() noexcept;

  void* do_allocate(std::size_t bytes, std::size_t align) override {
    void* p = detail::alloc_aligned_to(bytes, align);
    if (p == nullptr) MAGSLAB_THROW(std::bad_alloc());
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t) override {
    magslab_free_sized(p, bytes);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o || magslab_resource_class_known(vtable_of(o)) != 0;
  }
  static const void* vtable_of(const std::pmr::memory_resource& o) noexcept {
    const void* vtable;
    __builtin_memcpy(&vtable, static_cast<const void*>(&o), sizeof vtable);
    return vtable;
  }
};

// The heap's resource: one object (per module, above), never destroyed
// (usable from static destructors, and equal to the heap's other resources
// there too: classes are not removed at exit), thread safe.
inline std::pmr::memory_resource* resource() noexcept {
  alignas(HeapResource) static unsigned char storage[sizeof(HeapResource)];
  static HeapResource* r = [] {
    auto* h = ::new (storage) HeapResource();
    // The module's class is known to the heap while the module is loaded:
    // this destructor takes it back at dlclose (at exit the heap keeps it).
    struct Registration {
      const void* vtable;
      ~Registration() { magslab_resource_class_remove(vtable); }
    };
    static const Registration registration{HeapResource::vtable_of(*h)};
    magslab_resource_class_add(registration.vtable);
    return h;
  }();
  return r;
}

// Monotonic resource over an Arena: allocation bumps, deallocation does
// nothing, release() resets the arena (all memory reused at once). Not thread
// safe (as std::pmr::monotonic_buffer_resource).
class ArenaResource final : public std::pmr::memory_resource {
 public:
  // Owns a growing arena: `initial` bytes reserved, then regions of at least
  // `chunk` bytes as needed.
  explicit ArenaResource(std::size_t initial = std::size_t{1} << 20,
                         std::size_t chunk = std::size_t{1} << 20)
      : own_(std::in_place, initial, chunk == 0 ? 4096 : chunk), arena_(&*own_) {}
  // Uses `arena` (not owned; a fixed arena throws std::bad_alloc when full).
  explicit ArenaResource(Arena& arena) noexcept : arena_(&arena) {}
  ArenaResource(const ArenaResource&) = delete;
  ArenaResource& operator=(const ArenaResource&) = delete;

  void release() noexcept { arena_->reset(); }
  Arena& arena() noexcept { return *arena_; }

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    void* p = arena_->allocate(bytes == 0 ? 1 : bytes, align);
    if (p == nullptr) MAGSLAB_THROW(std::bad_alloc());
    return p;
  }
  void do_deallocate(void*, std::size_t, std::size_t) override {}
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }

  std::optional<Arena> own_;
  Arena* arena_;
};

// Pool resource for node containers shared across threads: sizes up to 4 KiB
// come from an object cache per size class (per-thread magazines, lock-free
// depot; any thread may free what another allocated), larger ones from the
// heap. Thread safe. release() and destruction free everything it handed out.
// Requests up to 1 KiB take and put in the calling thread's magazine of their
// cache inline (ObjectCache's paths), the cache found in a table kept here.
class PoolResource final : public std::pmr::memory_resource {
 public:
  PoolResource() : p_(magslab_pool_create()) {
    if (p_ == nullptr) MAGSLAB_THROW(std::bad_alloc());
  }
  ~PoolResource() override { magslab_pool_destroy(p_); }
  PoolResource(const PoolResource&) = delete;
  PoolResource& operator=(const PoolResource&) = delete;

  // Free everything at once (not concurrently with any other use). Throws
  // std::bad_alloc, changing nothing, without memory for the next pool (a
  // small block): until stop 50's bug hunt it destroyed the pool first and
  // kept a null one, and the next allocate crashed on it.
  void release() {
    magslab_pool* next = magslab_pool_create();
    if (next == nullptr) MAGSLAB_THROW(std::bad_alloc());
    for (auto& c : caches_) c.store(nullptr, std::memory_order_relaxed);
    magslab_pool_destroy(std::exchange(p_, next));
  }

  // The inline table: one entry per 8 bytes up to kInlineMax, at alignments up
  // to 8 (and 16 above 8 bytes) — the steps of the library's own class lookup
  // for these sizes, so every request of an entry goes to the one cache that
  // magslab_pool_cache names for it (lib/api/pool.cc asserts the steps; a test
  // checks every size). kInlineEntries for any other request.
  static constexpr std::size_t kInlineMax = 1024, kInlineStep = 8,
                               kInlineEntries = kInlineMax / kInlineStep + 1;
  static constexpr std::size_t inline_entry(std::size_t bytes, std::size_t align) noexcept {
    if (bytes > kInlineMax || !detail::is_pow2(align) || align > 16 || (align == 16 && bytes <= 8))
      return kInlineEntries;
    return (bytes + kInlineStep - 1) / kInlineStep;
  }

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    const std::size_t e = inline_entry(bytes, align);
    // acquire: the cache's fields, initialised before magslab_pool_cache
    // returned it to the thread that stored it (allocate_slow's release).
    if (e < kInlineEntries)
      if (magslab_cache* c = caches_[e].load(std::memory_order_acquire))
        return detail::cache_abi::take(c, [&] { return allocate_slow(bytes, align, e); });
    return allocate_slow(bytes, align, e);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    const std::size_t e = inline_entry(bytes, align);
    // acquire: as in do_allocate. A pointer that is not an object of this
    // entry's cache (a wrong size, another pool) fails put's slab check and
    // goes to magslab_pool_free, which reports it.
    if (e < kInlineEntries)
      if (magslab_cache* c = caches_[e].load(std::memory_order_acquire))
        if (detail::cache_abi::put(c, p)) return;
    magslab_pool_free(p_, p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }

  void* allocate_slow(std::size_t bytes, std::size_t align, std::size_t e) {
    void* p = magslab_pool_alloc(p_, bytes, align);
    if (p == nullptr) MAGSLAB_THROW(std::bad_alloc());
    // release: pairs with the acquire loads above.
    if (e < kInlineEntries && caches_[e].load(std::memory_order_relaxed) == nullptr)
      caches_[e].store(magslab_pool_cache(p_, bytes, align), std::memory_order_release);
    return p;
  }

  magslab_pool* p_;
  std::atomic<magslab_cache*> caches_[kInlineEntries] = {};
};

}  // namespace pmr
}  // namespace magslab

#endif  // MAGSLAB_MAGSLAB_HPP
