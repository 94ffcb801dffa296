// A free of pages that leaves more fully free chunks than free_chunks keeps
// unmaps one (page_heap.cc, coalesce_insert): the munmap of a resident 4 MiB
// chunk (1-3 ms here, more under load) is made after the page heap's lock is
// let go, so that another thread's slab carve or page-run allocation does not
// wait for it (stop 54's bug hunt).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/config.h"
#include "chunks/page_heap.h"
#include "platform/options.h"
#include "platform/platform.h"
#include "testing/held_point.h"
#include "testing/no_decay.h"  // no pass uses the heap meanwhile

namespace {

using namespace magslab;
constexpr auto kHold = mstest::HeldPoint::kLimit;

// The first unmap of a whole chunk waits until the test's other thread has
// used the page heap (at most kHold).
mstest::HeldPoint g_unmap;
void held_unmap(void* addr, size_t size) {
  if (size == kChunkSize) g_unmap.hold();
  platform::os_ops().unmap(addr, size);
}

heap::Run alloc(size_t npages) {
  heap::Run r{};
  EXPECT_TRUE(heap::alloc_slab_run(npages, 0, &r));
  return r;
}

// Before, unmap_chunk unmapped under heap::g_lock: the other thread's
// allocation waited until the held unmap gave up after kHold, and the test
// failed.
TEST(PageHeapUnmapMt, AnotherThreadUsesThePageHeapWhileAChunkIsUnmapped) {
  const uint64_t kept = opt::get(opt::kFreeChunks);
  ASSERT_EQ(opt::set(opt::kFreeChunks, 0), 0);
  const heap::Run whole = alloc(kPagesPerChunk);  // a chunk of its own
  std::memset(whole.addr(), 1, kChunkSize);       // resident
  const heap::Run other = alloc(1);               // and one page elsewhere, in use
  const platform::PlatformOps ops{platform::os_ops().map, held_unmap, platform::os_ops().decommit,
                                  platform::os_ops().remap, platform::os_ops().map_at};
  platform::set_ops_for_testing(&ops);
  std::thread freeing([whole] { heap::free_slab_run(whole.chunk, whole.page, whole.npages); });
  g_unmap.wait_reached();
  // The page heap meanwhile: a run freed and one allocated (its lock).
  heap::free_slab_run(other.chunk, other.page, other.npages);
  const heap::Run again = alloc(1);
  g_unmap.release();
  freeing.join();
  platform::set_ops_for_testing(nullptr);
  heap::free_slab_run(again.chunk, again.page, again.npages);
  ASSERT_EQ(opt::set(opt::kFreeChunks, kept), 0);
  EXPECT_GE(g_unmap.calls(), 1);
  EXPECT_TRUE(g_unmap.in_time()) << "the page heap's lock was held across a chunk's munmap (held "
                                 << kHold.count() << " s)";
}

}  // namespace
