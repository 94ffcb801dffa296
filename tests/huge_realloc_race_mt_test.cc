// Issue #12, defect 1: a huge realloc that shrinks or moves its mapping with
// mremap gives address space back to the OS. Another thread may map a huge
// block into that space at once and register it in the page map; the
// realloc must never clear page-map slots that are not its own any more.
//
// Deterministic: a fake OS (platform::set_ops_for_testing) runs the real
// mremap and then, before returning to magslab, lets another thread allocate
// a huge block whose mapping the fake places exactly in the range the mremap
// just released. Natural: threads that shrink huge blocks with realloc race
// threads that malloc/free huge blocks.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "chunks/chunk_map.h"
#include "magslab/magslab.h"
#include "platform/platform.h"

#include "testing/pattern.h"
#include "testing/sanitizers.h"
#include "testing/threads.h"

namespace {

namespace platform = magslab::platform;
constexpr size_t MiB = size_t{1} << 20;

// The range the last mremap released, and whether the next map() must be
// placed at its start (MAP_FIXED_NOREPLACE: fails rather than clobbers).
std::atomic<uintptr_t> g_gap{0};
std::atomic<bool> g_place_in_gap{false};
std::atomic<bool> g_refuse_grow_in_place{false};
std::atomic<bool> g_hook_armed{false};
std::atomic<int> g_placed{0};
// The other thread's hand-shake: 0 wait, 1 allocate now, 2 done, 3 quit.
std::atomic<int> g_go{0};
void* g_other_block = nullptr;  // written by the other thread, read after join
size_t g_other_size = 17 * MiB;

std::atomic<uintptr_t> g_gap_end{0};

void* fake_map(size_t size) {
  if (g_place_in_gap.exchange(false)) {
    // The first chunk-aligned place in the gap where the mapping fits (the
    // sanitizers' runtimes may have mapped something at its start meanwhile).
    for (uintptr_t at = g_gap.load(); at + size <= g_gap_end.load(); at += magslab::kChunkSize) {
      void* want = reinterpret_cast<void*>(at);
      void* p = mmap(want, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == want) {
        g_placed.fetch_add(1);
        return p;
      }
      if (p != MAP_FAILED) munmap(p, size);
    }
  }
  return platform::os_ops().map(size);
}
void fake_unmap(void* a, size_t n) { platform::os_ops().unmap(a, n); }
bool fake_decommit(void* a, size_t n) { return platform::os_ops().decommit(a, n); }

void* fake_remap(void* old_addr, size_t old_size, size_t new_size, void* new_addr) {
  if (new_addr == nullptr && new_size > old_size && g_refuse_grow_in_place.load()) return nullptr;
  void* r = platform::os_ops().remap(old_addr, old_size, new_size, new_addr);
  if (r == nullptr || !g_hook_armed.exchange(false)) return r;
  // The address space just released: the tail of a shrink, or all of the
  // old range of a move.
  uintptr_t gap = new_addr == nullptr ? reinterpret_cast<uintptr_t>(old_addr) + new_size
                                      : reinterpret_cast<uintptr_t>(old_addr);
  g_gap.store(gap);
  g_gap_end.store(reinterpret_cast<uintptr_t>(old_addr) + old_size);
  g_place_in_gap.store(true);
  // Another thread (started before the realloc, so that creating it maps
  // nothing now) maps a huge block into the gap while this realloc is still
  // between its mremap and its return.
  g_go.store(1);
  while (g_go.load() != 2) std::this_thread::yield();
  return r;
}

// The other thread: waits for the hook, allocates, reports back.
void other_thread_body() {
  while (g_go.load() == 0) std::this_thread::yield();
  if (g_go.load() == 1) {
    g_other_block = magslab_malloc(g_other_size);
    if (g_other_block != nullptr) memset(g_other_block, 0x5A, g_other_size);
  }
  g_go.store(2);
}

void* fake_map_at(void* a, size_t n) { return platform::os_ops().map_at(a, n); }
const platform::PlatformOps kFakeOps{fake_map, fake_unmap, fake_decommit, fake_remap, fake_map_at};

class FakeOs {
 public:
  FakeOs() {
    magslab_trim();  // no cached huge mapping may serve the other thread
    g_go.store(0);
    other_ = std::thread(other_thread_body);
    platform::set_ops_for_testing(&kFakeOps);
  }
  ~FakeOs() {
    if (g_go.load() == 0) g_go.store(3);  // the hook never ran: release the thread
    other_.join();
    g_hook_armed.store(false);
    g_place_in_gap.store(false);
    g_refuse_grow_in_place.store(false);
    platform::set_ops_for_testing(nullptr);
  }
  FakeOs(const FakeOs&) = delete;
  FakeOs& operator=(const FakeOs&) = delete;

 private:
  std::thread other_;
};

// The other thread's block must still be known to magslab: its page-map
// slots intact, its usable size right, and it must free cleanly.
void expect_other_block_intact() {
  ASSERT_EQ(g_placed.load(), 1) << "the fake OS did not place the block in the released range";
  ASSERT_NE(g_other_block, nullptr);
  auto q = reinterpret_cast<uintptr_t>(g_other_block);
  ASSERT_GE(q, g_gap.load());
  ASSERT_LE(q + g_other_size, g_gap_end.load()) << "the block is not in the released range";
  for (uintptr_t a = q; a < q + g_other_size; a += magslab::kChunkSize)
    ASSERT_NE(magslab::pagemap::lookup(a).extent(), nullptr)
        << "the realloc cleared the page-map slot of another thread's block at 0x" << std::hex << a;
  EXPECT_GE(magslab_usable_size(g_other_block), g_other_size);
  magslab_free(g_other_block);
  g_other_block = nullptr;
}

// One pattern byte per page (testing/pattern.h): the blocks are tens of MiB.
void fill(void* p, size_t n, uint8_t seed) { mstest::fill_pattern_sparse(p, n, seed); }
size_t first_bad(const void* p, size_t n, uint8_t seed) {
  return mstest::check_pattern_sparse(p, n, seed);
}

TEST(HugeReallocRace, ShrinkDoesNotClearSlotsMappedIntoTheReleasedTail) {
  g_placed.store(0);
  FakeOs os;
  void* p = magslab_malloc(40 * MiB);
  ASSERT_NE(p, nullptr);
  fill(p, 40 * MiB, 3);
  g_hook_armed.store(true);
  void* q = magslab_realloc(p, 8 * MiB);
  ASSERT_EQ(q, p) << "a huge shrink stays in place";
  EXPECT_EQ(first_bad(q, 8 * MiB, 3), SIZE_MAX);
  expect_other_block_intact();
  EXPECT_GE(magslab_usable_size(q), 8 * MiB);
  magslab_free(q);
}

TEST(HugeReallocRace, MoveDoesNotClearSlotsMappedIntoTheOldRange) {
  g_placed.store(0);
  FakeOs os;
  g_refuse_grow_in_place.store(true);
  void* p = magslab_malloc(40 * MiB);
  ASSERT_NE(p, nullptr);
  fill(p, 40 * MiB, 9);
  g_hook_armed.store(true);
  void* q = magslab_realloc(p, 60 * MiB);
  ASSERT_NE(q, nullptr);
  ASSERT_NE(q, p) << "growth in place was refused: the block must move";
  EXPECT_EQ(first_bad(q, 40 * MiB, 9), SIZE_MAX);
  expect_other_block_intact();
  EXPECT_GE(magslab_usable_size(q), 60 * MiB);
  magslab_free(q);
}

// A shrink whose mremap fails (the kernel may refuse to split a mapping when
// the process is at its map count limit) keeps the block whole and usable.
std::atomic<bool> g_fail_shrink{false};
void* failing_shrink_remap(void* a, size_t o, size_t n, void* to) {
  if (g_fail_shrink.load() && to == nullptr && n < o) return nullptr;
  return platform::os_ops().remap(a, o, n, to);
}
const platform::PlatformOps kFailShrinkOps{fake_map, fake_unmap, fake_decommit,
                                           failing_shrink_remap, fake_map_at};

TEST(HugeReallocRace, RefusedShrinkKeepsTheBlockRegistered) {
  void* p = magslab_malloc(40 * MiB);
  ASSERT_NE(p, nullptr);
  fill(p, 40 * MiB, 21);
  platform::set_ops_for_testing(&kFailShrinkOps);
  g_fail_shrink.store(true);
  void* q = magslab_realloc(p, 8 * MiB);
  g_fail_shrink.store(false);
  platform::set_ops_for_testing(nullptr);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(first_bad(q, 8 * MiB, 21), SIZE_MAX);
  auto b = reinterpret_cast<uintptr_t>(q);
  size_t usable = magslab_usable_size(q);
  EXPECT_GE(usable, 8 * MiB);
  for (uintptr_t a = b; a < b + usable; a += magslab::kChunkSize)
    EXPECT_NE(magslab::pagemap::lookup(a).extent(), nullptr) << "slot of a live block cleared";
  magslab_free(q);
}

// The natural form: 3 threads shrink 40 MiB blocks to 8 MiB while 3 threads
// malloc and free 17 MiB blocks. Before the fix this aborted within a second
// with "magslab: invalid free of 0x…".
TEST(HugeReallocRace, ShrinkersAndMappersRunTogether) {
#ifdef MS_SANITIZED
  constexpr auto kFor = std::chrono::milliseconds(1500);
#else
  constexpr auto kFor = std::chrono::milliseconds(2000);
#endif
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0}, ops{0};
  auto shrinker = [&](int t) {
    uint8_t seed = static_cast<uint8_t>(t * 40);
    while (!stop.load(std::memory_order_relaxed)) {
      void* p = magslab_malloc(40 * MiB);
      if (p == nullptr) {
        bad.fetch_add(1);
        continue;
      }
      fill(p, 8 * MiB, seed);
      void* q = magslab_realloc(p, 8 * MiB);
      if (q == nullptr || first_bad(q, 8 * MiB, seed) != SIZE_MAX) bad.fetch_add(1);
      if (q != nullptr && magslab_usable_size(q) < 8 * MiB) bad.fetch_add(1);
      magslab_free(q != nullptr ? q : p);
      ops.fetch_add(1);
      ++seed;
    }
  };
  auto mapper = [&](int t) {
    uint8_t seed = static_cast<uint8_t>(t * 40 + 100);
    while (!stop.load(std::memory_order_relaxed)) {
      void* p = magslab_malloc(17 * MiB);
      if (p == nullptr) {
        bad.fetch_add(1);
        continue;
      }
      fill(p, 17 * MiB, seed);
      if (magslab_usable_size(p) < 17 * MiB || first_bad(p, 17 * MiB, seed) != SIZE_MAX)
        bad.fetch_add(1);
      magslab_free(p);
      ops.fetch_add(1);
      ++seed;
    }
  };
  mstest::run_threads_for(6, kFor, stop,
                          [&](int i) { i % 2 == 0 ? shrinker(i / 2) : mapper(i / 2); });
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(ops.load(), 0);
  struct magslab_stats st;
  magslab_stats(&st);
  EXPECT_EQ(st.huge_live_blocks, 0u);
}

}  // namespace
