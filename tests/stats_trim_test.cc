// magslab_stats and magslab_trim: exact live counters at quiescence, per-class
// counters, the class table, and RSS going back down after a 1 GiB burst of
// small objects is freed and trimmed.

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "magslab/magslab.h"
#include "small/depot.h"  // internal: flush without trim
#include "small/thread_cache.h"

#include "testing/no_decay.h"  // exact cache contents
#include "testing/resident.h"
#include "testing/sanitizers.h"

namespace {

// magslab_stats is ~4 KiB; keep the snapshots off the stack.
struct magslab_stats g_a, g_b, g_c;

size_t largest_class_size() {
  magslab_stats(&g_c);
  return g_c.class_count ? g_c.classes[g_c.class_count - 1].object_size : 0;
}

TEST(Stats, ClassTable) {
  magslab_stats(&g_a);
  ASSERT_GT(g_a.class_count, 0u);
  ASSERT_LE(g_a.class_count, size_t{MAGSLAB_MAX_CLASSES});
  EXPECT_LE(g_a.classes[0].object_size, 16u);
  EXPECT_GT(g_a.classes[0].object_size, 0u);
  for (size_t i = 0; i < g_a.class_count; ++i) {
    const auto& c = g_a.classes[i];
    SCOPED_TRACE(testing::Message() << "class " << i << " object_size " << c.object_size);
    if (i > 0) {
      EXPECT_LT(g_a.classes[i - 1].object_size, c.object_size);
    }
    EXPECT_EQ(c.object_size % 8, 0u);
    EXPECT_GE(c.slab_size, c.object_size);
  }
  EXPECT_GE(g_a.classes[g_a.class_count - 1].object_size, 65536u);
  // Entries past class_count are not used.
  EXPECT_LE(g_a.committed_bytes, g_a.mapped_bytes);
}

TEST(Stats, LiveCountersRiseAndFallExactly) {
  const size_t largest = largest_class_size();
  // Warm every path first so lazy initialisation does not disturb counts.
  for (size_t sz : {size_t{16}, size_t{100000}, size_t{8} << 20}) magslab_free(magslab_malloc(sz));
  for (size_t sz :
       {size_t{1}, size_t{16}, size_t{48}, size_t{100}, size_t{1000}, size_t{5000}, size_t{32768},
        size_t{40000}, size_t{100000}, size_t{1} << 20, size_t{8} << 20}) {
    SCOPED_TRACE(testing::Message() << "size=" << sz);
    magslab_stats(&g_a);
    void* p = magslab_malloc(sz);
    ASSERT_NE(p, nullptr);
    const size_t u = magslab_usable_size(p);
    ASSERT_GE(u, sz);
    magslab_stats(&g_b);
    EXPECT_EQ(g_b.live_objects, g_a.live_objects + 1);
    EXPECT_EQ(g_b.live_bytes, g_a.live_bytes + u);
    EXPECT_GE(g_b.peak_in_use_bytes, g_b.live_bytes);
    EXPECT_LE(g_b.committed_bytes, g_b.mapped_bytes);
    // live_requested_bytes: exact with MAGSLAB_EXACT_REQUESTED (also tested,
    // whatever the option, by requested_stats_mt_test); else small blocks at
    // their usable size.
    EXPECT_EQ(g_b.requested_bytes_exact, magslab::kExactRequested ? 1u : 0u);
    const size_t asked = sz > largest || magslab::kExactRequested ? sz : u;
    EXPECT_EQ(g_b.live_requested_bytes, g_a.live_requested_bytes + asked);
    if (sz > largest) {
      EXPECT_EQ(g_b.large_live_blocks, g_a.large_live_blocks + 1);
      EXPECT_EQ(g_b.live_large_requested_bytes, g_a.live_large_requested_bytes + sz);
      EXPECT_LE(g_b.huge_live_blocks, g_b.large_live_blocks);
    } else {
      EXPECT_EQ(g_b.large_live_blocks, g_a.large_live_blocks);
      EXPECT_EQ(g_b.live_large_requested_bytes, g_a.live_large_requested_bytes);
    }
    magslab_free(p);
    magslab_stats(&g_c);
    EXPECT_EQ(g_c.live_objects, g_a.live_objects);
    EXPECT_EQ(g_c.live_bytes, g_a.live_bytes);
    EXPECT_EQ(g_c.large_live_blocks, g_a.large_live_blocks);
    EXPECT_EQ(g_c.huge_live_blocks, g_a.huge_live_blocks);
    EXPECT_EQ(g_c.live_large_requested_bytes, g_a.live_large_requested_bytes);
    EXPECT_EQ(g_c.live_requested_bytes, g_a.live_requested_bytes);
  }
  // Many at once.
  magslab_stats(&g_a);
  std::vector<void*> v;
  size_t usable_sum = 0;
  for (int i = 0; i < 1000; ++i) {
    void* p = magslab_malloc(1 + (i * 37) % 3000);
    ASSERT_NE(p, nullptr);
    usable_sum += magslab_usable_size(p);
    v.push_back(p);
  }
  magslab_stats(&g_b);
  EXPECT_EQ(g_b.live_objects, g_a.live_objects + 1000);
  EXPECT_EQ(g_b.live_bytes, g_a.live_bytes + usable_sum);
  for (void* p : v) magslab_free(p);
  magslab_stats(&g_c);
  EXPECT_EQ(g_c.live_objects, g_a.live_objects);
  EXPECT_EQ(g_c.live_bytes, g_a.live_bytes);
}

TEST(Stats, PerClassLiveObjects) {
  const size_t largest = largest_class_size();
  for (size_t sz : {size_t{1}, size_t{8}, size_t{17}, size_t{48}, size_t{64}, size_t{65},
                    size_t{200}, size_t{1000}, size_t{4097}, size_t{20000}, largest}) {
    SCOPED_TRACE(testing::Message() << "size=" << sz);
    magslab_stats(&g_a);
    // The class a request of sz belongs to: the smallest that fits it.
    size_t cls = g_a.class_count;
    for (size_t i = 0; i < g_a.class_count; ++i)
      if (g_a.classes[i].object_size >= sz) {
        cls = i;
        break;
      }
    ASSERT_LT(cls, g_a.class_count);
    constexpr int kN = 10;
    void* ps[kN];
    for (auto& p : ps) {
      p = magslab_malloc(sz);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(magslab_usable_size(p), g_a.classes[cls].object_size);
    }
    magslab_stats(&g_b);
    ASSERT_EQ(g_b.class_count, g_a.class_count);
    for (size_t i = 0; i < g_b.class_count; ++i) {
      size_t expect = g_a.classes[i].live_objects + (i == cls ? kN : 0);
      EXPECT_EQ(g_b.classes[i].live_objects, expect)
          << "class " << i << " (object_size " << g_b.classes[i].object_size << ")";
    }
    EXPECT_GE(g_b.classes[cls].slabs, 1u);
    for (void* p : ps) magslab_free(p);
    magslab_stats(&g_c);
    EXPECT_EQ(g_c.classes[cls].live_objects, g_a.classes[cls].live_objects);
  }
}

TEST(Stats, CachedObjectsAfterFreeAndTrim) {
  magslab_stats(&g_a);
  size_t cls = 0;
  for (size_t i = 0; i < g_a.class_count; ++i)
    if (g_a.classes[i].object_size >= 96) {
      cls = i;
      break;
    }
  const size_t osz = g_a.classes[cls].object_size;
  std::vector<void*> v;
  for (int i = 0; i < 5000; ++i) v.push_back(magslab_malloc(osz));
  for (void* p : v) magslab_free(p);
  magslab_stats(&g_b);
  EXPECT_EQ(g_b.classes[cls].live_objects, g_a.classes[cls].live_objects);
  // Something freed is cached somewhere (magazines or slabs) or released.
  EXPECT_LE(g_b.committed_bytes, g_b.mapped_bytes);
  size_t released = magslab_trim();
  magslab_stats(&g_c);
  // trim flushes this thread's magazines and the depot.
  EXPECT_LE(g_c.classes[cls].cached_objects, g_b.classes[cls].cached_objects);
  EXPECT_LE(g_c.committed_bytes, g_b.committed_bytes);
  EXPECT_LE(g_c.cached_bytes, g_b.cached_bytes);
  EXPECT_EQ(g_c.live_bytes, g_a.live_bytes);
  (void)released;
}

TEST(Depot, BurstOfFreesUpToAMebibyteStaysInMagazines) {
  // 10,000 × 64 B (640 KiB) freed at once must stay cached in magazines (the
  // thread's and the depot's), ready for the next burst, rather than go back
  // to the slabs: the depot keeps up to ~1 MiB per class (depot.cc; for 64 B,
  // 62 magazines of 256 within its metadata share). With a 256 KiB limit only
  // 16 magazines of 256 fit and ~5,400 objects go back. (This thread's stash
  // takes some of them first; MAGSLAB_STASH_BYTES=0 passes too.)
  magslab_trim();  // this thread's magazines and the depot start empty
  magslab_stats(&g_a);
  size_t cls = 0;
  while (cls < g_a.class_count && g_a.classes[cls].object_size < 64) ++cls;
  ASSERT_EQ(g_a.classes[cls].object_size, 64u);
  constexpr size_t kN = 10000;
  std::vector<void*> v(kN);
  for (void*& p : v) {
    p = magslab_malloc(64);
    ASSERT_NE(p, nullptr);
  }
  for (void* p : v) magslab_free(p);
  magslab_stats(&g_b);
  EXPECT_GE(g_b.classes[cls].cached_objects, g_a.classes[cls].cached_objects + kN);
  magslab_trim();  // and the bound still holds: trim gives them all back
  magslab_stats(&g_c);
  EXPECT_LE(g_c.classes[cls].cached_objects, g_a.classes[cls].cached_objects);
}

using mstest::rss_bytes;

// Freeing a program's many tiny objects at once (a large std::map at its end)
// fills magazines for the depot, and each magazine the depot holds is 2 KiB of
// metadata made for it: with 1 MiB of 16 B objects (256 magazines) allowed,
// freeing 200,000 of them grew RSS by 676 KiB here (a C program under the
// preload: 548 KiB; mimalloc's 0-64 KiB). A small class's magazines in the
// depot now take at most an eighth of depot_bytes (stop 37): 276 KiB here
// (the C program: 148 KiB).
TEST(Depot, FreeingManyTinyObjectsAtOnceMakesFewMagazines) {
  if (mstest::thp_always()) GTEST_SKIP() << "transparent huge pages: always";
  magslab_trim();
  constexpr size_t kN = 200000;
  std::vector<void*> v(kN);  // not magslab's: its pages are resident before the frees
  for (void*& p : v) {
    p = magslab_malloc(16);
    ASSERT_NE(p, nullptr);
  }
  const size_t before = rss_bytes();
  for (void* p : v) magslab_free(p);
  const size_t after = rss_bytes();
  magslab_trim();
  ASSERT_GT(before, 0u);
  EXPECT_LE(after, before + (size_t{400} << 10))
      << "freeing grew RSS by " << (after - before) / 1024 << " KiB";
}

TEST(Trim, RssReturnsAfterBurstOfSmallObjects) {
#ifdef MS_SANITIZED
  // Sanitizer builds: 128 MiB instead of 1 GiB (shadow memory and speed).
  const size_t kTotal = size_t{128} << 20;
#else
  const size_t kTotal = size_t{1} << 30;
#endif
  const size_t kSlack = size_t{64} << 20;
  // Settle first: warm up and trim so the baseline is not inflated by caches.
  magslab_free(magslab_malloc(64));
  magslab_trim();
  magslab_stats(&g_a);
  const size_t rss0 = rss_bytes();
  ASSERT_GT(rss0, 0u);

  // Half the bytes as 64-byte objects, half as 256-byte ones. The pointer
  // array comes straight from mmap so it neither counts in magslab's stats
  // nor stays in RSS after munmap.
  const size_t n64 = (kTotal / 2) / 64, n256 = (kTotal / 2) / 256;
  const size_t n = n64 + n256;
  void* arr_mem =
      mmap(nullptr, n * sizeof(void*), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(arr_mem, MAP_FAILED);
  auto** ptrs = static_cast<void**>(arr_mem);
  for (size_t i = 0; i < n; ++i) {
    size_t sz = i < n64 ? 64 : 256;
    auto* p = static_cast<uint8_t*>(magslab_malloc(sz));
    ASSERT_NE(p, nullptr) << i;
    p[0] = static_cast<uint8_t>(i);  // touch every object
    p[sz - 1] = static_cast<uint8_t>(i >> 8);
    ptrs[i] = p;
  }
  magslab_stats(&g_b);
  const size_t rss_peak = rss_bytes();
  EXPECT_GE(g_b.live_bytes, g_a.live_bytes + kTotal);
  EXPECT_EQ(g_b.live_objects, g_a.live_objects + n);
  EXPECT_GE(rss_peak, rss0 + kTotal / 2) << "objects were not really touched?";
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    size_t sz = i < n64 ? 64 : 256;
    auto* p = static_cast<uint8_t*>(ptrs[i]);
    if (p[0] != static_cast<uint8_t>(i) || p[sz - 1] != static_cast<uint8_t>(i >> 8)) ++bad;
    magslab_free(p);
  }
  EXPECT_EQ(bad, 0u);
  munmap(arr_mem, n * sizeof(void*));

  const size_t trimmed = magslab_trim();
  EXPECT_GT(trimmed, 0u) << "trim gave nothing back after a " << kTotal << "-byte burst";
  magslab_stats(&g_c);
  const size_t rss1 = rss_bytes();
  std::printf(
      "RSS: baseline %zu MiB, peak %zu MiB, after trim %zu MiB; trim returned %zu MiB;"
      " committed %zu -> %zu -> %zu MiB\n",
      rss0 >> 20, rss_peak >> 20, rss1 >> 20, trimmed >> 20, g_a.committed_bytes >> 20,
      g_b.committed_bytes >> 20, g_c.committed_bytes >> 20);
  EXPECT_LE(rss1, rss0 + kSlack) << "RSS did not return near the baseline after trim";
  EXPECT_EQ(g_c.live_bytes, g_a.live_bytes);
  EXPECT_EQ(g_c.live_objects, g_a.live_objects);
  EXPECT_LE(g_c.committed_bytes, g_a.committed_bytes + kSlack);
  EXPECT_LE(g_c.committed_bytes, g_c.mapped_bytes);

  // The heap is fully usable after the trim.
  std::vector<void*> v;
  for (int i = 0; i < 10000; ++i) {
    auto* p = static_cast<uint8_t*>(magslab_malloc(i % 2 ? 64 : 256));
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x3c, i % 2 ? 64 : 256);
    v.push_back(p);
  }
  for (void* p : v) magslab_free(p);
}

}  // namespace

// A class's one cached empty slab, carved again and emptied again, must be
// counted once: the slab count stays small and returns to 0 after trim (it
// used to wrap around below zero when the cached slab was reused).
TEST(Stats, SlabCountSurvivesReuseOfTheCachedEmptySlab) {
  magslab_trim();
  struct magslab_stats st;
  magslab_stats(&st);
  size_t cls = 0;
  for (size_t i = 0; i < st.class_count; ++i)
    if (st.classes[i].object_size == 2048) cls = i;  // a class no other test here uses
  ASSERT_EQ(st.classes[cls].object_size, 2048u);
  const size_t per_slab = st.classes[cls].slab_size / 2048;
  for (int round = 0; round < 4; ++round) {
    std::vector<void*> v;
    for (size_t i = 0; i < 3 * per_slab; ++i) v.push_back(magslab_malloc(2048));
    magslab_stats(&st);
    EXPECT_GE(st.classes[cls].slabs, 3u) << "round " << round;
    EXPECT_LE(st.classes[cls].slabs, 8u) << "round " << round;
    for (void* p : v) magslab_free(p);
    // Magazines and depot back into the slabs, without trim's release of the
    // cached empty slab: the next round carves from it again.
    magslab::cache::flush_current();
    magslab::depot::drain();
    magslab_stats(&st);
    EXPECT_EQ(st.classes[cls].slabs, 1u) << "round " << round << ": only the cached empty slab";
    EXPECT_EQ(st.classes[cls].live_objects, 0u) << "round " << round;
  }
  magslab_trim();
  magslab_stats(&st);
  EXPECT_EQ(st.classes[cls].slabs, 0u);
}
