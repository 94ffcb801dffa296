// Check mode near vm.max_map_count: a freed huge block waits in quarantine
// made inaccessible (mprotect PROT_NONE), and the kernel merges it with
// inaccessible neighbours (a guard page of the program's, another
// quarantined block) into one mapping. Making it accessible again then needs
// two mappings more; at the limit mprotect fails with ENOMEM, and until stop
// 40 check mode aborted there ("mprotect failed on a quarantined block") — in
// a correct program. Now the block waits once more and goes back when
// mprotect lets it.
//
// In a death test's child: it uses up the process's map count. Not under the
// sanitizers (their runtimes map at every allocation and stop the process
// themselves at the limit).
#include <errno.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "magslab/magslab.h"
#include "testing/map_count.h"
#include "testing/sanitizers.h"

namespace {

// A huge block whose mapping it fills with its trailer: one chunk of 4 MiB,
// made inaccessible whole at its free.
constexpr size_t kBlock = (size_t{4} << 20) - 4096;
constexpr size_t kPage = mstest::kMapCountPage;

[[noreturn]] void fail(const char* what) {
  fprintf(stderr, "%s\n", what);
  _exit(1);
}

// An inaccessible page of the program's at `at`, made as glibc makes a thread
// stack's guard: mapped writable, then PROT_NONE (so the kernel may merge it
// with the block's inaccessible mapping; one mapped PROT_NONE differs in its
// accounting flag and is not merged). false: the space is taken.
bool guard_page(char* at) {
  void* g = mmap(at, kPage, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (g == MAP_FAILED) return false;
  if (g != at || mprotect(g, kPage, PROT_NONE) != 0) fail("could not make a guard page");
  return true;
}

// A block with a guard page of the program's just below and just above its
// mapping (the space around a huge mapping is often free: it was trimmed to
// its alignment; blocks with a neighbour there are kept, and freed at the end).
char* block_between_guard_pages(char** taken, int* ntaken) {
  for (int i = 0; i < 16; ++i) {
    auto* p = static_cast<char*>(magslab_malloc(kBlock));
    if (p == nullptr) fail("no block");
    memset(p, 1, kBlock);
    char* above = p + (size_t{4} << 20);
    if (guard_page(p - kPage)) {
      if (guard_page(above)) return p;
      munmap(p - kPage, kPage);
    }
    taken[(*ntaken)++] = p;
  }
  fail("no block with free space on both sides");
}

// Whether [lo, hi) is one inaccessible mapping (/proc/self/maps).
bool one_inaccessible_mapping(const char* lo, const char* hi) {
  FILE* f = fopen("/proc/self/maps", "r");
  if (f == nullptr) fail("no /proc/self/maps");
  char line[512];
  bool found = false;
  while (!found && fgets(line, sizeof line, f) != nullptr) {
    unsigned long a = 0, b = 0;
    char perms[8] = {};
    if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3)
      found = a == reinterpret_cast<uintptr_t>(lo) && b == reinterpret_cast<uintptr_t>(hi) &&
              strncmp(perms, "---p", 4) == 0;
  }
  fclose(f);
  return found;
}

void release_a_block_between_guard_pages_at_the_limit() {
  char* taken[16];
  int ntaken = 0;
  char* p = block_between_guard_pages(taken, &ntaken);
  magslab_free(p);
  if (!one_inaccessible_mapping(p - kPage, p + (size_t{4} << 20) + kPage))
    fail("guard, block and guard are not one inaccessible mapping");
  size_t bytes = 0;
  char* filler = mstest::use_up_map_count(&bytes);
  if (filler == nullptr) fail("could not map the filler");
  magslab_trim();  // the quarantine goes back: aborted here before
  // The program gives its mappings back; the block that waited goes too.
  munmap(filler, bytes);
  magslab_trim();
  // Blocks handed out now are accessible (one left inaccessible would fault).
  for (int i = 0; i < 3; ++i) {
    auto* q = static_cast<char*>(magslab_malloc(kBlock));
    if (q == nullptr) fail("no block after the filler went");
    memset(q, 2, kBlock);
    magslab_free(q);
    magslab_trim();
  }
  for (int i = 0; i < ntaken; ++i) magslab_free(taken[i]);
  _exit(0);
}

// Runs child() (which _exits) in a death test's child; skipped where the
// map count cannot be used up.
#define EXPECT_CHILD_AT_THE_LIMIT_EXITS_0(child)                                      \
  do {                                                                                \
    if (kSanitized) GTEST_SKIP() << "a sanitizer's runtime maps at every allocation"; \
    if (mstest::max_map_count() > mstest::kMostMappings)                              \
      GTEST_SKIP() << "vm.max_map_count is too large to use up";                      \
    testing::GTEST_FLAG(death_test_style) = "threadsafe";                             \
    EXPECT_EXIT(child(), testing::ExitedWithCode(0), "");                             \
  } while (0)

#ifdef MS_SANITIZED
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

TEST(CheckMapCount, AQuarantinedBlockMprotectCannotReopenWaitsAndGoesBackLater) {
  EXPECT_CHILD_AT_THE_LIMIT_EXITS_0(release_a_block_between_guard_pages_at_the_limit);
}

// free() leaves errno alone (POSIX.1-2024; docs/override.md) also when the
// mprotect that makes a freed large block inaccessible fails at the limit
// (ENOMEM): until stop 47 that errno came out of magslab_free (a bug hunt).
void free_large_blocks_at_the_limit_keeps_errno() {
  constexpr size_t kLarge = size_t{2} << 20;  // a page run of a chunk: mprotect splits its mapping
  char* blocks[8];
  for (char*& b : blocks) {
    b = static_cast<char*>(magslab_malloc(kLarge));
    if (b == nullptr) fail("no block");
    memset(b, 1, kLarge);
  }
  size_t bytes = 0;
  char* filler = mstest::use_up_map_count(&bytes);
  if (filler == nullptr) fail("could not map the filler");
  for (char* b : blocks) {
    errno = 12345;
    magslab_free(b);
    if (errno != 12345) {
      fprintf(stderr, "free changed errno to %d (%s)\n", errno, strerror(errno));
      _exit(1);
    }
  }
  munmap(filler, bytes);
  _exit(0);
}

TEST(CheckMapCount, FreeAtTheLimitLeavesErrnoAlone) {
  EXPECT_CHILD_AT_THE_LIMIT_EXITS_0(free_large_blocks_at_the_limit_keeps_errno);
}

}  // namespace
