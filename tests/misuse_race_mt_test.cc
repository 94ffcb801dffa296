// Issue #12, defect 5: an invalid free that races with the unmapping of its
// chunk. The free finds the chunk's descriptor in the page map, then waits
// for the page-heap lock; meanwhile the chunk is unmapped and the descriptor
// reused for a chunk at another address. Deciding with what was read before
// the lock — a page index computed from the old base — reads the wrong page
// of the new chunk (or outside the descriptor's arrays) and may free a live
// block of someone else. The free must decide under the lock, from the page
// map as it is then, and end in one line "magslab: invalid free of 0x…".
//
// The interleaving is made deterministic: the test holds the page-heap lock
// while a second thread frees, waits until that thread sleeps on the lock,
// and then moves the descriptor to a new chunk whose page at the same index
// is the start of a live large block. A second test swaps the chunk for a
// huge block instead, whose page-map entries are under another lock.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "chunks/chunk_map.h"
#include "chunks/page_heap.h"
#include "large/large.h"
#include "magslab/magslab.h"

namespace {

using namespace magslab;

// True once thread `tid` of this process sleeps (state S: blocked on a futex).
bool sleeping(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string s;
  std::getline(f, s);
  size_t r = s.rfind(')');
  return r != std::string::npos && r + 2 < s.size() && s[r + 2] == 'S';
}

void free_during_descriptor_reuse() {
  // A page run (aligned beyond a page: no class): its pages are tagged in the
  // chunk's descriptor, its length is in large/'s record of the chunk.
  void* big = magslab_aligned_alloc(8192, 200 << 10);
  auto a = reinterpret_cast<uintptr_t>(big);
  ChunkMeta* c = pagemap::lookup(a).chunk();
  if (c == nullptr) std::abort();
  const uintptr_t old_base = c->base();
  const uint32_t page = static_cast<uint32_t>((a - old_base) >> kPageShift);
  magslab_free(big);  // `big` is now a dangling pointer: freeing it again is misuse

  // A chunk-aligned region standing in for the chunk the descriptor is reused for.
  auto* raw = static_cast<char*>(
      mmap(nullptr, 2 * kChunkSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  const uintptr_t new_base =
      (reinterpret_cast<uintptr_t>(raw) + kChunkSize - 1) & ~(kChunkSize - 1);

  heap::g_lock.lock();
  std::atomic<pid_t> tid{0};
  std::thread misuser([&] {
    tid.store(static_cast<pid_t>(gettid()));
    fprintf(stderr, "magslab-test: freeing %p\n", big);
    magslab_free(big);  // must abort: "invalid free of <big>"
  });
  while (tid.load() == 0) std::this_thread::yield();
  for (int i = 0; i < 500 && !sleeping(tid.load()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));

  // The chunk goes away and its descriptor now describes new_base, where the
  // page with the same index is the first page of a live one-page block.
  pagemap::clear(old_base);
  c->set_base(new_base);
  pagemap::set(new_base, c);
  c->tag[page] = large::kTagStart;
  c->run_record->pages[page] = 1;  // the record exists: the chunk held `big`
  heap::g_lock.unlock();
  misuser.join();
  // Reaching here means the free returned: it freed the other block.
  fprintf(stderr, "magslab-test: the stale free returned without a report\n");
  std::exit(0);
}

// The free finds a chunk in the page map and waits for the page-heap lock;
// meanwhile the chunk is unmapped and a huge block mapped over its range, so
// under the lock the slot holds an extent, whose entries and descriptor are
// under the large layer's own lock. The free must take that lock and decide
// there: p is inside the huge block, not its start.
void free_during_chunk_to_huge_swap() {
  void* big = magslab_aligned_alloc(8192, 200 << 10);  // a page run
  auto a = reinterpret_cast<uintptr_t>(big);
  ChunkMeta* c = pagemap::lookup(a).chunk();
  if (c == nullptr) std::abort();
  void* huge = magslab_malloc(size_t{8} << 20);
  Extent* h = pagemap::lookup(reinterpret_cast<uintptr_t>(huge)).extent();
  if (h == nullptr) std::abort();
  magslab_free(big);  // dangling from here on

  heap::g_lock.lock();
  std::atomic<pid_t> tid{0};
  std::thread misuser([&] {
    tid.store(static_cast<pid_t>(gettid()));
    fprintf(stderr, "magslab-test: freeing %p\n", big);
    magslab_free(big);  // must abort: "invalid free of <big> (huge block, 8388608 B)"
  });
  while (tid.load() == 0) std::this_thread::yield();
  for (int i = 0; i < 500 && !sleeping(tid.load()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));

  // The chunk's slot now names the huge block (as if it had been mapped there).
  pagemap::set(c->base(), h);
  heap::g_lock.unlock();
  misuser.join();
  fprintf(stderr, "magslab-test: the stale free returned without a report\n");
  std::exit(0);
}

TEST(MisuseRaceDeathTest, InvalidFreeRacingDescriptorReuseIsReported) {
  testing::GTEST_FLAG(death_test_style) = "threadsafe";
  EXPECT_DEATH(free_during_descriptor_reuse(), "magslab: invalid free of 0x[0-9a-f]+");
}

TEST(MisuseRaceDeathTest, InvalidFreeRacingChunkToHugeSwapIsReported) {
  testing::GTEST_FLAG(death_test_style) = "threadsafe";
  EXPECT_DEATH(free_during_chunk_to_huge_swap(),
               "magslab: invalid free of 0x[0-9a-f]+ \\(huge block, 8388608 B\\)");
}

}  // namespace
