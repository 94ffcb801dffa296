// An address-space or data limit (`ulimit -v`, `ulimit -d`) or strict
// overcommit that leaves room for a mapping of the size needed but not for the
// over-map that aligns it (platform::map_aligned maps `size` + the alignment
// less a page and trims). The fake OS (testing/fake_os.h) refuses every map
// of more than a given size: deterministic, where a real limit's outcome
// depends on where ASLR puts the process's mappings (one that straddles a
// 1 GiB line needs a second 4 MiB page-map leaf). Until stop 54 a refused
// over-map failed the request: under `ulimit -v` a malloc of 6 MiB got ENOMEM
// with 11.8 MiB of the limit left, and tests/small_limits_main.c failed 1-3
// runs in 100 at 40-42 MiB.
#include <errno.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "base/config.h"
#include "magslab/magslab.h"
#include "platform/platform.h"
#include "testing/fake_os.h"

namespace {

namespace fake_os = mstest::fake_os;
namespace platform = magslab::platform;
using magslab::kChunkSize;
constexpr size_t kMiB = size_t{1} << 20;

bool aligned(const void* p, size_t alignment) {
  return (reinterpret_cast<uintptr_t>(p) & (alignment - 1)) == 0;
}

TEST(MapAligned, AnOverMapRefusedFallsBackToAMappingOfTheSize) {
  fake_os::Guard os;
  fake_os::refuse_maps_over(kChunkSize);
  errno = 0;
  auto* p = static_cast<char*>(platform::map_aligned(kChunkSize, kChunkSize));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(errno, 0);  // the refused over-map's ENOMEM is not left behind
  EXPECT_TRUE(aligned(p, kChunkSize)) << static_cast<void*>(p);
  EXPECT_TRUE(platform::fully_mapped(p, kChunkSize));
  memset(p, 0x5a, kChunkSize);
  platform::unmap(p, kChunkSize);
  EXPECT_EQ(fake_os::counts().refused_maps, 1u);  // the over-map only
}

// The mapping of the size itself placed where it is not aligned (the kernel
// puts it at the top of the highest gap that holds it): given back and mapped
// again at the aligned address below it.
TEST(MapAligned, AMisplacedMappingOfTheSizeMovesToTheAlignedAddressBelow) {
  fake_os::Guard os;
  fake_os::refuse_maps_over(2 * kChunkSize);
  fake_os::misplace_maps(kChunkSize);
  auto* p = static_cast<char*>(platform::map_aligned(2 * kChunkSize, kChunkSize));
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned(p, kChunkSize)) << static_cast<void*>(p);
  EXPECT_TRUE(platform::fully_mapped(p, 2 * kChunkSize));
  memset(p, 0x5a, 2 * kChunkSize);
  platform::unmap(p, 2 * kChunkSize);
  // The over-map (refused), the misplaced mapping, the one at the aligned address.
  EXPECT_EQ(fake_os::counts().maps, 3u);
  EXPECT_EQ(fake_os::counts().refused_maps, 1u);
}

TEST(MapAligned, RefusedWhenTheSizeItselfIsRefused) {
  fake_os::Guard os;
  fake_os::refuse_maps_over(kChunkSize - magslab::kPageSize);
  errno = 0;
  EXPECT_EQ(platform::map_aligned(kChunkSize, kChunkSize), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

// Through malloc: a huge block (a mapping of its own, 8 MiB for 6 MiB) and
// the chunks of new slabs (4 MiB each), with room for exactly their size.
TEST(AddressSpaceLimit, AHugeBlockFitsWhereItsOverMapDoesNot) {
  magslab_trim_all();  // no cached huge mapping serves it
  fake_os::Guard os;
  fake_os::refuse_maps_over(8 * kMiB);
  for (bool misplaced : {false, true}) {
    fake_os::misplace_maps(misplaced ? kChunkSize : 0);
    errno = 0;
    auto* p = static_cast<char*>(magslab_malloc(6 * kMiB));
    ASSERT_NE(p, nullptr) << "misplaced " << misplaced << ", errno " << errno;
    EXPECT_TRUE(aligned(p, kChunkSize));
    memset(p, 0x5a, 6 * kMiB);
    magslab_free(p);
    magslab_trim_all();
  }
}

TEST(AddressSpaceLimit, NewChunksFitWhereTheirOverMapDoesNot) {
  magslab_trim_all();  // every free chunk given back: the blocks below need new ones
  constexpr size_t kBlock = 512 << 10;
  constexpr int kBlocks = 40;  // 20 MiB: five chunks at least
  fake_os::Guard os;
  fake_os::refuse_maps_over(kChunkSize);
  fake_os::misplace_maps(kChunkSize);
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) {
    errno = 0;
    void* p = magslab_malloc(kBlock);
    if (p == nullptr) ADD_FAILURE() << "block " << i << ": errno " << errno;
    if (p == nullptr) break;
    memset(p, i, kBlock);
    blocks.push_back(p);
  }
  for (void* p : blocks) magslab_free(p);
  EXPECT_GE(fake_os::counts().refused_maps, 1u);  // an over-map was refused
  magslab_trim_all();
}

}  // namespace
