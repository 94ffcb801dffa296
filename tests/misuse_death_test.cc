// Misuse detection: freeing a pointer magslab never handed out (stack, static
// data, foreign mappings, glibc's heap, interior and misaligned pointers) must
// print exactly one line "magslab: invalid free of 0x<addr>" and abort; a
// detected double free prints "magslab: double free of 0x<addr>" and aborts.
// The whole line is checked, with what magslab knows of the block after the
// address: " (class 7, 64 B)", " (large block, 8192 B)", " (huge block, … B)",
// and for a double free where it was found ("; already in this thread's
// magazine", "; already free in its slab"); nothing for a foreign pointer.
//
// The matcher and the announcement protocol: testing/misuse_line.h.

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "platform/numa.h"
#include "platform/platform.h"
#include "small/size_classes.h"
#include "small/thread_cache.h"
#include "testing/misuse_line.h"
#include "testing/no_decay.h"  // the depot keeps what the exiting thread left (below)
#include "testing/resident.h"

namespace {

// What the line says about the block (platform::misuse).
const std::string kNothing = "";
const std::string kSmall = R"( \(class [0-9]+, [0-9]+ B\))";
const std::string kLarge = R"( \(large block(, [0-9]+ B)?\))";
const std::string kHuge = R"( \(huge block, [0-9]+ B\))";
const std::string kInMagazine = R"( \(class [0-9]+, [0-9]+ B; already in this thread's magazine\))";
const std::string kInInbox = R"( \(class [0-9]+, [0-9]+ B; already in this thread's inbox\))";
const std::string kInSlab = R"( \(class [0-9]+, [0-9]+ B; already free in its slab\))";

testing::Matcher<const std::string&> InvalidFreeOf(const std::string& suffix = kNothing) {
  return MisuseLineOf("invalid free of", suffix);
}
testing::Matcher<const std::string&> DoubleFreeOf(const std::string& suffix) {
  return MisuseLineOf("double free of", suffix);
}

alignas(64) char g_static_array[4096];

// Make sure the allocator is initialised and has chunks mapped, so the page
// map has to discriminate rather than just seeing an empty heap.
std::vector<void*> prime_heap() {
  std::vector<void*> v;
  for (size_t sz : {size_t{16}, size_t{64}, size_t{1000}, size_t{100000}})
    v.push_back(magslab_malloc(sz));
  return v;
}
void release(std::vector<void*>& v) {
  for (void* p : v) magslab_free(p);
  v.clear();
}

TEST(MisuseDeathTest, FreeOfStackAddress) {
  use_threadsafe_style();
  auto keep = prime_heap();
  alignas(16) char stack_buf[256];
  std::memset(stack_buf, 1, sizeof stack_buf);
  EXPECT_DEATH(ANNOUNCE_AND_FREE(stack_buf), InvalidFreeOf());
  EXPECT_DEATH(ANNOUNCE_AND_FREE(stack_buf + 64), InvalidFreeOf());
  release(keep);
}

TEST(MisuseDeathTest, FreeOfStaticArray) {
  use_threadsafe_style();
  auto keep = prime_heap();
  EXPECT_DEATH(ANNOUNCE_AND_FREE(g_static_array), InvalidFreeOf());
  EXPECT_DEATH(ANNOUNCE_AND_FREE(g_static_array + 1024), InvalidFreeOf());
  release(keep);
}

TEST(MisuseDeathTest, FreeOfForeignMmap) {
  use_threadsafe_style();
  auto keep = prime_heap();
  const size_t len = size_t{8} << 20;
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  auto* c = static_cast<char*>(m);
  // Foreign memory full of a pattern: magslab must not write into it.
  std::memset(c, 0x77, len);
  EXPECT_DEATH(ANNOUNCE_AND_FREE(c), InvalidFreeOf());
  EXPECT_DEATH(ANNOUNCE_AND_FREE(c + 4096), InvalidFreeOf());
  // A 4 MiB-aligned address inside the mapping (looks like a chunk start).
  uintptr_t a4 =
      (reinterpret_cast<uintptr_t>(c) + (size_t{4} << 20) - 1) & ~((uintptr_t{4} << 20) - 1);
  EXPECT_DEATH(ANNOUNCE_AND_FREE(reinterpret_cast<char*>(a4)), InvalidFreeOf());
  EXPECT_DEATH(ANNOUNCE_AND_FREE(reinterpret_cast<char*>(a4) + 64), InvalidFreeOf());
  // The parent never ran the frees; the memory is untouched here.
  for (size_t i = 0; i < len; i += 4096) ASSERT_EQ(c[i], 0x77);
  munmap(m, len);
  release(keep);
}

TEST(MisuseDeathTest, FreeOfGlibcMalloc) {
  use_threadsafe_style();
  auto keep = prime_heap();
  void* small = std::malloc(100);
  void* big = std::malloc(size_t{2} << 20);  // glibc mmaps this one
  ASSERT_NE(small, nullptr);
  ASSERT_NE(big, nullptr);
  EXPECT_DEATH(ANNOUNCE_AND_FREE(small), InvalidFreeOf());
  EXPECT_DEATH(ANNOUNCE_AND_FREE(big), InvalidFreeOf());
  std::free(small);
  std::free(big);
  release(keep);
}

TEST(MisuseDeathTest, FreeOfInteriorPointerSmall) {
  use_threadsafe_style();
  auto* p64 = static_cast<char*>(magslab_malloc(64));
  auto* p1000 = static_cast<char*>(magslab_malloc(1000));
  ASSERT_NE(p64, nullptr);
  ASSERT_NE(p1000, nullptr);
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p64 + 8), InvalidFreeOf(kSmall));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p64 + 32), InvalidFreeOf(kSmall));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p1000 + 16), InvalidFreeOf(kSmall));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p1000 + 512), InvalidFreeOf(kSmall));
  magslab_free(p64);
  magslab_free(p1000);
}

// A page run: an alignment above the page size skips the classes.
char* page_run(size_t n) { return static_cast<char*>(magslab_aligned_alloc(8192, n)); }

TEST(MisuseDeathTest, FreeOfInteriorPointerLarge) {
  use_threadsafe_style();
  char* p = page_run(100000);
  auto* q = static_cast<char*>(magslab_malloc(100000));  // a large class: one object per slab
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p + 4096), InvalidFreeOf(kLarge));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p + 16), InvalidFreeOf(kLarge));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(q + 4096), InvalidFreeOf(kSmall));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(q + 16), InvalidFreeOf(kSmall));
  magslab_free(p);
  magslab_free(q);
}

TEST(MisuseDeathTest, FreeOfInteriorPointerHuge) {
  use_threadsafe_style();
  auto* p = static_cast<char*>(magslab_malloc(size_t{8} << 20));
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p + 4096), InvalidFreeOf(kHuge));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p + (size_t{4} << 20)), InvalidFreeOf(kHuge));
  magslab_free(p);
}

// A huge realloc that resizes the mapping drops the huge lock around its
// mremap. A free of the same block from another thread in that window (a race
// in the program) used to succeed: the descriptor went back to the pool, the
// realloc then wrote its new size and base into it — another block's, once
// reused — and the counters drifted; nothing was reported. Now the block is
// "being reallocated" until the realloc returns, and such a free is reported.
// Deterministic: the fake OS frees the block from inside the mremap.
void* g_resizing = nullptr;
void* free_during_remap(void* old_addr, size_t old_size, size_t new_size, void* new_addr) {
  void* r = magslab::platform::os_ops().remap(old_addr, old_size, new_size, new_addr);
  ANNOUNCE_AND_FREE(g_resizing);
  return r;
}
void* os_map(size_t n) { return magslab::platform::os_ops().map(n); }
void os_unmap(void* a, size_t n) { magslab::platform::os_ops().unmap(a, n); }
bool os_decommit(void* a, size_t n) { return magslab::platform::os_ops().decommit(a, n); }
void* os_map_at(void* a, size_t n) { return magslab::platform::os_ops().map_at(a, n); }
const magslab::platform::PlatformOps kFreeDuringRemap{os_map, os_unmap, os_decommit,
                                                      free_during_remap, os_map_at};
const std::string kBeingReallocated = R"( \(huge block, [0-9]+ B; being reallocated\))";

TEST(MisuseDeathTest, FreeOfAHugeBlockBeingReallocated) {
  use_threadsafe_style();
  for (size_t to : {size_t{2} << 20, size_t{9} << 20}) {  // shrink, grow past its mapping
    EXPECT_DEATH(
        {
          g_resizing = magslab_malloc(size_t{5} << 20);
          magslab::platform::set_ops_for_testing(&kFreeDuringRemap);
          magslab_realloc(g_resizing, to);
        },
        InvalidFreeOf(kBeingReallocated))
        << "to " << to;
  }
}

TEST(MisuseDeathTest, FreeOfMisalignedPointer) {
  use_threadsafe_style();
  auto* p = static_cast<char*>(magslab_malloc(64));
  char* q = page_run(100000);
  auto* r = static_cast<char*>(magslab_malloc(300000));
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  ASSERT_NE(r, nullptr);
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p + 1), InvalidFreeOf(kSmall));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(q + 1), InvalidFreeOf(kLarge));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(r + 1), InvalidFreeOf(kSmall));
  magslab_free(p);
  magslab_free(q);
  magslab_free(r);
}

TEST(MisuseDeathTest, DoubleFreeImmediate) {
  use_threadsafe_style();
  EXPECT_DEATH(
      {
        void* p = magslab_malloc(64);
        magslab_free(p);
        ANNOUNCE_AND_FREE(p);
      },
      DoubleFreeOf(kInMagazine));
  EXPECT_DEATH(
      {
        void* p = page_run(100000);
        magslab_free(p);
        ANNOUNCE_AND_FREE(p);
      },
      DoubleFreeOf(kLarge));
  EXPECT_DEATH(
      {
        void* p = magslab_malloc(100000);  // a large class: caught in the magazine
        magslab_free(p);
        ANNOUNCE_AND_FREE(p);
      },
      DoubleFreeOf(kInMagazine));
}

TEST(MisuseDeathTest, DoubleFreeAfterOtherFrees) {
  use_threadsafe_style();
  EXPECT_DEATH(
      {
        void* p = magslab_malloc(64);
        void* others[5];
        for (auto& o : others) o = magslab_malloc(64);
        magslab_free(p);
        for (void* o : others) magslab_free(o);
        ANNOUNCE_AND_FREE(p);
      },
      DoubleFreeOf(kInMagazine));
}

// Another thread's object goes to the freeing thread's remote magazine; a
// second free of it must still be found there.
TEST(MisuseDeathTest, DoubleFreeOfAnotherThreadsObject) {
  use_threadsafe_style();
  EXPECT_DEATH(
      {
        std::vector<void*> v;
        for (int i = 0; i < 40; ++i) v.push_back(magslab_malloc(64));
        std::thread t([&] {
          magslab_free(v.back());
          ANNOUNCE_AND_FREE(v.back());
        });
        t.join();
      },
      DoubleFreeOf(kInMagazine));
}

// Another thread frees a full magazine of this thread's objects: it goes to
// this thread's inbox (docs/design.md, "Sending remote magazines home"), and a
// second free here of one of them must be found there.
TEST(MisuseDeathTest, DoubleFreeOfAnObjectWaitingInThisThreadsInbox) {
  if (magslab::numa::nodes() != 1) GTEST_SKIP() << "inboxes are used on one NUMA node only";
  use_threadsafe_style();
  const unsigned cls = magslab::class_of(64);
  const size_t cap = magslab::mag_cap(cls);
  EXPECT_DEATH(
      {
        // A new process (threadsafe style): this thread's objects are its own.
        std::vector<void*> v;
        for (size_t i = 0; i <= cap; ++i) v.push_back(magslab_malloc(64));
        magslab::ThreadCache* self = magslab::t_cache;
        // Freed by another thread, they fill its remote magazine (at most cap
        // objects: its capacity follows the traffic), which, full, comes here
        // with the first of them.
        std::thread([&] {
          for (void* p : v) {
            magslab_free(p);
            if (std::atomic_ref<magslab::Magazine*>(self->inbox[cls]).load() != nullptr) break;
          }
        }).join();
        ANNOUNCE_AND_FREE(v.front());
      },
      DoubleFreeOf(kInInbox));
}

// A thread whose frees overflow its magazines keeps the full ones in its
// stash (thread_cache.cc, "The stash"); a second free of an object waiting
// there must be found there, not taken for a first one (the free key matches,
// and neither the magazines in the slots nor the slab hold it).
TEST(MisuseDeathTest, DoubleFreeOfAnObjectInThisThreadsStash) {
  use_threadsafe_style();
  const unsigned cls = magslab::class_of(400);
  const size_t n = 8 * magslab::mag_cap(cls);
  EXPECT_DEATH(
      {
        std::vector<void*> v(n);
        for (void*& p : v) p = magslab_malloc(400);
        for (void* p : v) magslab_free(p);
        magslab::Magazine* m =
            std::atomic_ref<magslab::Magazine*>(magslab::t_cache->stash[cls]).load();
        if (m != nullptr) ANNOUNCE_AND_FREE(m->objs[0]);
      },
      DoubleFreeOf(kInMagazine));
}

// The case the design guarantees even without debug mode: the object is
// already free in its slab (magazines flushed by magslab_trim).
TEST(MisuseDeathTest, DoubleFreeOfObjectFreeInItsSlab) {
  use_threadsafe_style();
  constexpr int kN = 2000;
  std::vector<char*> objs(kN);
  for (auto& o : objs) {
    o = static_cast<char*>(magslab_malloc(48));
    ASSERT_NE(o, nullptr);
  }
  // Pick p whose neighbour at p + usable_size(p) is also ours: same slab.
  // Keeping that neighbour alive keeps the slab from being released.
  std::vector<char*> sorted = objs;
  std::sort(sorted.begin(), sorted.end());
  const size_t u = magslab_usable_size(sorted[0]);
  char* p = nullptr;
  char* neighbour = nullptr;
  for (size_t i = kN / 2; i + 1 < sorted.size(); ++i) {
    if (sorted[i + 1] == sorted[i] + u) {
      p = sorted[i];
      neighbour = sorted[i + 1];
      break;
    }
  }
  ASSERT_NE(p, nullptr) << "no two adjacent 48-byte objects among " << kN;
  for (char* o : objs)
    if (o != neighbour) magslab_free(o);
  magslab_trim();  // flushes this thread's magazines into the slabs
  EXPECT_DEATH(ANNOUNCE_AND_FREE(p), DoubleFreeOf(kInSlab));
  magslab_free(neighbour);
}

// A 48-byte object p, free in its slab, on a page that magslab_trim_all()
// gave back (slab::hollow: every object on it is free; another, `keep`, keeps
// the slab in use). The page's word is gone, and with it the free key in p.
struct OnHollowPage {
  char* p = nullptr;
  char* keep = nullptr;
};
OnHollowPage free_on_hollow_page() {
  constexpr size_t kN = 2000, kPage = 4096;
  std::vector<char*> objs(kN);
  for (auto& o : objs) o = static_cast<char*>(magslab_malloc(48));
  std::vector<char*> sorted = objs;
  std::sort(sorted.begin(), sorted.end());
  const size_t u = magslab_usable_size(sorted[0]);
  // keep, then objects of ours back to back (one slab: its tail breaks the
  // run) past the end of the page after next: p starts on that page, which
  // only they overlap.
  OnHollowPage h;
  for (size_t i = 0, j = 0; i < kN && h.p == nullptr; i = j + 1) {
    for (j = i; j + 1 < kN && sorted[j + 1] == sorted[j] + u; ++j) {
    }
    auto page = (reinterpret_cast<uintptr_t>(sorted[i]) / kPage + 2) * kPage;
    if (reinterpret_cast<uintptr_t>(sorted[j]) < page + kPage) continue;
    for (size_t k = i; k <= j && h.p == nullptr; ++k)
      if (reinterpret_cast<uintptr_t>(sorted[k]) >= page) {
        h.keep = sorted[i];
        h.p = sorted[k];
      }
  }
  if (h.p == nullptr) return h;
  for (char* o : objs)
    if (o != h.keep) magslab_free(o);
  magslab_trim_all();
  return h;
}

TEST(MisuseDeathTest, DoubleFreeOfObjectOnAPageTrimAllGaveBack) {
  use_threadsafe_style();
  OnHollowPage h = free_on_hollow_page();
  ASSERT_NE(h.p, nullptr) << "no run of 48-byte objects over 3 pages";
  std::optional<bool> in_core =
      mstest::page_resident(reinterpret_cast<uintptr_t>(h.p) & ~uintptr_t{4095});
  ASSERT_TRUE(in_core.has_value());
  EXPECT_FALSE(*in_core) << "p's page is given back";
  EXPECT_DEATH(ANNOUNCE_AND_FREE(h.p), DoubleFreeOf(kInSlab));
  EXPECT_DEATH(
      {
        ANNOUNCE(h.p);
        (void)magslab_realloc(h.p, 100);
      },
      MisuseLineOf("invalid realloc of", kInSlab));
  EXPECT_DEATH(
      {
        ANNOUNCE(h.p);
        (void)magslab_usable_size(h.p);
      },
      MisuseLineOf("invalid pointer passed to usable_size:", kInSlab));
  EXPECT_DEATH(ANNOUNCE_AND_FREE(h.p + 16), InvalidFreeOf(kSmall));
  // The heap goes on: the page comes back whole when its objects are used.
  std::vector<void*> again;
  for (int i = 0; i < 2000; ++i) again.push_back(magslab_malloc(48));
  for (void* q : again) memset(q, 1, 48);
  for (void* q : again) magslab_free(q);
  magslab_free(h.keep);
}

// docs/check.md's release column: a free of a slab object never handed out is
// seen only if its magazine reaches the slab (magslab_trim) before the object
// is handed out. A thread's exit hands its magazines to the depot instead, and
// the object is handed out twice (stop 51's bug hunt: the row named a thread's
// exit among the ways it was seen). The next object of the thread's first
// refill, never handed out: what check mode names "never handed out".
TEST(MisuseDeathTest, AFreshObjectFreedByAThreadThatExitsIsHandedOutTwice) {
  use_threadsafe_style();  // a process of its own: no other test's objects around
  EXPECT_EXIT(
      {
        void* fresh = nullptr;
        std::thread([&fresh] {
          char* a = static_cast<char*>(magslab_malloc(48));
          char* b = static_cast<char*>(magslab_malloc(48));
          fresh = b + (b - a);
          magslab_free(fresh);  // not reported
          magslab_free(b);
          magslab_free(a);
        }).join();  // its magazines go to the depot
        std::vector<void*> got;
        got.reserve(20000);
        for (int i = 0; i < 20000; ++i) got.push_back(magslab_malloc(48));
        const auto n = std::count(got.begin(), got.end(), fresh);
        std::fprintf(stderr, "handed out %d times\n", static_cast<int>(n));
        std::exit(n == 2 ? 0 : 1);
      },
      testing::ExitedWithCode(0), "handed out 2 times");
}

// A sized free (free_sized, sized operator delete) naming more bytes than the
// block holds: in a class, more than the class size; a page run or a huge
// block, more than its usable size (until stop 54 release checked no size of
// a large or huge block: docs/check.md's table and issue #15, "the
// large-block sized-delete check"). The line names the usable and the
// requested size. A size up to the usable one is accepted (api_edge_test's
// FreeSized).
testing::Matcher<const std::string&> WrongSizeOf(const std::string& suffix) {
  return MisuseLineOf("free_sized with a wrong size of", suffix);
}

TEST(MisuseDeathTest, SizedFreeNamingMoreThanTheBlockHolds) {
  use_threadsafe_style();
  auto* s = static_cast<char*>(magslab_malloc(100));
  char* run = page_run(20000);
  auto* huge = static_cast<char*>(magslab_malloc(size_t{8} << 20));
  ASSERT_NE(s, nullptr);
  ASSERT_NE(run, nullptr);
  ASSERT_NE(huge, nullptr);
  const size_t su = magslab_usable_size(s), ru = magslab_usable_size(run),
               hu = magslab_usable_size(huge);
  EXPECT_DEATH(
      {
        ANNOUNCE(s);
        magslab_free_sized(s, su + 1);
      },
      WrongSizeOf(kSmall));
  EXPECT_DEATH(
      {
        ANNOUNCE(run);
        magslab_free_sized(run, ru + 1);
      },
      WrongSizeOf(R"( \(large block, )" + std::to_string(ru) + " B; requested 20000 B\\)"));
  // The first free of a huge block parks it (no lock): the size is checked
  // there too, and the locked path names it.
  EXPECT_DEATH(
      {
        ANNOUNCE(huge);
        magslab_free_sized(huge, hu + 4096);
      },
      WrongSizeOf(R"( \(huge block, )" + std::to_string(hu) + " B; requested " +
                  std::to_string(size_t{8} << 20) + " B\\)"));
  // Parking off: the locked path alone.
  EXPECT_DEATH(
      {
        magslab_option_set("huge_park", 0);
        ANNOUNCE(huge);
        magslab_free_sized(huge, SIZE_MAX);
      },
      WrongSizeOf(R"( \(huge block, [0-9]+ B; requested [0-9]+ B\))"));
  // Up to the usable size (and the size asked for) frees them.
  EXPECT_EXIT(
      {
        magslab_free_sized(s, su);
        magslab_free_sized(run, ru);
        magslab_free_sized(huge, hu);
        auto* again = static_cast<char*>(magslab_malloc(size_t{8} << 20));
        magslab_free_sized(again, size_t{8} << 20);
        std::fprintf(stderr, "sized ok\n");
        std::exit(0);
      },
      testing::ExitedWithCode(0), "sized ok");
  magslab_free_sized(s, 100);
  magslab_free_sized(run, 20000);
  magslab_free_sized(huge, size_t{8} << 20);
}

// Control: without misuse the heap keeps working normally (the same shapes of
// allocations as above, with correct frees, do not abort and stay consistent).
TEST(MisuseDeathTest, ControlCorrectUseDoesNotAbort) {
  use_threadsafe_style();
  static struct magslab_stats s0, s1;
  magslab_stats(&s0);
  EXPECT_EXIT(
      {
        for (int round = 0; round < 3; ++round) {
          std::vector<void*> v;
          for (size_t sz : {size_t{48}, size_t{64}, size_t{1000}, size_t{100000}, size_t{8} << 20})
            for (int i = 0; i < 50; ++i) v.push_back(magslab_malloc(sz));
          for (void* p : v) magslab_free(p);
          magslab_trim();
        }
        std::fprintf(stderr, "control ok\n");
        std::exit(0);
      },
      testing::ExitedWithCode(0), "control ok");
  // The same in-process.
  std::vector<char*> v;
  for (int i = 0; i < 2000; ++i) {
    auto* p = static_cast<char*>(magslab_malloc(48));
    ASSERT_NE(p, nullptr);
    std::memset(p, i & 0xff, 48);
    v.push_back(p);
  }
  for (int i = 0; i < 2000; ++i)
    for (int j = 0; j < 48; ++j) ASSERT_EQ(static_cast<uint8_t>(v[i][j]), i & 0xff);
  for (char* p : v) magslab_free(p);
  magslab_trim();
  magslab_stats(&s1);
  EXPECT_EQ(s1.live_objects, s0.live_objects);
  EXPECT_EQ(s1.live_bytes, s0.live_bytes);
}

}  // namespace
