// Out of memory from the OS, injected through the platform seam
// (platform::set_ops_for_testing): a fake PlatformOps whose map() returns
// nullptr once armed, everything else going to the real OS. While armed,
// every request that needs new memory fails cleanly (NULL + ENOMEM, or the
// ENOMEM return of posix_memalign), a failed realloc leaves the old block
// intact, and once the OS "comes back" the heap is fully usable and the live
// counters return exactly to their baseline.
#include <errno.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "magslab/magslab.hpp"
#include "small/decay.h"
#include "small/depot.h"
#include "small/size_classes.h"
#include "testing/fake_os.h"

namespace {

namespace fake_os = mstest::fake_os;

// The fake OS (testing/fake_os.h) installed for a scope, forwarding every call
// until armed; the real OS comes back on every exit path.
class FakeOsGuard : public fake_os::Guard {
 public:
  void arm_map() { fake_os::refuse_maps(true); }
  void arm_remap() { fake_os::refuse_remap_growth(true); }
  void disarm() { fake_os::refuse_nothing(); }
};

// Frees every pointer of the list (on every exit path).
struct Owned {
  std::vector<void*> ptrs;
  Owned() { ptrs.reserve(1 << 16); }
  ~Owned() {
    for (void* p : ptrs) magslab_free(p);
  }
};

struct magslab_stats g_st;

size_t live_objects() {
  magslab_stats(&g_st);
  return g_st.live_objects;
}

constexpr size_t kLarge = 200 << 10;  // a page run
constexpr size_t kHuge = 8 << 20;     // a mapping of its own
// A slab class that nothing else in this process uses: 7 KiB objects.
constexpr size_t kFreshSize = 7000;

// Allocates `size` until NULL (keeping the blocks in `keep`); returns errno of
// the failure. Bounded by `limit` so that a seam that does not fail cannot
// make the test run away.
int exhaust(size_t size, Owned& keep, size_t limit, size_t* count) {
  *count = 0;
  for (size_t i = 0; i < limit; ++i) {
    errno = 0;
    void* p = magslab_malloc(size);
    if (p == nullptr) return errno;
    keep.ptrs.push_back(p);
    ++*count;
  }
  return -1;  // never failed
}

TEST(OutOfMemory, FailsCleanlyAndHeapRecovers) {
  // Warm up: thread cache, page map, the classes used below (not kFreshSize).
  magslab_free(magslab_malloc(16));
  magslab_free(magslab_malloc(100));
  magslab_free(magslab_malloc(kLarge));
  magslab_free(magslab_malloc(kHuge));
  // Empty the large-run cache and give back free chunks, so that after
  // exhausting the partly used chunks nothing is left but new mappings.
  magslab_trim();
  const size_t baseline = live_objects();
  Owned keep;

  // A small block and a large block made before the failure, with contents.
  char* small = static_cast<char*>(magslab_malloc(100));
  ASSERT_NE(small, nullptr);
  for (int i = 0; i < 100; ++i) small[i] = static_cast<char>(i * 7 + 1);
  keep.ptrs.push_back(small);

  FakeOsGuard os;
  os.arm_map();

  // Large runs: eat what the mapped chunks still hold, then the next one fails.
  size_t n_large = 0;
  EXPECT_EQ(exhaust(kLarge, keep, 4096, &n_large), ENOMEM) << "after " << n_large << " blocks";
  errno = 0;
  EXPECT_EQ(magslab_malloc(kLarge), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // A different page count (no exact cache hit possible: the cache is empty).
  errno = 0;
  EXPECT_EQ(magslab_malloc(300 << 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);

  // Huge blocks always need a new mapping.
  errno = 0;
  EXPECT_EQ(magslab_malloc(kHuge), nullptr);
  EXPECT_EQ(errno, ENOMEM);

  // A slab class never used before: its first slab comes out of what is left
  // in the chunks (runs too short for 200 KiB); allocate until a new slab
  // would need a new chunk.
  ASSERT_EQ(magslab::kClasses[magslab::class_of(kFreshSize)].size % 16, 0u);
  size_t n_fresh = 0;
  EXPECT_EQ(exhaust(kFreshSize, keep, 1 << 15, &n_fresh), ENOMEM) << "after " << n_fresh;
  std::printf("before the first failure: %zu blocks of 200 KiB, %zu objects of %zu B\n", n_large,
              n_fresh, kFreshSize);
  errno = 0;
  EXPECT_EQ(magslab_malloc(kFreshSize), nullptr);
  EXPECT_EQ(errno, ENOMEM);

  // calloc, small and large and huge.
  errno = 0;
  EXPECT_EQ(magslab_calloc(1, kFreshSize), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(magslab_calloc(kLarge / 8, 8), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(magslab_calloc(1, kHuge), nullptr);
  EXPECT_EQ(errno, ENOMEM);

  // posix_memalign: returns ENOMEM, leaves *memptr alone (and errno too).
  void* sentinel = reinterpret_cast<void*>(uintptr_t{0x1234});
  void* mp = sentinel;
  errno = 0;
  EXPECT_EQ(magslab_posix_memalign(&mp, 64, kLarge), ENOMEM);
  EXPECT_EQ(mp, sentinel);
  EXPECT_EQ(magslab_posix_memalign(&mp, 4096, kHuge), ENOMEM);
  EXPECT_EQ(mp, sentinel);
  EXPECT_EQ(magslab_posix_memalign(&mp, size_t{1} << 21, kLarge), ENOMEM);
  EXPECT_EQ(mp, sentinel);
  EXPECT_EQ(magslab_posix_memalign(&mp, 16, kFreshSize), ENOMEM);
  EXPECT_EQ(mp, sentinel);
  // 8 KiB aligned to 4 KiB: another unused class, whose 16-page slab does not
  // fit in the runs shorter than a 14-page slab of the exhausted 7 KiB class.
  ASSERT_GT(magslab::kClasses[magslab::class_of(8192)].slab_pages,
            magslab::kClasses[magslab::class_of(kFreshSize)].slab_pages);
  EXPECT_EQ(magslab_posix_memalign(&mp, 4096, 8192), ENOMEM);
  EXPECT_EQ(mp, sentinel);
  EXPECT_EQ(errno, 0) << "posix_memalign must not set errno";
  errno = 0;
  EXPECT_EQ(magslab_aligned_alloc(4096, kHuge), nullptr);
  EXPECT_EQ(errno, ENOMEM);

  // realloc to a big size: NULL, ENOMEM, the old block intact and still ours.
  errno = 0;
  EXPECT_EQ(magslab_realloc(small, kHuge), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(magslab_realloc(small, kLarge), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(small[i], static_cast<char>(i * 7 + 1)) << i;
  EXPECT_GE(magslab_usable_size(small), 100u);
  if (!keep.ptrs.empty() && n_large > 0) {
    // A large block that cannot grow in place (its neighbours are taken or too short).
    char* big = static_cast<char*>(keep.ptrs[1]);
    big[0] = 'x';
    big[kLarge - 1] = 'y';
    errno = 0;
    EXPECT_EQ(magslab_realloc(big, 900 << 10), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(big[0], 'x');
    EXPECT_EQ(big[kLarge - 1], 'y');
    EXPECT_GE(magslab_usable_size(big), kLarge);
  }
  EXPECT_GT(fake_os::counts().refused_maps, 0) << "the seam was never consulted";

  // The OS is back: everything works again.
  os.disarm();
  void* l = magslab_malloc(kLarge);
  void* h = magslab_malloc(kHuge);
  void* f = magslab_malloc(kFreshSize);
  void* z = magslab_calloc(1, kHuge);
  ASSERT_NE(l, nullptr);
  ASSERT_NE(h, nullptr);
  ASSERT_NE(f, nullptr);
  ASSERT_NE(z, nullptr);
  memset(l, 1, kLarge);
  memset(h, 2, kHuge);
  memset(f, 3, kFreshSize);
  EXPECT_EQ(static_cast<char*>(z)[kHuge - 1], 0);
  keep.ptrs.insert(keep.ptrs.end(), {l, h, f, z});
  ASSERT_EQ(magslab_posix_memalign(&mp, 4096, kHuge), 0);
  keep.ptrs.push_back(mp);
  char* grown = static_cast<char*>(magslab_realloc(small, kHuge));
  ASSERT_NE(grown, nullptr);
  keep.ptrs[0] = grown;  // small was freed by the successful realloc
  for (int i = 0; i < 100; ++i) ASSERT_EQ(grown[i], static_cast<char>(i * 7 + 1)) << i;

  // Free everything made during the test: the live count is the baseline again.
  EXPECT_EQ(live_objects(), baseline + keep.ptrs.size());
  for (void* p : keep.ptrs) magslab_free(p);
  keep.ptrs.clear();
  EXPECT_EQ(live_objects(), baseline);
  magslab_trim();
  EXPECT_EQ(live_objects(), baseline);

  // And the freed memory is reusable.
  void* again = magslab_malloc(kFreshSize);
  ASSERT_NE(again, nullptr);
  magslab_free(again);
  EXPECT_EQ(live_objects(), baseline);
}

// A huge block that cannot grow: both mremap in place and a new mapping fail.
TEST(OutOfMemory, HugeReallocFailureKeepsBlock) {
  const size_t baseline = live_objects();
  auto* p = static_cast<unsigned char*>(magslab_malloc(kHuge));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < kHuge; i += 4096) p[i] = static_cast<unsigned char>(i >> 12);
  p[kHuge - 1] = 0xAB;
  {
    FakeOsGuard os;
    os.arm_map();
    os.arm_remap();
    errno = 0;
    EXPECT_EQ(magslab_realloc(p, 64 << 20), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    // Shrinking needs no new memory.
    void* q = magslab_realloc(p, 6 << 20);
    EXPECT_EQ(q, p) << "a huge shrink is done in place";
    if (q != nullptr) p = static_cast<unsigned char*>(q);
  }
  for (size_t i = 0; i < (6u << 20); i += 4096)
    ASSERT_EQ(p[i], static_cast<unsigned char>(i >> 12)) << i;
  EXPECT_EQ(live_objects(), baseline + 1);
  magslab_free(p);
  EXPECT_EQ(live_objects(), baseline);
}

// Review findings (stop 32). A huge realloc that fails must leave nothing
// behind: it prepared page-map leaves (then 64 MiB of address space per 16
// GiB, now 4 MiB per GiB; never unmapped) for the whole range it tried to
// grow into before knowing whether the memory could be had — 512 MiB of
// address space, counted by RLIMIT_AS, kept for good by one failed
// realloc(p, 128 GiB).
TEST(OutOfMemory, AFailedHugeGrowthLeavesNoPageMapBehind) {
  auto* p = static_cast<unsigned char*>(magslab_malloc(kHuge));
  ASSERT_NE(p, nullptr);
  p[0] = 0x5A;
  magslab_stats(&g_st);
  const size_t meta = g_st.metadata_bytes;
  {
    FakeOsGuard os;
    os.arm_map();
    os.arm_remap();
    errno = 0;
    EXPECT_EQ(magslab_realloc(p, size_t{128} << 30), nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
  magslab_stats(&g_st);
  EXPECT_EQ(g_st.metadata_bytes, meta) << "leaves mapped for a growth that failed";
  EXPECT_EQ(p[0], 0x5A);
  magslab_free(p);
}

// A huge realloc that succeeds leaves errno alone, also when the OS refused
// the remap it tried first: a shrink the kernel would not split (the block
// keeps its mapping), or a move (the block is copied instead).
TEST(OutOfMemory, AHugeReallocThatSucceedsAfterARefusedRemapLeavesErrnoAlone) {
  auto* p = static_cast<unsigned char*>(magslab_malloc(kHuge));
  ASSERT_NE(p, nullptr);
  p[0] = 0x5A;
  {
    FakeOsGuard os;
    fake_os::refuse_remaps(true);
    errno = 0;
    auto* q = static_cast<unsigned char*>(magslab_realloc(p, kHuge - (2 << 20)));
    EXPECT_EQ(q, p) << "a refused shrink keeps the block where it is";
    EXPECT_EQ(errno, 0) << "after a shrink that succeeded";
    p = q != nullptr ? q : p;
    errno = 0;
    q = static_cast<unsigned char*>(magslab_realloc(p, 4 * kHuge));  // in place, else a move
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(errno, 0) << "after a growth that succeeded by a copy";
    EXPECT_EQ(q[0], 0x5A);
    p = q;
    EXPECT_GT(fake_os::counts().refused_remaps, 0u);
  }
  magslab_free(p);
}

// A small block that grows past its class tries a class a quarter larger
// first (api/magslab.cc, realloc_at); when that fails and the class of the
// size asked serves it (here from the thread's magazine), the realloc
// succeeds — and errno must not keep the failed try's ENOMEM (it did).
TEST(OutOfMemory, AReallocThatFallsBackToTheSizeAskedLeavesErrnoAlone) {
  constexpr size_t kOld = 10240, kAsked = kOld + 1,
                   kNext = 11264;  // classes nothing else here uses
  const size_t kQuarter = magslab::kClasses[magslab::class_of(kOld + kOld / 4)].size;
  ASSERT_GT(kQuarter, kNext);
  auto* p = static_cast<unsigned char*>(magslab_malloc(kOld));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(magslab_usable_size(p), kOld);
  memset(p, 0x6b, kOld);
  magslab_free(magslab_malloc(kNext));  // one block of the next class in this thread's magazine
  Owned keep;
  {
    FakeOsGuard os;
    os.arm_map();
    size_t n = 0;  // the quarter-larger class: until no slab, page or chunk is left for it
    ASSERT_EQ(exhaust(kQuarter, keep, 1 << 16, &n), ENOMEM) << "after " << n << " blocks";
    errno = 0;
    auto* q = static_cast<unsigned char*>(magslab_realloc(p, kAsked));
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(errno, 0) << "after a realloc that succeeded";
    EXPECT_EQ(magslab_usable_size(q), kNext) << "the class of the size asked";
    for (size_t i = 0; i < kOld; ++i) ASSERT_EQ(q[i], 0x6b) << i;
    p = q;
  }
  magslab_free(p);
}

// realloc(p, n) of huge block p with the chunk after its mapping taken, so
// that it cannot grow in place (if that chunk is mapped already: as good).
void* realloc_not_in_place(void* p, size_t n) {
  constexpr uintptr_t kChunk = 4 << 20;
  const uintptr_t after = reinterpret_cast<uintptr_t>(p) + magslab_usable_size(p);
  void* guard = mmap(reinterpret_cast<void*>((after + kChunk - 1) & ~(kChunk - 1)), kChunk,
                     PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  void* q = magslab_realloc(p, n);
  if (guard != MAP_FAILED) munmap(guard, kChunk);
  return q;
}

// A huge block that cannot grow in place moves by mremap to a chunk-aligned
// target it mapped first. When the kernel refuses the move it has already
// unmapped the target (mremap_to unmaps it before the checks that fail), and
// another thread may map something there at once: the failed move must not
// unmap the target again (review, stop 32), or that mapping goes with it.
TEST(OutOfMemory, ARefusedHugeMoveLeavesWhateverIsMappedAtItsTargetAlone) {
  auto* p = static_cast<unsigned char*>(magslab_malloc(kHuge));
  ASSERT_NE(p, nullptr);
  p[0] = 0x5A;
  void* squat = nullptr;
  {
    FakeOsGuard os;
    fake_os::refuse_remaps(true);
    fake_os::squat_on_refused_moves(true);
    auto* q = static_cast<unsigned char*>(realloc_not_in_place(p, 4 * kHuge));
    ASSERT_NE(q, nullptr) << "the copy makes up for the refused move";
    EXPECT_EQ(q[0], 0x5A);
    p = q;
    squat = fake_os::squatter();
  }
  ASSERT_NE(squat, nullptr) << "no move was refused: the test tests nothing";
  // Still mapped, and still the squatter's page (not a mapping of magslab's
  // that took its place after it was unmapped).
  ASSERT_EQ(msync(squat, 4096, MS_ASYNC), 0) << "the page mapped at the target was unmapped";
  EXPECT_EQ(*static_cast<uint64_t*>(squat), fake_os::kSquatterMark)
      << "the page mapped at the target was unmapped, and the range mapped again";
  const auto s = reinterpret_cast<uintptr_t>(squat), q = reinterpret_cast<uintptr_t>(p);
  EXPECT_FALSE(s >= q && s < q + magslab_usable_size(p)) << "the new block covers it";
  munmap(squat, 4096);
  magslab_free(p);
}

// The same, with the squatter's mapping covering the whole target (another
// thread's huge block of that size may land exactly there): the target is
// mapped whole again, but it is not magslab's, and must be left alone
// (review, stop 34: the check was only "still mapped whole").
TEST(OutOfMemory, ARefusedHugeMoveLeavesAMappingOfTheWholeTargetAlone) {
  auto* p = static_cast<unsigned char*>(magslab_malloc(kHuge));
  ASSERT_NE(p, nullptr);
  p[0] = 0x5A;
  void* squat = nullptr;
  void* target = nullptr;
  {
    FakeOsGuard os;
    fake_os::refuse_remaps(true);
    fake_os::squat_on_refused_moves(true);
    fake_os::squat_whole_target(true);
    auto* q = static_cast<unsigned char*>(realloc_not_in_place(p, 4 * kHuge));
    ASSERT_NE(q, nullptr) << "the copy makes up for the refused move";
    EXPECT_EQ(q[0], 0x5A);
    p = q;
    squat = fake_os::squatter();
    target = fake_os::refused_target();
  }
  ASSERT_NE(squat, nullptr) << "no move was refused: the test tests nothing";
  ASSERT_EQ(squat, target);
  ASSERT_EQ(msync(squat, 4096, MS_ASYNC), 0) << "the mapping at the target was unmapped";
  EXPECT_EQ(*static_cast<uint64_t*>(squat), fake_os::kSquatterMark)
      << "the mapping at the target was unmapped, and the range mapped again";
  const auto s = reinterpret_cast<uintptr_t>(squat), q = reinterpret_cast<uintptr_t>(p);
  EXPECT_FALSE(s >= q && s < q + magslab_usable_size(p)) << "the new block covers it";
  munmap(squat, 4 * kHuge);
  magslab_free(p);
}

// The same move refused before the kernel unmapped the target (its map count
// check comes first): the target, still mapped whole, is magslab's and goes
// back — the new block may be mapped there again, but nothing else is.
TEST(OutOfMemory, AHugeMoveRefusedEarlyGivesItsTargetBack) {
  auto* p = static_cast<unsigned char*>(magslab_malloc(kHuge));
  ASSERT_NE(p, nullptr);
  void* target = nullptr;
  {
    FakeOsGuard os;
    fake_os::refuse_remaps(true);
    fake_os::refuse_moves_early(true);
    auto* q = static_cast<unsigned char*>(realloc_not_in_place(p, 4 * kHuge));
    ASSERT_NE(q, nullptr);
    p = q;
    target = fake_os::refused_target();
  }
  ASSERT_NE(target, nullptr) << "no move was refused: the test tests nothing";
  const auto t = reinterpret_cast<uintptr_t>(target), q = reinterpret_cast<uintptr_t>(p);
  const bool reused = t >= q && t < q + magslab_usable_size(p);
  EXPECT_TRUE(reused || msync(target, 4096, MS_ASYNC) != 0)
      << "the refused move's target is still mapped: leaked";
  magslab_free(p);
}

// A refused mapping is tried once more after magslab gives back what holds
// address space (cached empty slabs, free chunks, parked and cached huge
// mappings): what is refused is often the address space magslab's own cached
// mappings fill (RLIMIT_AS). Found by a bug-hunt helper: under `ulimit -v`, a
// program that freed every 3 MB block it could get then got 63 blocks of 64
// KiB (1791 after a magslab_trim; glibc 2957). Here the fake OS refuses
// every map until something is unmapped: a huge block's cached mapping fills
// the address space. The huge path and the slab path (a new chunk for
// slabs). The reclaim leaves the depot alone: a program that keeps asking for
// what it cannot have must not drain every thread's magazines at each try
// (a review; the first version ran magslab_trim).
TEST(OutOfMemory, ARefusedMappingIsTriedAgainAfterGivingBackWhatIsCached) {
  FakeOsGuard os;
  magslab_trim();  // nothing cached by earlier tests is left to age out (and be unmapped) below
  // No decay pass halves the depot below (the decay thread runs: tests made threads).
  magslab::decay::pause(true);
  struct Resume {
    ~Resume() { magslab::decay::pause(false); }
  } resume;
  // Full magazines of a class in the depot: a thread's frees, left at its exit.
  const unsigned cls = magslab::class_of(256);
  std::thread([] {
    std::vector<void*> v(8 * size_t{magslab::mag_cap(magslab::class_of(256))});
    for (void*& p : v) p = magslab_malloc(256);
    for (void* p : v) magslab_free(p);
  }).join();
  const size_t in_depot = magslab::depot::cached_objects(cls);
  ASSERT_GT(in_depot, 0u);

  void* h = magslab_malloc(kHuge);
  ASSERT_NE(h, nullptr);
  magslab_free(h);  // its mapping stays cached for the next huge block
  fake_os::refuse_maps_until_unmap(true);
  errno = 0;
  void* big = magslab_malloc(4 * kHuge);  // too big for the cached mapping: a mapping of its own
  EXPECT_NE(big, nullptr);
  EXPECT_EQ(errno, 0);
  EXPECT_GE(fake_os::counts().refused_maps, 1u) << "nothing was refused: the test tests nothing";
  EXPECT_EQ(magslab::depot::cached_objects(cls), in_depot) << "the reclaim drained the depot";
  magslab_free(big);

  h = magslab_malloc(kHuge);
  ASSERT_NE(h, nullptr);
  magslab_free(h);
  fake_os::refuse_maps_until_unmap(true);
  const uint64_t refused = fake_os::counts().refused_maps;
  Owned keep;
  // Blocks of a small class of one block a slab until the page heap needs a
  // new chunk (at most 256 of them: 15 MiB).
  for (int i = 0; i < 256 && fake_os::counts().refused_maps == refused; ++i) {
    errno = 0;
    void* p = magslab_malloc(60 * 1024);
    ASSERT_NE(p, nullptr) << "block " << i;
    EXPECT_EQ(errno, 0);
    keep.ptrs.push_back(p);
  }
  EXPECT_GT(fake_os::counts().refused_maps, refused)
      << "no chunk was mapped: the test tests nothing";
}

// The thread that meets OOM first, in a brand-new thread (no cache yet).
// A refill that takes some objects from partly used slabs and then finds the
// OS refusing a chunk for a new slab still succeeds: the malloc returns a
// block, and must leave errno as it was (a bug hunt at stop 48: hundreds of
// successful mallocs a run left ENOMEM; or_after_reclaim restored errno only
// after its second attempt).
TEST(OutOfMemory, AMallocServedByAPartialRefillLeavesErrnoAlone) {
  const size_t sizes[] = {48, 1000, 5000, 16};
  // Each class in use and its magazines made before the OS refuses.
  for (size_t size : sizes) magslab_free(magslab_malloc(size));
  FakeOsGuard os;
  Owned keep;
  os.arm_map();
  size_t changed = 0, served = 0;
  for (int round = 0; round < 4; ++round) {
    for (size_t size : sizes) {
      for (size_t i = 0; i < (size_t{1} << 20); ++i) {
        errno = 4321;
        void* p = magslab_malloc(size);
        if (p == nullptr) break;
        ++served;
        changed += errno != 4321;
        keep.ptrs.push_back(p);
      }
    }
    // Free a third: the slabs they are from become partly used, and the next
    // round's refills take from them first.
    for (size_t i = static_cast<size_t>(round); i < keep.ptrs.size(); i += 3) {
      magslab_free(keep.ptrs[i]);
      keep.ptrs[i] = keep.ptrs.back();
      keep.ptrs.pop_back();
    }
  }
  os.disarm();
  EXPECT_GT(served, 0u);
  EXPECT_EQ(changed, 0u) << "of " << served << " successful mallocs, these left errno changed";
}

// An object cache's alloc that succeeds leaves errno as it was, as malloc's
// does (AMallocServedByAPartialRefillLeavesErrnoAlone), also when the OS
// refuses some mapping on the way: a cache slab comes from the heap, which may
// still have room in its chunks, and the cache's magazines from the
// metadata arena, which may not.
TEST(OutOfMemory, ACacheAllocThatSucceedsLeavesErrnoAlone) {
  const size_t sizes[] = {24, 200, 3000, 40000};
  for (size_t size : sizes) {
    magslab_cache* c = magslab_cache_create("oom-errno", size, 0, nullptr, nullptr, nullptr);
    ASSERT_NE(c, nullptr);
    std::vector<void*> objs;
    objs.reserve(1 << 16);
    // A slab before the OS refuses (an earlier test may have left the heap
    // without room for one).
    objs.push_back(magslab_cache_alloc(c));
    ASSERT_NE(objs.back(), nullptr);
    size_t changed = 0, served = 0;
    uint64_t refused = 0;
    {
      FakeOsGuard os;
      os.arm_map();
      // Each round until the heap has no room left for a slab (the OS is
      // then asked, and refuses).
      for (int round = 0; round < 3; ++round) {
        for (size_t i = 0; i < (size_t{1} << 22); ++i) {
          errno = 4321;
          void* p = magslab_cache_alloc(c);
          if (p == nullptr) break;
          ++served;
          changed += errno != 4321;
          objs.push_back(p);
        }
        // Give a third back: the next round takes from partly used slabs first.
        for (size_t i = static_cast<size_t>(round); i < objs.size(); i += 3) {
          magslab_cache_free(c, objs[i]);
          objs[i] = objs.back();
          objs.pop_back();
        }
      }
      refused = fake_os::counts().refused_maps;
    }
    for (void* p : objs) magslab_cache_free(c, p);
    magslab_cache_destroy(c);
    EXPECT_GT(served, 0u) << size << " B";
    EXPECT_GT(refused, 0u) << size << " B: the OS was never asked: the test tests nothing";
    EXPECT_EQ(changed, 0u) << size << " B: of " << served
                           << " successful cache allocs, these left errno changed";
  }
}

// A thread's first call to an object cache makes the thread's table of
// magazines (a small block from the heap); without memory for it the call
// goes to the cache's slabs, and an object served from there is a success:
// errno stays as it was. So for a free of that thread: it leaves errno alone,
// as free() does.
TEST(OutOfMemory, ACacheCallInAThreadWithNoMemoryForItsTableLeavesErrnoAlone) {
  magslab_cache* c = magslab_cache_create("oom-table", 64, 0, nullptr, nullptr, nullptr);
  ASSERT_NE(c, nullptr);
  // A slab with free objects in it, not in this thread's magazines: one
  // object kept out holds the slab through the reap.
  void* held = magslab_cache_alloc(c);
  ASSERT_NE(held, nullptr);
  magslab_cache_reap(c);
  Owned keep;
  bool served = false;
  int alloc_errno = 0, free_errno = 0;
  {
    FakeOsGuard os;
    os.arm_map();
    // Every small class up to a page, until none has a block left.
    for (size_t size = 16; size <= 4096; size += 16) {
      for (size_t i = 0; i < (size_t{1} << 20); ++i) {
        void* p = magslab_malloc(size);
        if (p == nullptr) break;
        keep.ptrs.push_back(p);
      }
    }
    std::thread([&] {
      errno = 4321;
      void* p = magslab_cache_alloc(c);
      alloc_errno = errno;
      served = p != nullptr;
      errno = 4321;
      magslab_cache_free(c, p);
      free_errno = errno;
    }).join();
  }
  magslab_cache_free(c, held);
  magslab_cache_destroy(c);
  ASSERT_TRUE(served) << "the cache's slab had no object left";
  EXPECT_EQ(alloc_errno, 4321) << "a successful magslab_cache_alloc changed errno";
  EXPECT_EQ(free_errno, 4321) << "magslab_cache_free changed errno";
}

// free() leaves errno alone (docs/override.md), also when its slow path
// asks the metadata arena for a magazine and the OS refuses the arena a new
// region: the free then goes to the slab, and the refused mapping's ENOMEM
// must not come out of it (stop 50's bug hunt: it did, as it did from a
// thread's first call being a free that found no memory for its cache).
TEST(OutOfMemory, AFreeThatFindsNoMagazineLeavesErrnoAlone) {
  constexpr size_t kSize = 1536;  // a class no other test here fills
  const unsigned cls = magslab::class_of(kSize);
  magslab::decay::pause(true);  // no pass moves magazines meanwhile
  struct Resume {
    ~Resume() { magslab::decay::pause(false); }
  } resume;
  Owned blocks;
  const size_t n = 8 * size_t{magslab::mag_cap(cls)};
  for (size_t i = 0; i < n; ++i) {
    void* p = magslab_malloc(kSize);
    ASSERT_NE(p, nullptr);
    blocks.ptrs.push_back(p);
  }
  FakeOsGuard os;
  os.arm_map();
  // Every empty magazine of the class, and then the arena's last bytes: the
  // next magazine needs a region the OS refuses.
  std::vector<magslab::Magazine*> held;
  while (held.size() < (size_t{1} << 20)) {
    magslab::Magazine* m = magslab::depot::get_empty(cls);
    if (m == nullptr) break;
    held.push_back(m);
  }
  const uint64_t refused = fake_os::counts().refused_maps;
  ASSERT_GT(refused, 0u) << "the arena never ran out";
  size_t changed = 0;
  for (void* p : blocks.ptrs) {
    errno = 4321;
    magslab_free(p);
    changed += errno != 4321;
  }
  blocks.ptrs.clear();
  const uint64_t refused_in_frees = fake_os::counts().refused_maps - refused;
  os.disarm();
  for (magslab::Magazine* m : held) magslab::depot::push_empty(cls, m);
  EXPECT_GT(refused_in_frees, 0u) << "no free asked for a magazine: the test tests nothing";
  EXPECT_EQ(changed, 0u) << "of " << n << " frees, these changed errno";
}

// PoolResource::release() needs a new pool (a small block) for the resource
// to go on with. When none can be had it throws std::bad_alloc — and the
// resource must stay usable: until stop 50's bug hunt it had destroyed its
// pool and kept a null one, and the program's next allocate (after catching
// the exception, with memory back) crashed on it (SIGSEGV).
TEST(OutOfMemory, APoolResourceWhoseReleaseFindsNoMemoryStaysUsable) {
  magslab::pmr::PoolResource pool;
  void* before = pool.allocate(64, 8);
  ASSERT_NE(before, nullptr);
  Owned keep;
  bool threw = false;
  {
    FakeOsGuard os;
    os.arm_map();
    // Every small class up to a page, until none has a block left.
    for (size_t size = 16; size <= 4096; size += 16) {
      for (size_t i = 0; i < (size_t{1} << 20); ++i) {
        void* p = magslab_aligned_alloc(64, size);
        if (p == nullptr) break;
        keep.ptrs.push_back(p);
      }
    }
    try {
      pool.release();
    } catch (const std::bad_alloc&) {
      threw = true;
    }
  }
  ASSERT_TRUE(threw) << "release() found memory: the test tests nothing";
  // Memory is back: the resource still serves, and releases.
  void* p = pool.allocate(64, 8);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, 64);
  pool.deallocate(p, 64, 8);
  void* big = pool.allocate(100000, 64);
  pool.deallocate(big, 100000, 64);
  pool.release();
}

TEST(OutOfMemory, NewThreadUnderOom) {
  const size_t baseline = live_objects();
  void* got_large = reinterpret_cast<void*>(1);
  int err = 0;
  {
    FakeOsGuard os;
    os.arm_map();
    std::thread t([&] {
      errno = 0;
      got_large = magslab_malloc(kHuge);
      err = errno;
    });
    t.join();
  }
  EXPECT_EQ(got_large, nullptr);
  EXPECT_EQ(err, ENOMEM);
  EXPECT_EQ(live_objects(), baseline);
}

}  // namespace
