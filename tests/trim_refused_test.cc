// magslab_trim_all() while the OS refuses madvise(MADV_DONTNEED) (a seccomp
// filter; here the platform seam): the pages stay resident, so they are not
// bytes given back (stop 54's bug hunt). What it unmaps still is.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "chunks/page_heap.h"
#include "magslab/magslab.h"
#include "platform/platform.h"
#include "small/depot.h"
#include "small/thread_cache.h"
#include "testing/no_decay.h"  // no pass gives anything back meanwhile

namespace {

using namespace magslab;

bool refused_decommit(void*, size_t) { return false; }

size_t mapped() {
  struct magslab_stats s;
  magslab_stats(&s);
  return s.mapped_bytes;
}

// Slabs of 64-byte blocks of which one block in 512 stays in use: most of
// their pages hold only free blocks (slab::hollow decommits those), some
// slabs are emptied (their pages go back dirty and are purged). Before, the
// hollowed slab pages and the purged runs were counted though madvise was
// refused: trim_all returned 8 MiB and more where no page went and nothing
// was unmapped.
TEST(TrimRefused, PagesTheOsKeptAreNotCountedAsGivenBack) {
  magslab_trim_all();
  constexpr size_t kBlocks = (size_t{8} << 20) / 64;
  std::vector<void*> all(kBlocks), kept;
  for (void*& p : all) {
    p = magslab_malloc(64);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, 64);
  }
  for (size_t i = 0; i < kBlocks; ++i)
    if (i % 512 == 0)
      kept.push_back(all[i]);
    else
      magslab_free(all[i]);
  const platform::PlatformOps ops{platform::os_ops().map, platform::os_ops().unmap,
                                  refused_decommit, platform::os_ops().remap,
                                  platform::os_ops().map_at};
  // The frees' magazines to the slabs, the slabs emptied to the page heap,
  // and its dirty pages purged, with madvise allowed: what is left for
  // trim_all is its own work (pages of partial slabs, of unused slab records,
  // of empty magazines), whose madvise is refused below.
  magslab_trim();
  const size_t before = mapped();
  platform::set_ops_for_testing(&ops);
  const size_t given = magslab_trim_all();
  platform::set_ops_for_testing(nullptr);
  const size_t unmapped = before - mapped();
  EXPECT_EQ(given, unmapped) << "bytes counted as given back while madvise was refused";
  for (void* p : kept) {
    EXPECT_EQ(*static_cast<unsigned char*>(p), 1);
    magslab_free(p);
  }
  // With madvise allowed, the pages go now, and count.
  EXPECT_GT(magslab_trim_all(), size_t{4} << 20);
}

// The page heap's purge (magslab_trim, decay): a dirty run whose madvise is
// refused is zeroed instead, and stays resident: not counted. Before, the
// purge counted every such run (8 MiB of emptied 64-byte slabs here).
TEST(TrimRefused, APurgeTheOsRefusedIsNotCounted) {
  magslab_trim_all();
  constexpr size_t kBlocks = (size_t{8} << 20) / 64;
  std::vector<void*> all(kBlocks);
  for (void*& p : all) {
    p = magslab_malloc(64);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, 64);
  }
  for (void* p : all) magslab_free(p);
  cache::flush_current();  // the slabs empty, their pages go to the page heap dirty
  depot::drain();
  const platform::PlatformOps ops{platform::os_ops().map, platform::os_ops().unmap,
                                  refused_decommit, platform::os_ops().remap,
                                  platform::os_ops().map_at};
  platform::set_ops_for_testing(&ops);
  const size_t purged = heap::purge(0);
  platform::set_ops_for_testing(nullptr);
  EXPECT_EQ(purged, 0u) << "bytes counted as purged while madvise was refused";
}

}  // namespace
