// Edge behaviour of the public C API ("Behaviour at the edges" in the design
// brief): zero sizes, impossible sizes, overflowing calloc, bad alignments,
// NULL handling and realloc corner cases. Uses only the public C API.

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "magslab/magslab.h"
#include "testing/pattern.h"

namespace {

struct Snapshot {
  size_t live_bytes;
  size_t live_objects;
  size_t mapped_bytes;
};

Snapshot snap() {
  static struct magslab_stats s;  // large struct: keep it off the stack
  magslab_stats(&s);
  return Snapshot{s.live_bytes, s.live_objects, s.mapped_bytes};
}

// Make sure the allocator (and this thread's cache) is initialised, so that
// later "nothing mapped" checks are not disturbed by lazy start-up mappings.
void warm_up() {
  void* p = magslab_malloc(16);
  ASSERT_NE(p, nullptr);
  magslab_free(p);
}

bool is_aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

using mstest::check_pattern;
using mstest::fill_pattern;
using mstest::kNoMismatch;

TEST(ApiEdge, MallocZeroIsUniqueAndFreeable) {
  warm_up();
  Snapshot before = snap();
  void* a = magslab_malloc(0);
  void* b = magslab_malloc(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_TRUE(is_aligned(a, 8));
  EXPECT_TRUE(is_aligned(b, 8));
  // Whatever usable size is reported must really be usable and distinct.
  size_t ua = magslab_usable_size(a), ub = magslab_usable_size(b);
  memset(a, 0x11, ua);
  memset(b, 0x22, ub);
  for (size_t i = 0; i < ua; ++i) ASSERT_EQ(static_cast<uint8_t*>(a)[i], 0x11);
  EXPECT_EQ(snap().live_objects, before.live_objects + 2);
  magslab_free(a);
  magslab_free(b);
  EXPECT_EQ(snap().live_objects, before.live_objects);
  EXPECT_EQ(snap().live_bytes, before.live_bytes);

  // Many malloc(0) at once are all distinct.
  std::vector<void*> v;
  for (int i = 0; i < 1000; ++i) {
    void* p = magslab_malloc(0);
    ASSERT_NE(p, nullptr);
    v.push_back(p);
  }
  std::vector<void*> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
  for (void* p : v) magslab_free(p);
  EXPECT_EQ(snap().live_objects, before.live_objects);
}

TEST(ApiEdge, ImpossibleSizesFailWithEnomemAndMapNothing) {
  warm_up();
  const size_t sizes[] = {
      SIZE_MAX,          SIZE_MAX - 1,          SIZE_MAX - 4096,   SIZE_MAX / 2, SIZE_MAX / 2 + 1,
      (size_t{1} << 62), (size_t{1} << 62) + 1, (size_t{1} << 48),  // past the 47-bit user VA
      SIZE_MAX - 65535,
  };
  for (size_t sz : sizes) {
    SCOPED_TRACE(testing::Message() << "size=" << sz);
    Snapshot before = snap();
    errno = 0;
    void* p = magslab_malloc(sz);
    int e = errno;
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(e, ENOMEM);
    Snapshot after = snap();
    EXPECT_EQ(after.mapped_bytes, before.mapped_bytes);
    EXPECT_EQ(after.live_objects, before.live_objects);
    EXPECT_EQ(after.live_bytes, before.live_bytes);
    if (p) magslab_free(p);
  }
  // The same through aligned_alloc and posix_memalign.
  for (size_t sz : {SIZE_MAX, SIZE_MAX / 2, size_t{1} << 62}) {
    SCOPED_TRACE(testing::Message() << "aligned size=" << sz);
    Snapshot before = snap();
    errno = 0;
    void* p = magslab_aligned_alloc(4096, sz);
    int e = errno;
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(e, ENOMEM);
    if (p) magslab_free(p);
    void* sentinel = reinterpret_cast<void*>(uintptr_t{0x5eed});
    void* q = sentinel;
    EXPECT_EQ(magslab_posix_memalign(&q, 64, sz), ENOMEM);
    EXPECT_EQ(q, sentinel);
    EXPECT_EQ(snap().mapped_bytes, before.mapped_bytes);
    EXPECT_EQ(snap().live_objects, before.live_objects);
  }
  // The heap is still usable afterwards.
  void* p = magslab_malloc(100);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 100);
  magslab_free(p);
}

TEST(ApiEdge, CallocOverflowFailsWithEnomem) {
  warm_up();
  struct {
    size_t n, m;
  } cases[] = {
      {SIZE_MAX / 2 + 2, 2}, {2, SIZE_MAX / 2 + 2}, {size_t{1} << 32, size_t{1} << 32},
      {SIZE_MAX, SIZE_MAX},  {SIZE_MAX, 2},         {(size_t{1} << 33) + 1, (size_t{1} << 31)},
      {SIZE_MAX / 3 + 1, 3},
  };
  for (auto c : cases) {
    SCOPED_TRACE(testing::Message() << c.n << " x " << c.m);
    Snapshot before = snap();
    errno = 0;
    void* p = magslab_calloc(c.n, c.m);
    int e = errno;
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(e, ENOMEM);
    EXPECT_EQ(snap().mapped_bytes, before.mapped_bytes);
    EXPECT_EQ(snap().live_objects, before.live_objects);
    if (p) magslab_free(p);
  }
  // Large but non-overflowing and still impossible: ENOMEM too.
  errno = 0;
  EXPECT_EQ(magslab_calloc(size_t{1} << 31, size_t{1} << 31), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(ApiEdge, PosixMemalignRejectsBadAlignments) {
  warm_up();
  const size_t bad[] = {
      0, 1, 2, 3, 4, 5, 7, 12, 24, 48, 96, 4095, 4097, 65535, (size_t{1} << 20) + 8, SIZE_MAX};
  for (size_t a : bad) {
    SCOPED_TRACE(testing::Message() << "alignment=" << a);
    Snapshot before = snap();
    void* sentinel = reinterpret_cast<void*>(uintptr_t{0xdeadbeef});
    void* p = sentinel;
    int rc = magslab_posix_memalign(&p, a, 64);
    EXPECT_EQ(rc, EINVAL);
    EXPECT_EQ(p, sentinel) << "*memptr must be untouched on error";
    Snapshot after = snap();
    EXPECT_EQ(after.live_objects, before.live_objects) << "nothing allocated";
    EXPECT_EQ(after.mapped_bytes, before.mapped_bytes);
  }
}

TEST(ApiEdge, PosixMemalignValidAlignments) {
  warm_up();
  Snapshot before = snap();
  std::vector<void*> keep;
  for (size_t a = sizeof(void*); a <= 65536; a *= 2) {
    for (size_t sz : {size_t{0}, size_t{1}, size_t{8}, size_t{100}, size_t{4096}, size_t{40000}}) {
      SCOPED_TRACE(testing::Message() << "alignment=" << a << " size=" << sz);
      void* p = nullptr;
      int rc = magslab_posix_memalign(&p, a, sz);
      ASSERT_EQ(rc, 0);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(is_aligned(p, a)) << p;
      EXPECT_GE(magslab_usable_size(p), sz);
      fill_pattern(p, sz, static_cast<uint8_t>(a + sz));
      keep.push_back(p);
    }
  }
  size_t k = 0;
  for (size_t a = sizeof(void*); a <= 65536; a *= 2)
    for (size_t sz : {size_t{0}, size_t{1}, size_t{8}, size_t{100}, size_t{4096}, size_t{40000}}) {
      EXPECT_EQ(check_pattern(keep[k], sz, static_cast<uint8_t>(a + sz)), kNoMismatch);
      magslab_free(keep[k++]);
    }
  EXPECT_EQ(snap().live_objects, before.live_objects);
  EXPECT_EQ(snap().live_bytes, before.live_bytes);
}

TEST(ApiEdge, AlignedAllocRejectsNonPowerOfTwo) {
  warm_up();
  for (size_t a :
       {size_t{0}, size_t{3}, size_t{24}, size_t{48}, size_t{100}, size_t{4095}, SIZE_MAX}) {
    SCOPED_TRACE(testing::Message() << "alignment=" << a);
    Snapshot before = snap();
    errno = 0;
    void* p = magslab_aligned_alloc(a, 64);
    int e = errno;
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(e, EINVAL);
    EXPECT_EQ(snap().live_objects, before.live_objects);
    if (p) magslab_free(p);
  }
}

TEST(ApiEdge, AlignedAllocAcceptsPowersOfTwoAndAnySize) {
  warm_up();
  // C17 DR460 / C23: the size need not be a multiple of the alignment.
  void* p = magslab_aligned_alloc(64, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(is_aligned(p, 64));
  EXPECT_GE(magslab_usable_size(p), 100u);
  fill_pattern(p, 100, 7);
  EXPECT_EQ(check_pattern(p, 100, 7), kNoMismatch);
  magslab_free(p);

  // Alignments below sizeof(void*) are fine for aligned_alloc.
  for (size_t a : {size_t{1}, size_t{2}, size_t{4}, size_t{8}, size_t{16}, size_t{4096}}) {
    SCOPED_TRACE(testing::Message() << "alignment=" << a);
    void* q = magslab_aligned_alloc(a, 33);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(is_aligned(q, a));
    EXPECT_GE(magslab_usable_size(q), 33u);
    memset(q, 0x5a, 33);
    magslab_free(q);
  }
}

TEST(ApiEdge, FreeNullIsNoop) {
  warm_up();
  Snapshot before = snap();
  magslab_free(nullptr);
  magslab_free_sized(nullptr, 0);
  magslab_free_sized(nullptr, 64);
  Snapshot after = snap();
  EXPECT_EQ(after.live_objects, before.live_objects);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_EQ(after.mapped_bytes, before.mapped_bytes);
  // The heap still works and hands out distinct blocks.
  void* a = magslab_malloc(32);
  void* b = magslab_malloc(32);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  magslab_free(a);
  magslab_free(b);
}

TEST(ApiEdge, ReallocNullBehavesAsMalloc) {
  warm_up();
  for (size_t sz : {size_t{1}, size_t{24}, size_t{1000}, size_t{100000}, size_t{3} << 20}) {
    SCOPED_TRACE(testing::Message() << "size=" << sz);
    Snapshot before = snap();
    void* p = magslab_realloc(nullptr, sz);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(is_aligned(p, sz >= 16 ? 16 : 8));
    EXPECT_GE(magslab_usable_size(p), sz);
    Snapshot mid = snap();
    EXPECT_EQ(mid.live_objects, before.live_objects + 1);
    EXPECT_EQ(mid.live_bytes, before.live_bytes + magslab_usable_size(p));
    fill_pattern(p, sz, 3);
    EXPECT_EQ(check_pattern(p, sz, 3), kNoMismatch);
    magslab_free(p);
    EXPECT_EQ(snap().live_objects, before.live_objects);
  }
  // realloc(NULL, 0) behaves as malloc(0): a unique non-NULL pointer.
  void* z = magslab_realloc(nullptr, 0);
  ASSERT_NE(z, nullptr);
  magslab_free(z);
}

TEST(ApiEdge, ReallocToZeroFreesAndReturnsNull) {
  warm_up();
  for (size_t sz : {size_t{1}, size_t{64}, size_t{5000}, size_t{100000}, size_t{6} << 20}) {
    SCOPED_TRACE(testing::Message() << "size=" << sz);
    Snapshot before = snap();
    void* p = magslab_malloc(sz);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(snap().live_objects, before.live_objects + 1);
    void* r = magslab_realloc(p, 0);
    EXPECT_EQ(r, nullptr);  // glibc: frees p, returns NULL
    Snapshot after = snap();
    EXPECT_EQ(after.live_objects, before.live_objects) << "p was not freed";
    EXPECT_EQ(after.live_bytes, before.live_bytes);
    if (r) magslab_free(r);
  }
}

TEST(ApiEdge, ReallocImpossibleSizeKeepsBlock) {
  warm_up();
  for (size_t sz : {size_t{48}, size_t{3000}, size_t{200000}, size_t{5} << 20}) {
    SCOPED_TRACE(testing::Message() << "size=" << sz);
    void* p = magslab_malloc(sz);
    ASSERT_NE(p, nullptr);
    fill_pattern(p, sz, 99);
    Snapshot before = snap();
    for (size_t huge : {SIZE_MAX, SIZE_MAX / 2, size_t{1} << 62}) {
      errno = 0;
      void* r = magslab_realloc(p, huge);
      int e = errno;
      EXPECT_EQ(r, nullptr);
      EXPECT_EQ(e, ENOMEM);
      if (r) {
        p = r;
        continue;
      }
      Snapshot after = snap();
      EXPECT_EQ(after.live_objects, before.live_objects);
      EXPECT_EQ(after.mapped_bytes, before.mapped_bytes);
      EXPECT_GE(magslab_usable_size(p), sz) << "p must still be valid";
      EXPECT_EQ(check_pattern(p, sz, 99), kNoMismatch) << "contents must be intact";
    }
    // p is still a live, working block: grow it for real.
    void* q = magslab_realloc(p, sz * 2);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(check_pattern(q, sz, 99), kNoMismatch);
    magslab_free(q);
  }
}

TEST(ApiEdge, UsableSize) {
  warm_up();
  EXPECT_EQ(magslab_usable_size(nullptr), 0u);
  std::vector<std::pair<void*, size_t>> blocks;
  for (size_t sz = 1; sz <= 5000; sz += (sz < 300 ? 1 : 37)) blocks.push_back({nullptr, sz});
  for (size_t sz : {size_t{8191}, size_t{8192}, size_t{8193}, size_t{16385}, size_t{32767},
                    size_t{32768}, size_t{32769}, size_t{65537}, size_t{100000}, size_t{262144},
                    size_t{1} << 20, (size_t{1} << 20) + 1, (size_t{4} << 20) - 1, size_t{4} << 20,
                    (size_t{4} << 20) + 1, size_t{9999999}})
    blocks.push_back({nullptr, sz});
  for (auto& b : blocks) {
    b.first = magslab_malloc(b.second);
    ASSERT_NE(b.first, nullptr) << b.second;
    size_t u = magslab_usable_size(b.first);
    EXPECT_GE(u, b.second);
    // The usable size is really usable: the last usable byte can be written.
    static_cast<volatile uint8_t*>(b.first)[u - 1] = 0xee;
    // And usable_size is stable.
    EXPECT_EQ(magslab_usable_size(b.first), u);
  }
  // Blocks must not overlap within their usable sizes.
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  for (auto& b : blocks) {
    uintptr_t s = reinterpret_cast<uintptr_t>(b.first);
    ranges.push_back({s, s + magslab_usable_size(b.first)});
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    EXPECT_LE(ranges[i - 1].second, ranges[i].first) << "overlapping blocks";
  for (auto& b : blocks) magslab_free(b.first);
}

TEST(ApiEdge, FreeSized) {
  warm_up();
  Snapshot before = snap();
  for (size_t sz : {size_t{1}, size_t{16}, size_t{100}, size_t{1024}, size_t{5000}, size_t{32768},
                    size_t{100000}, size_t{2} << 20}) {
    SCOPED_TRACE(testing::Message() << "size=" << sz);
    void* p = magslab_malloc(sz);
    ASSERT_NE(p, nullptr);
    memset(p, 0x42, sz);
    magslab_free_sized(p, sz);  // the requested size
    void* q = magslab_malloc(sz);
    ASSERT_NE(q, nullptr);
    size_t u = magslab_usable_size(q);
    magslab_free_sized(q, u);  // any size up to usable_size is fine
  }
  Snapshot after = snap();
  EXPECT_EQ(after.live_objects, before.live_objects);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  // Freed memory is reusable: a burst of free_sized + malloc keeps the count flat.
  std::vector<void*> v;
  for (int i = 0; i < 2000; ++i) v.push_back(magslab_malloc(64));
  for (void* p : v) magslab_free_sized(p, 64);
  EXPECT_EQ(snap().live_objects, before.live_objects);
}

}  // namespace

// vm.overcommit_memory (0: the heuristic), or -1 if it cannot be read.
static int overcommit_policy() {
  FILE* f = std::fopen("/proc/sys/vm/overcommit_memory", "r");
  if (f == nullptr) return -1;
  int policy = -1;
  if (std::fscanf(f, "%d", &policy) != 1) policy = -1;
  std::fclose(f);
  return policy;
}

// A request the kernel's overcommit heuristic refuses (more than RAM + swap)
// must fail with ENOMEM at malloc time, as glibc's does, and not succeed only
// for the program to be OOM-killed on first touch. Only meaningful under the
// heuristic policy (vm.overcommit_memory = 0, the Linux default).
TEST(ApiEdge, RequestBeyondRamAndSwapFailsUnderOvercommitHeuristic) {
  const int policy = overcommit_policy();
  ASSERT_GE(policy, 0) << "/proc/sys/vm/overcommit_memory unreadable";
  if (policy != 0)
    GTEST_SKIP() << "vm.overcommit_memory=" << policy << ": the kernel accepts any size";
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  ASSERT_GT(pages, 0);
  // 4x RAM is refused unless swap exceeds 3x RAM; below magslab's own 2^44 limit.
  size_t request = static_cast<size_t>(pages) * static_cast<size_t>(page) * 4;
  ASSERT_LT(request, size_t{1} << 44);
  struct magslab_stats before, after;
  magslab_stats(&before);
  errno = 0;
  void* p = magslab_malloc(request);
  int err = errno;
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(err, ENOMEM);
  magslab_stats(&after);
  // Nothing mapped is left behind. (Before its second try the allocation
  // gives back what the heap caches — free chunks, cached huge mappings —
  // so after an earlier test cached some, less is mapped: this test failed
  // whenever the whole binary ran in one process, a bug hunt found at stop 48.)
  EXPECT_LE(after.mapped_bytes, before.mapped_bytes);
  if (p != nullptr) magslab_free(p);
}

// One the heuristic accepts (RAM + swap less 1 MiB) succeeds, as glibc's
// does (its mmap of the size and a page): until stop 54's bug hunt magslab
// asked for the size plus 4 MiB less a page at once (the over-map that
// aligns a huge block to its chunk), which the heuristic refused, and
// malloc returned NULL with ENOMEM. Nothing is touched.
TEST(ApiEdge, RequestJustBelowRamAndSwapSucceedsUnderOvercommitHeuristic) {
  const int policy = overcommit_policy();
  ASSERT_GE(policy, 0) << "/proc/sys/vm/overcommit_memory unreadable";
  if (policy != 0) GTEST_SKIP() << "vm.overcommit_memory=" << policy << ": not the heuristic";
  struct sysinfo si {};
  ASSERT_EQ(sysinfo(&si), 0);
  const size_t total = (static_cast<size_t>(si.totalram) + si.totalswap) * si.mem_unit;
  const size_t request = total - (size_t{1} << 20);
  ASSERT_LT(request, size_t{1} << 44);
  // (A kernel whose heuristic counts free memory, before 5.8, may refuse the
  // size itself on a busy machine.)
  void* probe =
      mmap(nullptr, request + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (probe == MAP_FAILED) GTEST_SKIP() << "the kernel refuses a mapping of the size itself";
  munmap(probe, request + 4096);
  errno = 0;
  void* p = magslab_malloc(request);
  const int err = errno;
  EXPECT_NE(p, nullptr) << "errno " << err;
  magslab_free(p);
}
