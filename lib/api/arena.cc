// api/arena: bump allocation with reset over regions reserved from the OS
// (platform::map: committed lazily as touched, unmapped on destroy).
//
// Invariants (one thread at a time; arenas are not thread safe):
//   regions first..last in order; current is one of them (nullptr: none yet)
//   current->base <= cur <= end == current->base + current->size
//   used == before_current + (cur - current->base)
//   capacity == sum of region sizes; remaining == capacity - used
// Every failing allocation leaves cur, current and the counts as they were,
// except that a growing arena may have moved on to a later region first.
#include <errno.h>

#include <cstddef>
#include <cstdint>
#include <new>

#include "base/config.h"
#include "magslab/magslab.h"
#include "platform/platform.h"

namespace {

using magslab::align_up;
using magslab::kMaxRequest;
using magslab::kPageSize;

struct Region {
  Region* next;
  char* base;
  size_t size;
};

void* fail(int err) {
  errno = err;
  return nullptr;
}

// A region of at least `bytes` (whole pages), or nullptr.
Region* map_region(size_t bytes) {
  if (bytes == 0 || bytes > kMaxRequest) return nullptr;
  size_t size = align_up(bytes, kPageSize);
  auto* r = static_cast<Region*>(magslab_malloc(sizeof(Region)));
  if (r == nullptr) return nullptr;
  r->base = static_cast<char*>(magslab::platform::map(size));
  if (r->base == nullptr) {
    magslab_free(r);
    return nullptr;
  }
  r->next = nullptr;
  r->size = size;
  return r;
}

}  // namespace

struct magslab_arena {
  // First, and public (magslab.h): the C++ Arena bumps it inline.
  magslab_arena_cursor bump = {nullptr, nullptr};
  Region* current = nullptr;
  Region* first = nullptr;
  Region* last = nullptr;
  size_t grow = 0;  // 0: fixed
  size_t capacity = 0;
  size_t before_current = 0;  // region bytes before current (consumed or skipped)

  void enter(Region* r) {
    current = r;
    bump.cur = r->base;
    bump.end = r->base + r->size;
  }
  void append(Region* r) {
    if (last != nullptr)
      last->next = r;
    else
      first = r;
    last = r;
    capacity += r->size;
  }
};

namespace {

magslab_arena* create(size_t capacity, size_t grow) {
  if (capacity > kMaxRequest) return static_cast<magslab_arena*>(fail(ENOMEM));
  void* mem = magslab_malloc(sizeof(magslab_arena));
  if (mem == nullptr) return nullptr;
  auto* a = new (mem) magslab_arena();
  a->grow = grow;
  if (capacity != 0) {
    Region* r = map_region(capacity);
    if (r == nullptr) {
      magslab_free(mem);
      return static_cast<magslab_arena*>(fail(ENOMEM));
    }
    a->append(r);
    a->enter(r);
  }
  return a;
}

// The current region cannot hold the request: go on to the next region
// (kept from before a reset), or reserve a new one if the arena grows. A
// request no region could hold is refused first, before a kept region is
// entered: the arena stays as it was, as it did before the reset (where no
// region followed), so the same requests get the same addresses after it.
bool advance(magslab_arena* a, size_t size, size_t align) {
  if (size > kMaxRequest || align > kMaxRequest) return false;
  if (a->current != nullptr && a->current->next != nullptr) {
    a->before_current += a->current->size;
    a->enter(a->current->next);
    return true;
  }
  if (a->grow == 0) return false;
  // Room for the request at any alignment: size + align - 1 (no overflow:
  // both are at most kMaxRequest here).
  size_t need = size + align - 1;
  Region* r = map_region(need > a->grow ? need : a->grow);
  if (r == nullptr) return false;
  if (a->current != nullptr) a->before_current += a->current->size;
  a->append(r);
  a->enter(r);
  return true;
}

}  // namespace

static_assert(offsetof(magslab_arena, bump) == 0, "magslab.h: the cursor comes first");

extern "C" {

magslab_arena* magslab_arena_create(size_t capacity) { return create(capacity, 0); }

magslab_arena* magslab_arena_create_growing(size_t capacity, size_t chunk) {
  return create(capacity, chunk == 0 ? kPageSize : chunk);
}

void* magslab_arena_alloc_aligned(magslab_arena* a, size_t size, size_t align) {
  // NULL: the empty arena (magslab.h; a moved-from magslab::Arena).
  if (a == nullptr || size == 0 || !magslab::is_pow2(align)) return nullptr;
  // A request refused after it went on to kept regions (none of them holds
  // it, and no new one can be mapped) leaves the arena where it was.
  Region* const was_current = a->current;
  const magslab_arena_cursor was_bump = a->bump;
  const size_t was_before = a->before_current;
  for (;;) {
    if (a->current != nullptr) {
      // Padding and room computed by subtraction only: no overflow for any
      // size or alignment.
      size_t room = static_cast<size_t>(a->bump.end - a->bump.cur);
      size_t pad = (0 - reinterpret_cast<uintptr_t>(a->bump.cur)) & (align - 1);
      if (pad <= room && size <= room - pad) {
        char* p = a->bump.cur + pad;
        a->bump.cur = p + size;
        return p;
      }
    }
    if (!advance(a, size, align)) {
      a->current = was_current;
      a->bump = was_bump;
      a->before_current = was_before;
      return nullptr;
    }
  }
}

void* magslab_arena_alloc(magslab_arena* a, size_t size) {
  return magslab_arena_alloc_aligned(a, size, alignof(max_align_t));
}

size_t magslab_arena_used(const magslab_arena* a) {
  if (a == nullptr || a->current == nullptr) return 0;
  return a->before_current + static_cast<size_t>(a->bump.cur - a->current->base);
}

size_t magslab_arena_remaining(const magslab_arena* a) {
  return a == nullptr ? 0 : a->capacity - magslab_arena_used(a);
}

size_t magslab_arena_capacity(const magslab_arena* a) { return a == nullptr ? 0 : a->capacity; }

void magslab_arena_reset(magslab_arena* a) {
  if (a == nullptr) return;
  a->before_current = 0;
  if (a->first != nullptr) a->enter(a->first);
}

void magslab_arena_destroy(magslab_arena* a) {
  if (a == nullptr) return;
  for (Region* r = a->first; r != nullptr;) {
    Region* next = r->next;
    magslab::platform::unmap(r->base, r->size);
    magslab_free(r);
    r = next;
  }
  a->~magslab_arena();
  magslab_free(a);
}

}  // extern "C"
