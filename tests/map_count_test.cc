// A correct program near vm.max_map_count: its own mappings use up the
// process's count, so a munmap that has to split one of magslab's mappings
// (the kernel merges adjacent anonymous mappings, so most can need a split)
// fails with ENOMEM. Until stop 39 magslab aborted there ("munmap failed
// for"): in malloc, trimming an over-mapped chunk to its alignment, and in
// free, unmapping a huge block whose mapping the kernel had merged with its
// neighbours (found by a bug-hunt helper; glibc runs both programs to the
// end). Now such a range is decommitted instead and stays mapped, unused: a
// malloc that cannot map says NULL and ENOMEM, a free frees, and once the
// program gives its mappings back everything works as before.
//
// Each case runs in a child process (a death test's): it uses up the map
// count. Not under the sanitizers: their runtimes need mappings of their own
// at every allocation, and at the limit they stop the process themselves.
#include <errno.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <vector>

#include "base/config.h"
#include "magslab/magslab.h"
#include "platform/platform.h"
#include "testing/map_count.h"

namespace {

using mstest::kMostMappings;
using mstest::max_map_count;
using mstest::use_up_map_count;
constexpr size_t kPage = mstest::kMapCountPage;

bool sanitized() {
#if MAGSLAB_TSAN || defined(__SANITIZE_ADDRESS__)
  return true;
#else
  return false;
#endif
}

// In the child: `fail` prints what went wrong and exits 1.
[[noreturn]] void fail(const char* what) {
  fprintf(stderr, "%s\n", what);
  _exit(1);
}

// Page runs of 100,000 bytes until malloc says no: every new chunk is
// over-mapped and trimmed to its alignment.
void page_runs_until_no() {
  size_t bytes = 0;
  char* big = use_up_map_count(&bytes);
  if (big == nullptr) fail("could not map the filler");
  munmap(big, 2 * kPage);  // one mapping free again, as in the program that found it
  std::vector<void*> blocks;
  blocks.reserve(200000);
  for (;;) {
    void* p = magslab_malloc(100000);
    if (p == nullptr) break;
    memset(p, 1, 100000);
    blocks.push_back(p);
    if (blocks.size() == 200000) fail("never refused: the map count was not used up");
  }
  if (errno != ENOMEM) fail("NULL without ENOMEM");
  for (void* p : blocks) magslab_free(p);
  munmap(big, bytes);  // the program gives its mappings back
  void* p = magslab_malloc(100000);
  if (p == nullptr) fail("no page run after the program gave its mappings back");
  memset(p, 2, 100000);
  magslab_free(p);
  _exit(0);
}

// The unmap every layer's free ends in (a huge block's free, a free chunk
// past free_chunks, the trim of an over-mapped chunk) on a range in the middle
// of one mapping, as a huge block's is once the kernel merged its mapping
// with its neighbours' (the program that found it grew huge blocks in place
// with realloc): the split needs one more mapping than the limit allows.
void unmap_the_middle_of_a_mapping() {
  auto* m = static_cast<char*>(
      mmap(nullptr, 3 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (m == MAP_FAILED) fail("no mapping");
  m[kPage] = 1;
  size_t bytes = 0;
  char* big = use_up_map_count(&bytes);
  if (big == nullptr) fail("could not map the filler");
  errno = 0;
  magslab::platform::os_ops().unmap(m + kPage, kPage);
  if (errno != 0) fail("errno changed");
  if (m[kPage] != 0) fail("the page was not given back");  // decommitted: it reads zero
  munmap(big, bytes);
  _exit(0);
}

size_t mappings() {
  size_t n = 0;
  if (FILE* f = fopen("/proc/self/maps", "r")) {
    for (int c; (c = fgetc(f)) != EOF;) n += c == '\n';
    fclose(f);
  }
  return n;
}

// Huge blocks of whole chunks, mapped one after another, lie next to each
// other, so the kernel merges their mappings: 64 of them added 64 mappings
// before stop 51 (platform::map_aligned over-mapped by the whole alignment and
// kept the lower aligned start, leaving a 4 MiB hole above each block under the
// kernel's top-down layout), and a program holding 65,000 huge blocks got NULL
// and ENOMEM at vm.max_map_count where glibc, mimalloc and jemalloc ran on with
// under 50 mappings (stop 51's bug hunt).
TEST(MapCount, HugeBlocksMappedOneAfterAnotherShareMappings) {
  if (sanitized()) GTEST_SKIP() << "a sanitizer's runtime maps at every allocation";
  magslab_trim_all();  // no cached huge mapping serves the blocks below
  constexpr int kBlocks = 64;
  std::vector<void*> blocks;
  const size_t before = mappings();
  for (int i = 0; i < kBlocks; ++i) {
    auto* p = static_cast<char*>(magslab_malloc(size_t{4} << 20));
    ASSERT_NE(p, nullptr);
    p[0] = 1;
    blocks.push_back(p);
  }
  const size_t after = mappings();
  for (void* p : blocks) magslab_free(p);
  EXPECT_LT(after - before, size_t{kBlocks / 4})
      << before << " mappings before, " << after << " after";
}

TEST(MapCount, PageRunsNearTheLimitAreRefusedNotFatal) {
  if (sanitized()) GTEST_SKIP() << "a sanitizer's runtime maps at every allocation";
  if (max_map_count() > kMostMappings) GTEST_SKIP() << "vm.max_map_count is too large to use up";
  testing::GTEST_FLAG(death_test_style) = "threadsafe";
  EXPECT_EXIT(page_runs_until_no(), testing::ExitedWithCode(0), "");
}

TEST(MapCount, AnUnmapThatWouldSplitAMappingAtTheLimitDecommits) {
  if (sanitized()) GTEST_SKIP() << "a sanitizer's runtime maps at every allocation";
  if (max_map_count() > kMostMappings) GTEST_SKIP() << "vm.max_map_count is too large to use up";
  testing::GTEST_FLAG(death_test_style) = "threadsafe";
  EXPECT_EXIT(unmap_the_middle_of_a_mapping(), testing::ExitedWithCode(0), "");
}

}  // namespace
