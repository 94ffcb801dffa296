// Check mode under a data limit (`ulimit -d`, RLIMIT_DATA). A freed huge
// block waits in quarantine decommitted and inaccessible (PROT_NONE, which
// the limit does not count), but its mapping's rest past the block stays
// writable and counts: 3 MiB of a 1 MiB block's 4. An allocation short of
// memory empties the quarantine; a block leaving it was made accessible
// again first, and mprotect refuses that under the limit (writable pages are
// charged), so until stop 54's bug hunt the blocks stayed, still holding
// their mappings, and the allocation failed where release's succeeded.
#include <errno.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "magslab/magslab.h"

namespace {

// VmData (what RLIMIT_DATA counts), in bytes; 0 if unknown.
size_t data_bytes() {
  FILE* f = fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  size_t kib = 0;
  while (fgets(line, sizeof line, f) != nullptr)
    if (strncmp(line, "VmData:", 7) == 0) kib = strtoul(line + 7, nullptr, 10);
  fclose(f);
  return kib << 10;
}

constexpr size_t kMiB = size_t{1} << 20;

TEST(CheckDataLimit, QuarantinedHugeBlocksGoBackWhereMprotectCannotReopenThem) {
#if MS_SANITIZED
  GTEST_SKIP() << "the sanitizer's runtime maps memory of its own under the limit";
#else
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Three huge blocks (1 MiB and a byte: a 4 MiB mapping each), freed:
    // quarantined.
    constexpr size_t kBlock = kMiB + 1;
    void* blocks[3];
    for (void*& b : blocks) {
      b = magslab_malloc(kBlock);
      if (b == nullptr) _exit(2);
      memset(b, 1, kBlock);
    }
    for (void* b : blocks) magslab_free(b);
    rlimit lim{};
    if (getrlimit(RLIMIT_DATA, &lim) != 0 || data_bytes() == 0) _exit(3);
    // Less room than a quarantined block's pages: none can be reopened.
    lim.rlim_cur = static_cast<rlim_t>(data_bytes() + kMiB / 2);
    if (setrlimit(RLIMIT_DATA, &lim) != 0) _exit(3);
    // A 4 MiB mapping: fits once the quarantined blocks' mappings are gone
    // (9 MiB and more; a new page-map leaf too, 4 MiB more).
    constexpr size_t kNew = 2 * kMiB + 1;
    errno = 4321;
    auto* p = static_cast<char*>(magslab_malloc(kNew));
    const int err = errno;
    if (p == nullptr) _exit(1);
    memset(p, 2, kNew);
    magslab_free(p);
    _exit(err == 4321 ? 0 : 4);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st)) << "signal " << WTERMSIG(st);
  EXPECT_EQ(WEXITSTATUS(st), 0) << "1: NULL (the quarantined blocks stayed); 2: no block to free; "
                                   "3: no limit; 4: errno changed";
#endif
}

}  // namespace
