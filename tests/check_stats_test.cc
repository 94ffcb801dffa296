// Check mode's own records in metadata_bytes ("mapped for magslab's own
// records, never unmapped": docs/options.md). The quarantine ring a thread
// makes at its first free and the zero-size blocks' state and site arrays,
// made at the first malloc(0), are mapped outside the metadata arena and are
// never unmapped; until stop 51's bug hunt (statistics) metadata_bytes did not
// count them: the process's anonymous address space grew by 132 KiB for a
// thread's ring, 48 MiB for the zero-size arrays, and metadata_bytes by 0.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "magslab/magslab.h"

namespace {

struct magslab_stats g_a, g_b;  // 13 KiB each: off the stack

// Bytes of the process's mappings that are neither file-backed nor named
// ([heap], [stack], [vvar]...), read from /proc/self/maps without the heap.
size_t anonymous_bytes() {
  char buf[1 << 16];
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return 0;
  size_t total = 0;
  while (std::fgets(buf, sizeof buf, f) != nullptr) {
    unsigned long from = 0, to = 0, inode = 1;
    char path[256] = "";
    int fields = std::sscanf(buf, "%lx-%lx %*s %*s %*s %lu %255s", &from, &to, &inode, path);
    if (fields >= 3 && inode == 0 && path[0] == '\0') total += to - from;
  }
  std::fclose(f);
  return total;
}

// Address space magslab's statistics account for.
size_t counted(const struct magslab_stats& s) { return s.mapped_bytes + s.metadata_bytes; }

TEST(CheckStats, AThreadsQuarantineRingIsInTheMetadata) {
  void* p = nullptr;
  int step = 0;
  std::mutex m;
  std::condition_variable cv;
  auto wait_for = [&](int s) {
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return step >= s; });
  };
  auto go = [&](int s) {
    {
      std::lock_guard<std::mutex> l(m);
      step = s;
    }
    cv.notify_all();
  };
  std::thread t([&] {
    p = magslab_malloc(100);  // its cache (and any chunk) before the measurement
    go(1);
    wait_for(2);
    magslab_free(p);  // its first free: its ring
    go(3);
    wait_for(4);
  });
  wait_for(1);
  const size_t before = anonymous_bytes();
  magslab_stats(&g_a);
  go(2);
  wait_for(3);
  const size_t after = anonymous_bytes();
  magslab_stats(&g_b);
  go(4);
  t.join();
  ASSERT_GT(after, before) << "the ring is a mapping of its own";
  EXPECT_GE(counted(g_b) - counted(g_a), after - before)
      << "address space mapped by the thread's first free that the statistics do not count";
}

TEST(CheckStats, TheZeroSizeBlocksRecordsAreInTheMetadata) {
  magslab_free(magslab_malloc(16));
  const size_t before = anonymous_bytes();
  magslab_stats(&g_a);
  void* z = magslab_malloc(0);  // the first: the zero-size range and its records
  ASSERT_NE(z, nullptr);
  const size_t after = anonymous_bytes();
  magslab_stats(&g_b);
  magslab_free(z);
  // The range itself (no access, never committed) holds the blocks; its
  // records, a byte and a site a slot, are magslab's.
  ASSERT_GT(after, before);
  EXPECT_GE(g_b.metadata_bytes - g_a.metadata_bytes, size_t{48} << 20)
      << "metadata_bytes did not count the zero-size blocks' state and site arrays";
}

}  // namespace
