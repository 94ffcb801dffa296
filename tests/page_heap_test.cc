// chunks/page_heap as a unit, through heap:: directly (no slab, no large
// block above it): runs carved first-fit from 4 MiB chunks, aligned runs,
// freed runs coalescing with free neighbours, in-place growth into a free
// neighbour, purging dirty runs (they then read as zero), and fully free
// chunks kept (option free_chunks, heap::free_chunks_kept()) or unmapped. The large blocks built on
// it are tested through the public API in large_blocks_test.cc.
#include "chunks/page_heap.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/config.h"
#include "chunks/meta_arena.h"
#include "platform/options.h"
#include "small/slab.h"  // Slab, only as a pointer type for the page map
#include "testing/fake_os.h"
#include "testing/no_decay.h"  // exact cache contents
#include "testing/pattern.h"
#include "testing/resident.h"

namespace {

using namespace magslab;

// Runs are taken and given back under the heap lock, as the layers above do.
struct Locked {
  Locked() { heap::g_lock.lock(); }
  ~Locked() { heap::g_lock.unlock(); }
};

heap::Run alloc(size_t npages, size_t align = 1, bool* zeroed = nullptr) {
  Locked l;
  heap::Run r{};
  bool z = false;
  EXPECT_TRUE(heap::alloc_locked(npages, align, &r, &z)) << npages << " pages";
  if (zeroed != nullptr) *zeroed = z;
  return r;
}

void free_run(const heap::Run& r, bool dirty = true) {
  bool over_budget;
  {
    Locked l;
    over_budget = heap::free_locked(r.chunk, r.page, r.npages, dirty);
  }
  if (over_budget) heap::purge_excess();
}

heap::Totals totals() {
  Locked l;
  return heap::totals_locked();
}

TEST(PageHeap, RunsAreCarvedFirstFitAndCounted) {
  // Earlier tests (in a shuffled order) leave fully free chunks kept, their
  // pages dirty: first fit would carve from those. Unmapped, a chunk mapped
  // anew serves the runs below.
  {
    Locked l;
    heap::release_free_chunks_locked(0);
  }
  const heap::Totals t0 = totals();
  bool zeroed = false;
  heap::Run a = alloc(10, 1, &zeroed);
  EXPECT_TRUE(zeroed) << "a fresh chunk's pages read as zero";
  heap::Run b = alloc(20);
  heap::Run c = alloc(30);
  ASSERT_EQ(a.npages, 10u);
  ASSERT_EQ(b.chunk, a.chunk);
  ASSERT_EQ(c.chunk, a.chunk);
  EXPECT_EQ(b.page, a.page + 10);
  EXPECT_EQ(c.page, b.page + 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.addr()) % kPageSize, 0u);
  const heap::Totals t1 = totals();
  EXPECT_EQ(t1.free_pages + 60, t0.free_pages + kPagesPerChunk * (t1.chunks - t0.chunks));
  for (const heap::Run& r : {a, b, c}) free_run(r);
  EXPECT_EQ(totals().free_pages, t1.free_pages + 60);
}

TEST(PageHeap, FreedNeighboursCoalesceIntoOneRun) {
  heap::Run a = alloc(10), b = alloc(20), guard = alloc(1);
  ASSERT_EQ(b.page, a.page + 10);
  ASSERT_EQ(guard.page, b.page + 20);
  std::memset(a.addr(), 0xAB, 10 * kPageSize);
  free_run(a);
  free_run(b);
  // Neither 10 nor 20 pages alone hold 30: only the merged run starts at a.
  bool zeroed = true;
  heap::Run m = alloc(30, 1, &zeroed);
  EXPECT_EQ(m.chunk, a.chunk);
  EXPECT_EQ(m.page, a.page);
  EXPECT_FALSE(zeroed) << "a merged run is dirty if any part was";
  free_run(m);
  free_run(guard);
}

// A clean run (a purged one going back in, or a run handed back untouched)
// that merges with a dirty free neighbour on either side makes one dirty run:
// a run said to be clean is handed to calloc unwritten (large::alloc's
// `zeroed`). Stop 52's mutation campaign: dropping either neighbour's flag in
// coalesce_insert passed every test and magslab-stress.
TEST(PageHeap, ACleanRunMergedWithADirtyNeighbourIsDirty) {
  for (bool dirty_on_the_right : {true, false}) {
    heap::Run a = alloc(10), b = alloc(20), guard = alloc(1);
    ASSERT_EQ(b.page, a.page + 10);
    ASSERT_EQ(guard.page, b.page + 20);
    const heap::Run& dirty = dirty_on_the_right ? b : a;
    const heap::Run& clean = dirty_on_the_right ? a : b;
    std::memset(dirty.addr(), 0xAB, size_t{dirty.npages} * kPageSize);
    free_run(dirty);
    free_run(clean, /*dirty=*/false);
    bool zeroed = true;
    heap::Run m = alloc(30, 1, &zeroed);
    EXPECT_EQ(m.chunk, a.chunk);
    EXPECT_EQ(m.page, a.page);
    EXPECT_FALSE(zeroed) << "the dirty run is on the " << (dirty_on_the_right ? "right" : "left");
    free_run(m);
    free_run(guard);
  }
}

TEST(PageHeap, AlignedRunsStartAtAMultipleOfTheAlignment) {
  heap::Run pad = alloc(3);  // so the next free page is not aligned by chance
  for (size_t align : {2, 16, 64, 256}) {
    heap::Run r = alloc(5, align);
    EXPECT_EQ(r.page % align, 0u) << align;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.addr()) % (align * kPageSize), 0u) << align;
    free_run(r);
  }
  free_run(pad);
}

TEST(PageHeap, TryGrowTakesTheFreeNeighbourOnly) {
  heap::Run x = alloc(8);
  heap::Run y = alloc(8);
  ASSERT_EQ(y.page, x.page + 8);
  {
    Locked l;
    EXPECT_FALSE(heap::try_grow_locked(x.chunk, x.page, 8, 12)) << "y is not free";
    EXPECT_TRUE(heap::try_grow_locked(y.chunk, y.page, 8, 40));
    EXPECT_FALSE(heap::try_grow_locked(y.chunk, y.page, 40, kPagesPerChunk + 1));
  }
  // y now holds 40 pages: the next run starts after them.
  heap::Run z = alloc(4);
  EXPECT_EQ(z.chunk, y.chunk);
  EXPECT_EQ(z.page, y.page + 40);
  free_run(z);
  free_run(heap::Run{y.chunk, y.page, 40});
  free_run(x);
}

TEST(PageHeap, PurgedRunsReadAsZero) {
  heap::Run r = alloc(16);
  std::memset(r.addr(), 0x5C, 16 * kPageSize);
  free_run(r);
  EXPECT_GE(totals().dirty_pages, 16u);
  mstest::fake_os::Guard os;
  EXPECT_GE(heap::purge(0), 16 * kPageSize);
  EXPECT_EQ(totals().dirty_pages, 0u);
  EXPECT_GE(mstest::fake_os::counts().decommits, 1u);
  bool zeroed = false;
  heap::Run again = alloc(16, 1, &zeroed);
  EXPECT_TRUE(zeroed);
  EXPECT_EQ(mstest::check_zero(again.addr(), 16 * kPageSize), mstest::kNoMismatch);
  free_run(again);
}

TEST(PageHeap, FullyFreeChunksAreKeptUpToTheCacheThenUnmapped) {
  {
    Locked l;
    heap::release_free_chunks_locked(0);
  }
  const heap::Totals t0 = totals();
  EXPECT_EQ(t0.free_chunks, 0u);
  // Whole chunks: each needs a new mapping.
  std::vector<heap::Run> runs;
  for (size_t i = 0; i < heap::free_chunks_kept() + 2; ++i) runs.push_back(alloc(kPagesPerChunk));
  EXPECT_EQ(totals().chunks, t0.chunks + runs.size());
  for (const heap::Run& r : runs) free_run(r);
  heap::Totals t1 = totals();
  EXPECT_EQ(t1.free_chunks, heap::free_chunks_kept());
  EXPECT_EQ(t1.chunks, t0.chunks + heap::free_chunks_kept());
  {
    Locked l;
    EXPECT_EQ(heap::release_free_chunks_locked(0), heap::free_chunks_kept() * kChunkSize);
  }
  EXPECT_EQ(totals().chunks, t0.chunks);
  EXPECT_EQ(totals().free_chunks, 0u);
}

// A free_chunks lowered at run time applies at the next free of pages
// (docs/options.md): every fully free chunk above the new limit is unmapped
// then. Until a bug hunt's fix only one went, when a free made one more chunk
// fully free, so the chunks above a lowered limit stayed mapped until a trim.
TEST(PageHeap, AFreeChunksLimitLoweredAtRunTimeAppliesAtTheNextFree) {
  {
    Locked l;
    heap::release_free_chunks_locked(0);
  }
  const uint64_t kept = opt::get(opt::kFreeChunks);
  ASSERT_EQ(opt::set(opt::kFreeChunks, 8), 0);
  const heap::Totals t0 = totals();
  std::vector<heap::Run> runs;
  for (int i = 0; i < 8; ++i) runs.push_back(alloc(kPagesPerChunk));
  for (const heap::Run& r : runs) free_run(r);
  EXPECT_EQ(totals().free_chunks, 8u);
  ASSERT_EQ(opt::set(opt::kFreeChunks, 1), 0);
  free_run(alloc(1));  // the next free of pages, whichever chunk it is in
  EXPECT_EQ(totals().free_chunks, 1u);
  EXPECT_EQ(totals().chunks, t0.chunks + 1);
  ASSERT_EQ(opt::set(opt::kFreeChunks, kept), 0);
  Locked l;
  heap::release_free_chunks_locked(0);
}

// Pages of [addr, addr+bytes) (page-aligned) that are resident.
size_t resident_pages(const void* addr, size_t bytes) {
  std::vector<bool> v =
      mstest::pages_resident(reinterpret_cast<uintptr_t>(addr), bytes / kPageSize);
  EXPECT_EQ(v.size(), bytes / kPageSize) << "not mapped";
  size_t n = 0;
  for (bool r : v) n += r;
  return n;
}

// A burst that once needed many chunks must not keep their metadata resident
// after they are unmapped: the chunk slot's page words and slab pointers in
// the page-map leaf (16 KiB) and the descriptor's tables (9 KiB) go back to
// the OS. (An 870 MiB burst left 3.6 MiB of leaf and 1.8 MiB of pooled
// descriptors resident, issue #17.)
TEST(PageHeap, AnUnmappedChunkGivesBackItsPageMapAndDescriptorPages) {
  {
    Locked l;
    heap::release_free_chunks_locked(0);
  }
  heap::Run whole = alloc(kPagesPerChunk);  // a chunk of its own
  ChunkMeta* m = whole.chunk;
  const uintptr_t base = m->base();
  // What slabs do to the leaf: every page's word and slab pointer set, then cleared.
  auto* fake = reinterpret_cast<Slab*>(uintptr_t{64});
  for (uint32_t p = 0; p < kPagesPerChunk; p += pagemap::kMaxSlabPages) {
    pagemap::set_slab(base + (uintptr_t{p} << kPageShift), pagemap::kMaxSlabPages, fake,
                      uint64_t{1} << 40);
    pagemap::set_slab(base + (uintptr_t{p} << kPageShift), pagemap::kMaxSlabPages, nullptr, 0);
  }
  // Single pages freed odd then even: a free-run boundary at every page once.
  for (uint32_t p = 1; p < kPagesPerChunk; p += 2) free_run(heap::Run{m, p, 1});
  for (uint32_t p = 0; p < kPagesPerChunk; p += 2) free_run(heap::Run{m, p, 1});
  pagemap::Leaf* leaf = pagemap::leaf_of(base);
  ASSERT_NE(leaf, nullptr);
  const size_t i = (base >> kPageShift) & ((size_t{1} << pagemap::kLeafPageBits) - 1);
  constexpr size_t kSlotBytes = kPagesPerChunk * sizeof(uint64_t);
  const auto table_from = reinterpret_cast<uintptr_t>(m->free_run);
  const auto table_to = table_from + align_up(ChunkMeta::kTablesBytes, kPageSize);
  ASSERT_EQ(table_from % kPageSize, 0u) << "the tables are pages of their own";
  ASSERT_EQ(reinterpret_cast<uintptr_t>(m->tag), table_from + kPagesPerChunk * sizeof(FreeRun*));
  m->tag[kPagesPerChunk - 1] = 7;  // a tag the page's last owner left (a large block's)
  ASSERT_EQ(resident_pages(&leaf->word[i], kSlotBytes), kSlotBytes / kPageSize);
  ASSERT_EQ(resident_pages(reinterpret_cast<void*>(table_from), table_to - table_from),
            (table_to - table_from) / kPageSize);
  {
    Locked l;
    heap::release_free_chunks_locked(0);
  }
  ASSERT_TRUE(pagemap::lookup(base).empty()) << "the chunk was unmapped";
  EXPECT_EQ(resident_pages(&leaf->word[i], kSlotBytes), 0u);
  EXPECT_EQ(resident_pages(&leaf->page[i], kSlotBytes), 0u);
  EXPECT_EQ(resident_pages(reinterpret_cast<void*>(table_from), table_to - table_from), 0u);
  // Recycled, the descriptor's tables and the slot read as zero again.
  heap::Run again = alloc(kPagesPerChunk);
  EXPECT_EQ(again.chunk, m) << "the pooled descriptor is taken again";
  EXPECT_EQ(m->tag[kPagesPerChunk - 1], 0);
  EXPECT_EQ(pagemap::lookup_word(reinterpret_cast<uintptr_t>(again.addr()) +
                                 (kPagesPerChunk - 1) * kPageSize),
            0u);
  free_run(again);
}

// Runs freed while the metadata arena can map no more (an address-space
// limit) and no free neighbour can lend its record. A bug hunt (stop 48) freed
// 163,840 runs of 8 KiB at RLIMIT_AS: every free past the pooled records kept
// its run allocated for good (1.25 GiB mapped and committed after the limit
// was lifted and the heap trimmed) and set errno to ENOMEM. Now such a run
// waits and goes in once records can be had again; errno stays.
TEST(PageHeap, RunsFreedWhileMetadataIsRefusedComeBackOnceItIsNot) {
  // Pages handed out (a fully free chunk unmapped meanwhile changes neither side).
  auto in_use = [] {
    const heap::Totals t = totals();
    return t.chunks * kPagesPerChunk - t.free_pages;
  };
  {
    Locked l;
    heap::release_free_chunks_locked(0);
  }
  // Chunks of their own, never touched: their pages read as zero. Their
  // first frees use up the records earlier tests left pooled.
  constexpr size_t kChunks = 4;
  std::vector<heap::Run> cs;
  for (size_t i = 0; i < kChunks; ++i) {
    bool zeroed = false;
    cs.push_back(alloc(kPagesPerChunk, 1, &zeroed));
    ASSERT_TRUE(zeroed);
  }
  const size_t used = in_use();
  mstest::fake_os::Guard os;
  mstest::fake_os::refuse_maps(true);
  // The arena's current region used up: a record now comes from the pool only.
  size_t taken = 0;
  while (meta::alloc(64) != nullptr) ++taken;  // (leaked: metadata is never freed)
  ASSERT_LT(taken, size_t{1} << 17) << "the arena kept mapping";
  size_t errno_changed = 0;
  // Page `page` of chunk run r, untouched (clean); true if it found no record.
  auto free_page = [&](const heap::Run& r, uint32_t page) {
    const size_t before = in_use();
    errno = 4321;
    free_run(heap::Run{r.chunk, page, 1}, /*dirty=*/false);
    errno_changed += errno != 4321;
    return in_use() == before;
  };
  // Every other page first, each between two pages still in use.
  size_t without_record = 0;
  for (const heap::Run& r : cs)
    for (uint32_t page = 0; page < kPagesPerChunk; page += 2) without_record += free_page(r, page);
  ASSERT_GT(without_record, kPagesPerChunk / 2)
      << "the pooled records did not run out early: the test proves little";
  for (const heap::Run& r : cs)
    for (uint32_t page = 1; page < kPagesPerChunk; page += 2) free_page(r, page);
  EXPECT_EQ(errno_changed, 0u) << "a free changed errno";
  // (Waiting runs may go in already: records come back as free runs merge.)
  // Metadata again: the next call that takes the lock puts the waiting runs in.
  mstest::fake_os::refuse_maps(false);
  {
    Locked l;
    heap::release_free_chunks_locked(heap::free_chunks_kept());
  }
  EXPECT_EQ(in_use(), used - kChunks * kPagesPerChunk)
      << "runs freed while metadata was refused stayed allocated";
  // Handed out again, a chunk said to read as zero does (those kept free, and
  // fresh ones for those unmapped). Until 85b61aa a waiting run held its list
  // node in its first page, and went in clean.
  size_t said_zero = 0;
  for (size_t i = 0; i < kChunks; ++i) {
    bool zeroed = false;
    cs[i] = alloc(kPagesPerChunk, 1, &zeroed);
    if (!zeroed) continue;
    ++said_zero;
    EXPECT_EQ(mstest::check_zero(cs[i].addr(), kChunkSize), mstest::kNoMismatch)
        << "a run said to read as zero did not";
  }
  EXPECT_GT(said_zero, 0u);
  for (const heap::Run& r : cs) free_run(r);
}
}  // namespace
