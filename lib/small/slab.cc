// small/slab: carving slabs from the page heap, refilling and flushing magazines.
#include "small/slab.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>

#include "base/lock.h"
#include "chunks/decay_event.h"
#include "chunks/meta_arena.h"
#include "chunks/page_heap.h"
#include "platform/check.h"
#include "platform/numa.h"
#include "platform/platform.h"
#include "small/magazine.h"
#include "stats/counters.h"
#include "stats/events.h"

namespace magslab {

// Slab records come in record pages: 16 records fill a 4 KiB page of the
// metadata arena (pages taken 16 at a time, page-aligned). A page's header is
// kept apart from it, so that a page whose records have all been unused for a
// while can be decommitted (a burst of 1 GiB of small blocks needs ~65,000
// records, 16 MiB, which would otherwise stay resident for good). A record is
// read under its class lock, or (release's and the depot's node lookups) for
// objects carved from its slab, which keeps the slab and its record in use;
// free reads the page word (slab.h), cleared before the slab leaves the page
// map. So a decommitted page is never taken for a slab. In exact and check
// mode each record has a side array (Slab::requested); the page's 16 are one
// block that the header holds, decommitted with the page.
struct RecordPage {
  Slab* recs;            // the page: 16 records
  uint32_t* side;        // exact and check mode: recs[i]'s side array at i * kMaxSlabObjects
  uint16_t free_mask;    // bit i: recs[i] is unused
  uint8_t list;          // kOnNone (all in use), kOnPartial, kOnEmpty, kOnPurged
  uint64_t empty_since;  // kOnEmpty: when its last record came back
  RecordPage* next;
  RecordPage* prev;
};

namespace slab {
namespace {

// Partial slabs kept for their owner. A refill that leaves a slab partly
// free keeps the slab for the refilling thread (if the caller asks: once the
// thread's refills of the class are whole magazines, thread_cache.cc): its
// next refills take their own kept slabs first and, while it runs, no other
// thread's refill takes them, so the objects of a slab go to one thread —
// their frees go to its loaded magazine, not the remote one, and no two
// threads write one cache line — as in allocators whose pages belong to a
// thread. Before, every refill took the head of one shared list, so the slab
// a thread had just refilled from became the next refiller's, and the first
// thread's frees of its objects remote: map at 4 threads, each thread freeing
// only what it allocated, counted 11 % of its frees remote
// (docs/benchmarks.md, stop 28). Objects coming back (a depot overflow, a
// flush) make a full slab partial on the shared list, where any refill takes
// it. The free objects of the slabs kept in a bucket (one owner, but for rare
// collisions) are bounded by kKeptFreeBytes: past it, a kept slab that
// objects come back to goes to the shared list. So a running thread keeps at
// most that much free memory in a class's slabs for itself; its exit (and
// magslab_thread_idle) shares it (disown). Lists by bucket of the owner tag,
// walked comparing the owner: running threads rarely share a bucket.
constexpr unsigned kKeptBuckets = 16;
constexpr size_t kKeptFreeBytes = size_t{64} << 10;
inline unsigned kept_bucket(uint64_t owner) {
  return static_cast<unsigned>((owner >> kOwnerTagShift) % kKeptBuckets);
}
// Free objects a bucket of class cls may keep.
inline uint32_t kept_free_max(unsigned cls) {
  return static_cast<uint32_t>(kKeptFreeBytes / kClasses[cls].size);
}

struct alignas(kCacheLine) SlabClass {
  Lock lock;
  Slab* partial = nullptr;   // shared: slabs with 0 < nfree < objects that any refill takes
  Slab* empty = nullptr;     // one fully free slab kept committed, to absorb churn
  uint64_t empty_since = 0;  // when `empty` was cached (platform::now_ns())
  size_t carved = 0;         // objects out of slabs: handed out or in magazines
  size_t slabs = 0;          // slabs with objects out (partial or full); `empty` is not counted
  Slab* kept[kKeptBuckets] = {};  // partial slabs kept for their owner, by kept_bucket(owner)
  uint32_t kept_free[kKeptBuckets] = {};  // free objects in them (the sum of their nfree)
};

// [node][class] (platform/numa.h); with one node, g_classes[0] alone is used.
// A slab is on the lists of its own node (Slab::node) only.
SlabClass g_classes[numa::kMaxNodes][kNumClasses];

// One bit per SlabClass (g_classes as one array): set while its `empty` slot
// holds a slab. Written under the class's lock, with the slot; decay() locks
// only the classes whose bit it sees (a pass that locked all 97 of a node
// dirtied the pages of classes the program never used: 36 KiB of a trivial
// program's RSS). relaxed: decay() reads the slot again under the lock, and a
// bit set after its look is seen by the next pass.
constexpr unsigned kPoolClasses = numa::kMaxNodes * kNumClasses;
std::atomic<uint64_t> g_has_empty[(kPoolClasses + 63) / 64];

unsigned pool_index(const SlabClass& sc) { return static_cast<unsigned>(&sc - &g_classes[0][0]); }

// sc.empty = s (nullptr: none), under sc.lock, with its bit.
void set_empty(SlabClass& sc, Slab* s) {
  const bool had = sc.empty != nullptr;
  sc.empty = s;
  if (had == (s != nullptr)) return;  // the bit stays as it is
  const unsigned i = pool_index(sc);
  const uint64_t bit = uint64_t{1} << (i % 64);
  if (s != nullptr)
    g_has_empty[i / 64].fetch_or(bit, std::memory_order_relaxed);  // relaxed: see g_has_empty
  else
    g_has_empty[i / 64].fetch_and(~bit, std::memory_order_relaxed);  // relaxed: as above
}

// Hollow pages of all slabs (the sum of Slab::hollow). relaxed: a statistic,
// changed under class locks.
std::atomic<size_t> g_hollow_pages{0};

constexpr unsigned kRecordsPerPage = kPageSize / sizeof(Slab);
constexpr unsigned kRecordPagesPerGroup = 16;
constexpr uint16_t kAllFree = 0xffff;
static_assert(kRecordsPerPage == 16, "free_mask has one bit per record");
enum : uint8_t { kOnNone, kOnPartial, kOnEmpty, kOnPurged };

// Record pages by state, under g_record_lock (taken inside a class lock, never
// the other way round). kOnEmpty is newest first (purged from the tail).
struct PageList {
  RecordPage* head = nullptr;
  RecordPage* tail = nullptr;
};
Lock g_record_lock;
PageList g_rec_lists[4];         // indexed by RecordPage::list; [kOnNone] unused
size_t g_full_record_pages = 0;  // pages on no list: every record in use

void list_push(RecordPage* pg, uint8_t which) {
  PageList& l = g_rec_lists[which];
  pg->list = which;
  pg->prev = nullptr;
  pg->next = l.head;
  if (l.head != nullptr)
    l.head->prev = pg;
  else
    l.tail = pg;
  l.head = pg;
}

void list_remove(RecordPage* pg) {
  PageList& l = g_rec_lists[pg->list];
  if (pg->prev != nullptr)
    pg->prev->next = pg->next;
  else
    l.head = pg->next;
  if (pg->next != nullptr)
    pg->next->prev = pg->prev;
  else
    l.tail = pg->prev;
  pg->next = pg->prev = nullptr;
  pg->list = kOnNone;
}

// A Slab whose bytes are all zero is an unused record: fresh metadata pages
// and purged ones (release_record_pages) read as zero and are used as records
// without being written first — a group's pages become resident one by one,
// as their records are taken, not all 16 when the group is mapped.
static_assert(std::is_trivially_copyable_v<Slab> && std::is_trivially_destructible_v<Slab>,
              "records come to life in zeroed memory (an implicit-lifetime type)");

// A new group of record pages, all unused. Pushed last page first, so the
// first page is taken first. false when out of metadata memory. g_record_lock held.
bool grow_records() {
  void* headers = meta::alloc(sizeof(RecordPage) * kRecordPagesPerGroup);
  void* mem = meta::alloc_pages(kRecordPagesPerGroup * kPageSize);
  if (headers == nullptr || mem == nullptr) return false;  // (a bounded leak of metadata)
  auto* pages = static_cast<Slab*>(mem);
  auto* hs = static_cast<RecordPage*>(headers);
  for (unsigned i = kRecordPagesPerGroup; i-- > 0;) {
    hs[i] =
        RecordPage{pages + i * kRecordsPerPage, nullptr, kAllFree, kOnNone, 0, nullptr, nullptr};
    list_push(&hs[i], kOnPurged);
  }
  return true;
}

constexpr size_t kSideBytes = kRecordsPerPage * kMaxSlabObjects * sizeof(uint32_t);

Slab* new_slab_record() {
  LockGuard g(g_record_lock);
  RecordPage* pg = g_rec_lists[kOnPartial].head;
  if (pg == nullptr) pg = g_rec_lists[kOnEmpty].head;  // the most recently used: warm
  if (pg == nullptr) {
    if (g_rec_lists[kOnPurged].head == nullptr && !grow_records()) return nullptr;
    pg = g_rec_lists[kOnPurged].head;
  }
  if constexpr (kExactRequested || kCheckMode) {
    // Mapped with the page's first use (address space; committed as touched).
    if (pg->side == nullptr) pg->side = static_cast<uint32_t*>(meta::alloc_pages(kSideBytes));
    if (pg->side == nullptr) return nullptr;
  }
  if (pg->list != kOnPartial) {
    list_remove(pg);
    list_push(pg, kOnPartial);
  }
  unsigned i = static_cast<unsigned>(__builtin_ctz(pg->free_mask));
  pg->free_mask = static_cast<uint16_t>(pg->free_mask & (pg->free_mask - 1));
  if (pg->free_mask == 0) {  // all in use: on no list
    list_remove(pg);
    ++g_full_record_pages;
  }
  Slab* s = &pg->recs[i];
  s->home = pg;  // (lost if the page was purged: set again each time, as is the next)
  if constexpr (kExactRequested || kCheckMode) s->requested = pg->side + i * kMaxSlabObjects;
  return s;
}

void free_slab_record(Slab* s) {
  RecordPage* pg = s->home;
  unsigned i = static_cast<unsigned>(s - pg->recs);
  LockGuard g(g_record_lock);
  MAGSLAB_CHECK(i < kRecordsPerPage && !(pg->free_mask >> i & 1), "slab: bad record free");
  bool was_full = pg->free_mask == 0;
  pg->free_mask = static_cast<uint16_t>(pg->free_mask | (1u << i));
  if (pg->free_mask == kAllFree) {
    list_remove(pg);
    pg->empty_since = platform::now_ns();
    list_push(pg, kOnEmpty);
  } else if (was_full) {
    --g_full_record_pages;
    list_push(pg, kOnPartial);
  }
}

// Decommit record pages all of whose records have been unused since before
// cutoff. Returns bytes decommitted; *left: unused resident pages remain.
size_t release_record_pages(uint64_t cutoff, bool* left) {
  size_t released = 0;
  for (;;) {
    RecordPage* batch[32];
    size_t n = 0;
    {
      LockGuard g(g_record_lock);
      RecordPage* pg;
      while (n < std::size(batch) && (pg = g_rec_lists[kOnEmpty].tail) != nullptr &&
             pg->empty_since < cutoff) {
        list_remove(pg);  // on no list while decommitted: nobody takes it
        batch[n++] = pg;
      }
      if (n == 0) {
        if (g_rec_lists[kOnEmpty].head != nullptr) *left = true;
        return released;
      }
    }
    for (size_t k = 0; k < n; ++k) {
      // Refused: zeroed, resident, and not counted as given back.
      if (platform::decommit(batch[k]->recs, kPageSize))
        released += kPageSize;
      else
        memset(static_cast<void*>(batch[k]->recs), 0, kPageSize);
      // Side arrays: not counted (mostly never touched); refused, they stay
      // resident (carve clears what check mode needs).
      if (batch[k]->side != nullptr) platform::decommit(batch[k]->side, kSideBytes);
    }
    LockGuard g(g_record_lock);
    for (size_t k = 0; k < n; ++k) list_push(batch[k], kOnPurged);
  }
}

Slab* slab_of(const SlabClass&, uintptr_t p) { return pagemap::lookup_slab(p); }

// The head of list `list` (kListShared or kListKept) for slab s; a kept slab's
// bucket follows from its owner, which changes only while it is on no kept list.
Slab*& head_of(SlabClass& sc, const Slab* s, uint8_t list) {
  return list == kListKept ? sc.kept[kept_bucket(s->owner)] : sc.partial;
}

void partial_push(SlabClass& sc, Slab* s, uint8_t list = kListShared) {
  if (list == kListKept) sc.kept_free[kept_bucket(s->owner)] += s->nfree;
  Slab*& head = head_of(sc, s, list);
  s->prev = nullptr;
  s->next = head;
  if (s->next != nullptr) s->next->prev = s;
  head = s;
  s->list = list;
}

void partial_remove(SlabClass& sc, Slab* s) {
  if (s->list == kListNone) return;
  if (s->list == kListKept) sc.kept_free[kept_bucket(s->owner)] -= s->nfree;
  Slab*& head = head_of(sc, s, s->list);
  if (s->prev != nullptr)
    s->prev->next = s->next;
  else
    head = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
  s->list = kListNone;
}

// A kept slab goes to the shared list (past the bound, its owner gone or idle).
void share(SlabClass& sc, Slab* s) {
  partial_remove(sc, s);
  partial_push(sc, s);
}

// A partial slab s, on no kept list, that a refill left: kept for its owner
// (the refilling thread's tag; 0 for none) if the refill asked to `keep` it
// and its free objects fit the bucket's bound, else on the shared list (where
// it stays if it is there).
void keep_or_share(SlabClass& sc, Slab* s, bool keep) {
  if (keep && s->owner != 0 &&
      sc.kept_free[kept_bucket(s->owner)] + s->nfree <= kept_free_max(s->cls)) {
    partial_remove(sc, s);
    partial_push(sc, s, kListKept);
  } else if (s->list == kListNone) {
    partial_push(sc, s);
  }
}

// The slab the next refill of `owner` takes from: its own kept one, else the
// shared list's head; nullptr if neither.
Slab* refill_slab(SlabClass& sc, uint64_t owner) {
  if (owner != 0)
    for (Slab* k = sc.kept[kept_bucket(owner)]; k != nullptr; k = k->next)
      if (k->owner == owner) return k;
  return sc.partial;
}

// Carve a new slab of class cls from node `node`'s chunks; caller holds the
// node's class lock.
Slab* carve(unsigned cls, unsigned node) {
  const ClassInfo& ci = kClasses[cls];
  Slab* s = new_slab_record();
  if (s == nullptr) return nullptr;
  // Check mode keeps each object's state in the same side array (api/check.cc).
  // A recycled record's entries describe another slab's objects: none of
  // this one's has been handed out yet.
  if constexpr (kCheckMode) memset(s->requested, 0, ci.objects * sizeof(uint32_t));
  heap::Run run;
  if (!heap::alloc_slab_run(ci.slab_pages, node, &run)) {
    free_slab_record(s);
    return nullptr;
  }
  s->set_start(reinterpret_cast<uintptr_t>(run.addr()));
  s->cls = cls;
  s->owner = 0;
  s->nfree = ci.objects;
  s->hint = 0;
  s->chunk = run.chunk;
  // The node it is carved for, whose class lists hold it: its chunk's, unless
  // that node's chunks ran out and the OS refused it one (heap::alloc_locked
  // then takes another node's run: its pages go back to their chunk's heap).
  s->node = node;
  s->first_page = run.page;
  s->next = s->prev = nullptr;
  s->list = kListNone;
  s->hollow = 0;
  uint32_t words = (ci.objects + 63) / 64;
  for (uint32_t w = 0; w < words; ++w) s->free_bits[w] = ~uint64_t{0};
  if (ci.objects % 64 != 0) s->free_bits[words - 1] = (uint64_t{1} << (ci.objects % 64)) - 1;
  // The fields above are visible to a free that finds the slab (release stores).
  pagemap::set_slab(s->start(), ci.slab_pages, s, slab_word(cls, 0, s->start()));
  stats::count(cls, stats::kSlabCarved);
  return s;
}

// Unpublish a fully free slab; caller holds the class lock. The pages are given
// back by give_back() after the lock is dropped (it may purge: system calls).
void unpublish(Slab* s) {
  // A later free of an object of this slab finds no slab and is reported.
  pagemap::set_slab(s->start(), kClasses[s->cls].slab_pages, nullptr, 0);
  if (s->hollow != 0) {  // its hollow pages go back to the page heap as dirty ones
    g_hollow_pages.fetch_sub(s->hollow, std::memory_order_relaxed);
    s->hollow = 0;
  }
}

// Are bits lo..hi (inclusive) of `bits` all set?
bool all_set(const uint64_t* bits, uint32_t lo, uint32_t hi) {
  for (uint32_t i = lo; i <= hi;) {
    uint32_t w = i / 64, last = hi - w * 64 < 63 ? hi - w * 64 : 63;
    uint64_t mask =
        (last == 63 ? ~uint64_t{0} : (uint64_t{2} << last) - 1) & (~uint64_t{0} << (i % 64));
    if ((bits[w] & mask) != mask) return false;
    i = w * 64 + last + 1;
  }
  return true;
}

// The objects of slab s that overlap its page pg: [*lo, *hi]; false if none
// does (a page of the slab's tail).
bool page_objects(const ClassInfo& ci, uint32_t pg, uint32_t* lo, uint32_t* hi) {
  uint64_t first = uint64_t{pg} * kPageSize;
  *lo = static_cast<uint32_t>(first / ci.size);
  *hi = static_cast<uint32_t>((first + kPageSize - 1) / ci.size);
  if (*hi >= ci.objects) *hi = ci.objects - 1;
  return *lo <= *hi;
}

uintptr_t page_addr(const Slab* s, uint32_t pg) { return s->start() + uintptr_t{pg} * kPageSize; }

// Write word w into the page words of s: all of them, or with hollow pages
// only the others (a hollow page keeps 0 until a refill restores it).
void write_words(const Slab* s, const ClassInfo& ci, uint64_t w) {
  if (s->hollow == 0) return pagemap::set_slab_words(s->start(), ci.slab_pages, w);
  for (uint32_t pg = 0; pg < ci.slab_pages; ++pg)
    if (pagemap::lookup_word(page_addr(s, pg)) != 0)
      pagemap::set_slab_words(page_addr(s, pg), 1, w);
}

// A refill just took objs[0..n) (in address order) out of slab s, which has
// hollow pages: every hollow page one of them overlaps gets its word back,
// and the objects that start on it and are still free in the slab the free
// key, as if they had come back through a magazine (a double free of one is
// then caught by free's key check again). Class lock held. The page faults
// in here, as it would when the program writes the objects.
void restore_pages(Slab* s, const ClassInfo& ci, void* const* objs, uint32_t n) {
  uint64_t w = slab_word(s->cls, s->owner, s->start());
  uint64_t key = g_free_key.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < n && s->hollow != 0; ++i) {
    uintptr_t off = reinterpret_cast<uintptr_t>(objs[i]) - s->start();
    auto first = static_cast<uint32_t>(off >> kPageShift);
    auto last = static_cast<uint32_t>((off + ci.size - 1) >> kPageShift);
    for (uint32_t pg = first; pg <= last; ++pg) {
      if (pagemap::lookup_word(page_addr(s, pg)) != 0) continue;
      uintptr_t begin = uintptr_t{pg} * kPageSize;
      for (uintptr_t k = (begin + ci.size - 1) / ci.size;
           k < ci.objects && k * ci.size < begin + kPageSize; ++k)
        if (s->free_bits[k / 64] >> (k % 64) & 1)
          *reinterpret_cast<uint64_t*>(s->start() + k * ci.size) = key;
      // release (set_slab_words): a free that finds this word finds the keys.
      pagemap::set_slab_words(page_addr(s, pg), 1, w);
      --s->hollow;
      g_hollow_pages.fetch_sub(1, std::memory_order_relaxed);
    }
  }
}

// The pages go back dirty (no system call here); the page heap purges them
// when its dirty budget is exceeded.
void give_back(Slab* s) {
  ChunkMeta* chunk = s->chunk;
  uint32_t first_page = s->first_page, npages = kClasses[s->cls].slab_pages;
  stats::count(s->cls, stats::kSlabReturned);
  free_slab_record(s);
  heap::free_slab_run(chunk, first_page, npages);
}

// Debug preset: the slab and class equations after a slab changed (class lock
// held): nfree is the number of set bits, no bit past the last object, the
// slab is on the partial list exactly when some but not all of its objects
// are out, and the class has no more objects out than its slabs hold.
void check_slab(const SlabClass& sc, const Slab* s, const ClassInfo& ci) {
  if constexpr (kDebugChecks) {
    uint32_t words = (ci.objects + 63) / 64, bits = 0;
    for (uint32_t w = 0; w < words; ++w)
      bits += static_cast<uint32_t>(__builtin_popcountll(s->free_bits[w]));
    MAGSLAB_CHECK(bits == s->nfree, "slab: nfree differs from its free bitmap");
    MAGSLAB_CHECK(ci.objects % 64 == 0 || (s->free_bits[words - 1] >> (ci.objects % 64)) == 0,
                  "slab: a free bit past the last object");
    MAGSLAB_CHECK(
        s == sc.empty || (s->list != kListNone) == (s->nfree > 0 && s->nfree < ci.objects),
        "slab: on a partial list exactly when partly used");
    MAGSLAB_CHECK(s->list != kListKept || s->owner != 0, "slab: kept for no owner");
    if (s->list == kListKept) {
      uint32_t kept_free = 0;
      for (const Slab* k = sc.kept[kept_bucket(s->owner)]; k != nullptr; k = k->next)
        kept_free += k->nfree;
      MAGSLAB_CHECK(kept_free == sc.kept_free[kept_bucket(s->owner)],
                    "slab: a kept list's free count differs from its slabs'");
    }
    MAGSLAB_CHECK(sc.carved <= sc.slabs * size_t{ci.objects},
                  "class: more objects out than its slabs hold");
    MAGSLAB_CHECK(sc.slabs != 0 || sc.carved == 0, "class: objects out but no slab in use");
    // Hollow pages: exactly those with word 0, and only free objects on them.
    uint32_t zero = 0;
    for (uint32_t pg = 0; s->hollow != 0 && pg < ci.slab_pages; ++pg) {
      if (pagemap::lookup_word(page_addr(s, pg)) != 0) continue;
      ++zero;
      uint32_t lo, hi;
      MAGSLAB_CHECK(page_objects(ci, pg, &lo, &hi) && all_set(s->free_bits, lo, hi),
                    "slab: an object out on a hollow page");
    }
    MAGSLAB_CHECK(zero == s->hollow, "slab: hollow count differs from its zero page words");
  }
}

}  // namespace

uint32_t refill(unsigned cls, void** out, uint32_t n, uint64_t owner, unsigned node, bool keep) {
  const ClassInfo& ci = kClasses[cls];
  if (node >= numa::kMaxNodes) node = 0;
  SlabClass& sc = g_classes[node][cls];
  uint32_t got = 0;
  {
    LockGuard g(sc.lock);
    while (got < n) {
      Slab* s = refill_slab(sc, owner);
      if (s == nullptr) {
        s = sc.empty;
        if (s != nullptr) {
          set_empty(sc, nullptr);  // the cached empty slab is carved again
        } else {
          s = carve(cls, node);
          if (s == nullptr) break;
        }
        ++sc.slabs;
      }
      // The page words carry the owner to free (slab.h); rewritten only on a
      // change, so a thread refilling from its own slab writes nothing there.
      if (s->owner != owner) {  // (a shared slab: refill_slab gives no other owner's kept one)
        s->owner = owner;
        write_words(s, ci, slab_word(cls, owner, s->start()));
      }
      uint32_t taken = got;
      uint32_t words = (ci.objects + 63) / 64;
      for (uint32_t w = s->hint; w < words && got < n; ++w) {
        uint64_t bits = s->free_bits[w];
        while (bits != 0 && got < n) {
          uint32_t b = static_cast<uint32_t>(__builtin_ctzll(bits));
          bits &= bits - 1;
          out[got++] = reinterpret_cast<void*>(s->start() + (uintptr_t{w} * 64 + b) * ci.size);
          --s->nfree;
          ++sc.carved;  // per object, as in release()
          if (s->list == kListKept) --sc.kept_free[kept_bucket(s->owner)];
        }
        s->free_bits[w] = bits;
        if (bits == 0) s->hint = w + 1;
      }
      if (MAGSLAB_UNLIKELY(s->hollow != 0)) restore_pages(s, ci, out + taken, got - taken);
      if (s->nfree == 0)
        partial_remove(sc, s);
      else if (s->list != kListKept)
        keep_or_share(sc, s, keep);
      check_slab(sc, s, ci);
    }
  }
  std::reverse(out, out + got);
  stats::count(cls, stats::kSlabRefill);
  stats::add_in_use(static_cast<size_t>(got) * ci.size);
  return got;
}

namespace {

// Objects one release pass can track (a magazine holds at most mag_max, 1024).
constexpr uint32_t kReleaseBatch = 1024;

// Return to node `node`'s slabs those of objs[0..n) that live there, under
// that node's class lock: all of them if `in` is nullptr, else those whose bit
// is set in `in`. Objects of other nodes get their bit set in `out` (zeroed
// here on the first one); returns the node of the first such object, or -1.
int release_pass(unsigned cls, unsigned node, void* const* objs, uint32_t n, const uint64_t* in,
                 uint64_t* out) {
  const ClassInfo& ci = kClasses[cls];
  SlabClass& sc = g_classes[node][cls];
  Slab* to_give_back[8];
  uint32_t ngive = 0;
  int next = -1;
  {
    LockGuard g(sc.lock);
    for (uint32_t i = 0; i < n; ++i) {
      if (in != nullptr && !(in[i / 64] >> (i % 64) & 1)) continue;
      auto p = reinterpret_cast<uintptr_t>(objs[i]);
      Slab* s = slab_of(sc, p);
      if (s == nullptr) platform::misuse(Misuse::kInvalidFree, objs[i]);
      if (s->cls != cls)  // a magazine of class cls held it: the heap is corrupt
        platform::misuse(
            Misuse::kInvalidFree, objs[i],
            BlockInfo::small(s->cls, kClasses[s->cls].size, "in a magazine of another class"));
      if (MAGSLAB_UNLIKELY(s->node != node)) {  // several nodes only: a later pass
        if (next < 0) {
          next = static_cast<int>(s->node);
          for (uint32_t w = 0; w < kReleaseBatch / 64; ++w) out[w] = 0;
        }
        out[i / 64] |= uint64_t{1} << (i % 64);
        continue;
      }
      uint32_t idx = static_cast<uint32_t>((p - s->start()) / ci.size);
      uint64_t bit = uint64_t{1} << (idx % 64);
      if (s->free_bits[idx / 64] & bit)
        platform::misuse(Misuse::kDoubleFree, objs[i],
                         BlockInfo::small(cls, ci.size, "already free in its slab"));
      s->free_bits[idx / 64] |= bit;
      if (idx / 64 < s->hint) s->hint = idx / 64;
      ++s->nfree;
      --sc.carved;  // per object: the class equation holds whenever the lock is free
      if (s->list == kListKept && ++sc.kept_free[kept_bucket(s->owner)] > kept_free_max(cls))
        share(sc, s);  // past the bound: for every refill
      if (s->nfree == 1 && s->list == kListNone) partial_push(sc, s);
      if (s->nfree == ci.objects) {
        partial_remove(sc, s);
        --sc.slabs;
        if (sc.empty == nullptr) {
          set_empty(sc, s);
          sc.empty_since = platform::now_ns();
          decay_event::note();
        } else {
          unpublish(s);
          if (ngive == std::size(to_give_back)) {
            // Rare (a magazine emptied many slabs at once): give back inline.
            sc.lock.unlock();
            for (uint32_t k = 0; k < ngive; ++k) give_back(to_give_back[k]);
            sc.lock.lock();
            ngive = 0;
          }
          to_give_back[ngive++] = s;
        }
      }
      if (s->nfree != ci.objects || sc.empty == s) check_slab(sc, s, ci);
    }
  }
  for (uint32_t k = 0; k < ngive; ++k) give_back(to_give_back[k]);
  return next;
}

// The node of p's slab, for the first pass (0 if p is no slab object: the
// pass reports it).
unsigned node_of(const void* p) {
  const Slab* s = pagemap::lookup_slab(reinterpret_cast<uintptr_t>(p));
  return s != nullptr && s->node < numa::kMaxNodes ? s->node : 0;
}

}  // namespace

void release(unsigned cls, void* const* objs, uint32_t n) {
  for (uint32_t off = 0; off < n; off += kReleaseBatch) {
    uint32_t k = n - off < kReleaseBatch ? n - off : kReleaseBatch;
    // One pass per node the objects belong to, each under that node's class
    // lock; one node: a single pass, as in a NUMA-unaware allocator. Each
    // pass releases at least one object, so at most kMaxNodes passes.
    uint64_t a[kReleaseBatch / 64], b[kReleaseBatch / 64];
    unsigned node = numa::nodes() == 1 ? 0 : node_of(objs[off]);
    int next = release_pass(cls, node, objs + off, k, nullptr, a);
    for (bool in_a = true; next >= 0; in_a = !in_a)
      next =
          release_pass(cls, static_cast<unsigned>(next), objs + off, k, in_a ? a : b, in_a ? b : a);
  }
  stats::count(cls, stats::kSlabRelease);
  stats::sub_in_use(static_cast<size_t>(n) * kClasses[cls].size);
}

uint32_t adopt(unsigned cls, void* const* objs, uint32_t n, uint64_t owner, unsigned node,
               bool (*gone)(uint64_t tag)) {
  const ClassInfo& ci = kClasses[cls];
  uint32_t adopted = 0;
  uint64_t running = owner;  // the last tag found running: a magazine's objects share few owners
  for (uint32_t i = 0; i < n; ++i) {
    auto a = reinterpret_cast<uintptr_t>(objs[i]);
    uint64_t w = pagemap::lookup_word(a);  // 0 only if a were on a hollow page: skipped
    uint64_t was = word_owner(w);
    if (w == 0 || was == owner || was == running) continue;
    if (!gone(was)) {
      running = was;
      continue;
    }
    Slab* s = pagemap::lookup_slab(a);
    // Another node's: its objects would become this thread's to hand out
    // (until stop 50 a thread on node 1 adopted an exited node-0 thread's
    // slabs and its mallocs returned node 0's memory).
    if (s->node != node) continue;
    SlabClass& sc = g_classes[s->node][cls];
    LockGuard g(sc.lock);
    if (s->owner != was) continue;
    // Kept for its exited owner (before disown got to it): to the shared list,
    // while its kept bucket still follows from its owner.
    if (s->list == kListKept) share(sc, s);
    s->owner = owner;
    write_words(s, ci, slab_word(cls, owner, s->start()));
    ++adopted;
  }
  return adopted;
}

int home_node(void* const* objs, uint32_t n) {
  int home = -1;
  for (uint32_t i = 0; i < n; ++i) {
    const Slab* s = pagemap::lookup_slab(reinterpret_cast<uintptr_t>(objs[i]));
    if (s == nullptr) return -1;
    int node = static_cast<int>(s->node);
    if (home < 0)
      home = node;
    else if (node != home)
      return -1;
  }
  return home;
}

bool is_free_in_slab(unsigned cls, void* p) {
  const ClassInfo& ci = kClasses[cls];
  SlabClass& sc = g_classes[node_of(p)][cls];
  LockGuard g(sc.lock);
  auto a = reinterpret_cast<uintptr_t>(p);
  Slab* s = slab_of(sc, a);
  if (s == nullptr || s->cls != cls) return false;
  uint32_t idx = static_cast<uint32_t>((a - s->start()) / ci.size);
  return (s->free_bits[idx / 64] >> (idx % 64)) & 1;
}

size_t trim() {
  size_t bytes = 0;
  for (unsigned node = 0, nodes = numa::nodes(); node < nodes; ++node) {
    for (unsigned c = 0; c < kNumClasses; ++c) {
      SlabClass& sc = g_classes[node][c];
      Slab* s = nullptr;
      {
        LockGuard g(sc.lock);
        s = sc.empty;
        set_empty(sc, nullptr);
        if (s != nullptr) unpublish(s);
      }
      if (s != nullptr) {
        give_back(s);
        bytes += kClasses[c].slab_pages * kPageSize;
      }
    }
  }
  return bytes;
}

namespace {

// Decommit the pages of s that only free objects overlap (and that are not
// hollow already); class lock held. Returns pages made hollow; *given: of
// those, pages the OS took.
uint32_t hollow_slab(Slab* s, const ClassInfo& ci, size_t* given) {
  uint32_t done = 0, run = 0, len = 0;
  for (uint32_t pg = 0; pg <= ci.slab_pages; ++pg) {
    uint32_t lo, hi;
    bool free = pg < ci.slab_pages && page_objects(ci, pg, &lo, &hi) &&
                all_set(s->free_bits, lo, hi) && pagemap::lookup_word(page_addr(s, pg)) != 0;
    if (free) {
      if (len++ == 0) run = pg;
      continue;
    }
    if (len == 0) continue;
    // Words first: from here a free of one of these objects (a misuse) takes
    // the slow path, which reports it, and a refill restores the page.
    for (uint32_t k = run; k < run + len; ++k) pagemap::set_slab_words(page_addr(s, k), 1, 0);
    // Refused: the pages stay committed, and hollow all the same, but are not
    // counted as given back (stop 54's bug hunt).
    if (platform::decommit(reinterpret_cast<void*>(page_addr(s, run)), size_t{len} * kPageSize))
      *given += len;
    done += len;
    len = 0;
  }
  s->hollow = static_cast<uint16_t>(s->hollow + done);
  return done;
}

}  // namespace

size_t hollow() {
  size_t pages = 0;  // given back
  for (unsigned node = 0, nodes = numa::nodes(); node < nodes; ++node) {
    for (unsigned c = 0; c < kNumSmallClasses; ++c) {  // larger classes: one object a slab
      SlabClass& sc = g_classes[node][c];
      LockGuard g(sc.lock);
      auto hollow_list = [&](Slab* head) {
        for (Slab* s = head; s != nullptr; s = s->next) {
          uint32_t n = hollow_slab(s, kClasses[c], &pages);
          g_hollow_pages.fetch_add(n, std::memory_order_relaxed);
          check_slab(sc, s, kClasses[c]);
        }
      };
      hollow_list(sc.partial);
      for (Slab* head : sc.kept) hollow_list(head);
    }
  }
  return pages * kPageSize;
}

void disown(uint64_t owner) {
  if (owner == 0) return;
  for (unsigned node = 0, nodes = numa::nodes(); node < nodes; ++node) {
    for (unsigned c = 0; c < kNumSmallClasses; ++c) {  // larger classes: never partial
      SlabClass& sc = g_classes[node][c];
      LockGuard g(sc.lock);
      for (Slab *s = sc.kept[kept_bucket(owner)], *next; s != nullptr; s = next) {
        next = s->next;
        if (s->owner == owner) share(sc, s);
      }
    }
  }
}

size_t hollow_bytes() { return g_hollow_pages.load(std::memory_order_relaxed) * kPageSize; }

void report_hollow(const void* p, Misuse kind) {
  auto a = reinterpret_cast<uintptr_t>(p);
  Slab* s = pagemap::lookup_slab(a);
  MAGSLAB_CHECK(s != nullptr, "slab: report_hollow outside every slab");
  unsigned cls = s->cls < kNumClasses ? s->cls : 0;
  const ClassInfo& ci = kClasses[cls];
  if (object_start(s, a) && is_free_in_slab(cls, const_cast<void*>(p)))
    platform::misuse(kind == Misuse::kInvalidFree ? Misuse::kDoubleFree : kind, p,
                     BlockInfo::small(cls, ci.size, "already free in its slab"));
  platform::misuse(kind, p, BlockInfo::small(cls, ci.size));
}

unsigned classes_to_decay() {
  unsigned n = 0;
  for (const auto& w : g_has_empty)
    n += static_cast<unsigned>(__builtin_popcountll(w.load(std::memory_order_relaxed)));
  return n;  // relaxed: see g_has_empty
}

size_t decay(uint64_t cutoff, uint64_t record_cutoff, bool* pending) {
  size_t bytes = 0;
  const unsigned end = numa::nodes() * kNumClasses;
  for (unsigned w = 0; w * 64 < end; ++w) {
    // relaxed: see g_has_empty.
    for (uint64_t bits = g_has_empty[w].load(std::memory_order_relaxed); bits != 0;
         bits &= bits - 1) {
      const unsigned i = w * 64 + static_cast<unsigned>(__builtin_ctzll(bits));
      if (i >= end) break;
      SlabClass& sc = g_classes[i / kNumClasses][i % kNumClasses];
      Slab* s = nullptr;
      {
        LockGuard g(sc.lock);
        if (sc.empty != nullptr) {
          if (sc.empty_since < cutoff) {
            s = sc.empty;
            set_empty(sc, nullptr);
            unpublish(s);
          } else {
            *pending = true;
          }
        }
      }
      if (s != nullptr) {
        give_back(s);
        bytes += kClasses[i % kNumClasses].slab_pages * kPageSize;
      }
    }
  }
  return bytes + release_record_pages(record_cutoff, pending);
}

// Every pool's class locks, not just those of the nodes() in use: a first
// allocation in another thread may raise nodes() (reading the topology) just
// before the fork, and a node-1 lock it then took must not reach the child
// held. 8 x 97 uncontended locks: microseconds, against a fork's milliseconds.
void lock_all_for_fork() {
  for (auto& node : g_classes)
    for (SlabClass& sc : node) sc.lock.lock_for_fork();
  g_record_lock.lock_for_fork();  // inside the class locks, as everywhere
}

void unlock_all_after_fork() {
  g_record_lock.unlock_after_fork();
  for (unsigned node = numa::kMaxNodes; node-- > 0;)
    for (unsigned c = kNumClasses; c-- > 0;) g_classes[node][c].lock.unlock_after_fork();
}

RecordCounts record_counts() {
  // Every page is on one list, except full ones, which are counted apart.
  RecordCounts rc{};
  LockGuard g(g_record_lock);
  for (RecordPage* p = g_rec_lists[kOnPartial].head; p != nullptr; p = p->next) ++rc.used_pages;
  for (RecordPage* p = g_rec_lists[kOnEmpty].head; p != nullptr; p = p->next) ++rc.idle_pages;
  for (RecordPage* p = g_rec_lists[kOnPurged].head; p != nullptr; p = p->next) ++rc.purged_pages;
  rc.used_pages += g_full_record_pages;
  return rc;
}

ClassCounts counts_on(unsigned cls, unsigned node) {
  if (node >= numa::kMaxNodes) return ClassCounts{};
  SlabClass& sc = g_classes[node][cls];
  LockGuard g(sc.lock);
  return ClassCounts{sc.carved, sc.slabs + (sc.empty != nullptr ? 1 : 0),
                     sc.empty != nullptr ? 1u : 0u};
}

ClassCounts counts(unsigned cls) {
  ClassCounts sum{};
  for (unsigned node = 0, nodes = numa::nodes(); node < nodes; ++node) {
    ClassCounts c = counts_on(cls, node);
    sum.carved_objects += c.carved_objects;
    sum.slabs += c.slabs;
    sum.empty_cached_slabs += c.empty_cached_slabs;
  }
  return sum;
}

}  // namespace slab
}  // namespace magslab
