// Per-class event counters (magslab_class_stats: depot_gets … slabs_returned) under
// producer/consumer traffic: every counter moves where the slow paths say it must,
// and remote_frees is exact (frees still in a remote magazine are added by stats).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "chunks/chunk_map.h"
#include "magslab/magslab.h"
#include "small/size_classes.h"
#include "small/thread_cache.h"
#include "testing/magazines.h"
// Exact counts: no decay pass moves a thread's stash, previous magazine or
// inbox, nor the depot's magazines, while a test looks (one did if a thread
// was descheduled for a tick or two, as on a loaded CI machine).
#include "testing/no_decay.h"

namespace {

using magslab::class_of;
using magslab::mag_cap;

magslab_class_stats class_stats(unsigned c) {
  static struct magslab_stats st;  // large: not on the test's stack
  magslab_stats_get(&st, sizeof st);
  return st.classes[c];
}

// Round 0 frees `blocks` (objects of class c, `size` bytes); each later
// round allocates them again and frees them all. remote[i]: the remote frees
// class c counted during round i.
template <size_t N>
void free_then_reuse(std::vector<void*>& blocks, size_t size, unsigned c, size_t (&remote)[N]) {
  for (size_t& r : remote) {
    uint64_t before = class_stats(c).remote_frees;
    if (&r != remote)
      for (void*& p : blocks) p = magslab_malloc(size);
    for (void* p : blocks) magslab_free(p);
    r = class_stats(c).remote_frees - before;
  }
}

// A producer thread allocates `blocks` of `size`; a consumer frees them all
// (another thread's objects: remote frees). The producer stays alive until the
// end: an exited thread's cache would be recycled for the next thread, whose
// frees would then be its own. `allocated` runs after the allocation,
// `freed` after the frees, both while the producer is alive.
template <class F, class G>
void hand_over(std::vector<void*>& blocks, size_t size, F allocated, G freed) {
  std::atomic<int> phase{0};
  std::thread producer([&] {
    for (void*& p : blocks) p = magslab_malloc(size);
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
  });
  while (phase.load() != 1) std::this_thread::yield();
  allocated();
  std::thread consumer([&] {
    for (void* p : blocks) magslab_free(p);
  });
  consumer.join();
  freed();
  phase.store(2);
  producer.join();
}

TEST(StatsEvents, ProducerConsumerCountsRemoteFreesAndDepotTrades) {
  const size_t kSize = 64, kBlocks = 20000;
  const unsigned c = class_of(kSize);
  magslab_class_stats before = class_stats(c);
  std::vector<void*> blocks(kBlocks);
  magslab_class_stats after;
  hand_over(
      blocks, kSize,
      [&] {
        magslab_class_stats mid = class_stats(c);
        EXPECT_GT(mid.slab_refills, before.slab_refills);
        EXPECT_GT(mid.slabs_carved, before.slabs_carved);
      },
      [&] { after = class_stats(c); });
  EXPECT_EQ(after.remote_frees - before.remote_frees, kBlocks);
  // Full remote magazines went to the depot (or past its limit to the slabs).
  EXPECT_GT(after.depot_puts + after.depot_overflows, before.depot_puts + before.depot_overflows);
  EXPECT_EQ(after.live_objects, before.live_objects);
  // Another thread takes them back from the depot.
  std::thread again([&] {
    for (void*& p : blocks) p = magslab_malloc(kSize);
    for (void* p : blocks) magslab_free(p);
  });
  again.join();
  EXPECT_GT(class_stats(c).depot_gets, after.depot_gets);
}

// A thread exits and another goes on freeing and reusing the objects it left
// (larson's generations; a pool thread taking over a dead one's work). No
// thread is left to share those slabs' cache lines with, so the first full
// remote magazine adopts the slabs of its objects: from then on the same
// objects are the freeing thread's own, and circulate through its loaded
// magazine instead of the remote one and the depot. (While the thread that
// refilled from a slab runs, its objects stay remote for everyone else:
// ProducerConsumerCountsRemoteFreesAndDepotTrades.)
TEST(StatsEvents, ObjectsOfAnExitedThreadBecomeTheFreeingThreadsOwn) {
  const size_t kSize = 96;
  const unsigned c = class_of(kSize);
  const size_t cap = mag_cap(c), n = 8 * cap;
  std::vector<void*> blocks(n);
  std::thread([&] {
    for (void*& p : blocks) p = magslab_malloc(kSize);
  }).join();
  size_t remote[4] = {};
  std::thread([&] { free_then_reuse(blocks, kSize, c, remote); }).join();
  // The first time, at least a magazine of them went remote (later ones may
  // already lie in slabs an earlier full remote magazine adopted).
  EXPECT_GE(remote[0], cap);
  // At most the last remote magazine of the first round is left to adopt.
  for (size_t i = 1; i < 4; ++i) EXPECT_LE(remote[i], cap);
}

// The same when the thread exits only after the other has freed its objects
// once: while it ran they were remote (and a full remote magazine found
// nothing to adopt, so the freeing thread stopped looking), its exit makes
// the freeing thread look again.
TEST(StatsEvents, ObjectsOfAThreadThatExitsLaterBecomeTheFreeingThreadsOwn) {
  const size_t kSize = 112;
  const unsigned c = class_of(kSize);
  const size_t cap = mag_cap(c), n = 8 * cap;
  std::vector<void*> blocks(n);
  std::atomic<int> phase{0};
  std::thread producer([&] {
    for (void*& p : blocks) p = magslab_malloc(kSize);
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
  });
  size_t remote[4] = {};
  std::thread taker([&] {
    while (phase.load() != 1) std::this_thread::yield();
    for (size_t round = 0; round < 4; ++round) {
      if (round == 1) {
        phase.store(2);
        while (phase.load() != 3) std::this_thread::yield();  // the producer has exited
      }
      uint64_t before = class_stats(c).remote_frees;
      if (round > 0)
        for (void*& p : blocks) p = magslab_malloc(kSize);
      for (void* p : blocks) magslab_free(p);
      remote[round] = class_stats(c).remote_frees - before;
    }
  });
  while (phase.load() != 2) std::this_thread::yield();
  producer.join();
  phase.store(3);
  taker.join();
  EXPECT_EQ(remote[0], n);  // its owner runs: none is adopted
  EXPECT_LE(remote[2], cap);
  EXPECT_LE(remote[3], cap);
}

// A full remote magazine that neither goes home nor holds anything to adopt
// (here: its first and last objects belong to two different running threads)
// makes the freeing thread stop searching until another thread exits. That
// must not stop a later magazine whose first object's owner has already
// exited: its slab, at least, is there to adopt (larson's generations, where
// such magazines alternate: 29% of full remote magazines found their owner
// gone and went to the depot unsearched).
TEST(StatsEvents, AMagazineOfRunningOwnersDoesNotStopAdoptingAnExitedOnes) {
  const size_t kSize = 144;
  const unsigned c = class_of(kSize);
  const size_t cap = mag_cap(c), n = 16 * cap;
  // A thread that allocates and exits; what it left in the depot goes back to
  // its slabs.
  std::vector<void*> dead(n);
  std::thread([&] {
    for (void*& p : dead) p = magslab_malloc(kSize);
  }).join();
  magslab_trim();
  // Then two threads that stay alive while the taker frees their blocks: the
  // first takes three slabs' worth and keeps its first block (whose slab it
  // emptied, so the second's refills do not take that slab and make the
  // block the second's); the second keeps cap - 1 blocks.
  std::vector<void*> first_owner(3 * magslab::kClasses[c].objects), second_owner(cap - 1);
  std::atomic<int> phase{0};
  auto owner = [&](std::vector<void*>& blocks, size_t keep) {
    for (void*& p : blocks) p = magslab_malloc(kSize);
    for (size_t i = keep; i < blocks.size(); ++i) magslab_free(blocks[i]);
    phase.fetch_add(1);
    while (phase.load() != 3) std::this_thread::yield();
  };
  std::thread a([&] { owner(first_owner, 1); });
  while (phase.load() != 1) std::this_thread::yield();
  std::thread b([&] { owner(second_owner, second_owner.size()); });
  while (phase.load() != 2) std::this_thread::yield();
  size_t remote[3] = {};
  std::thread taker([&] {
    // One full remote magazine: first object a's, the rest b's. It leaves
    // (neither home nor adopted) at the next remote free, the first below.
    magslab_free(first_owner[0]);
    for (void* p : second_owner) magslab_free(p);
    free_then_reuse(dead, kSize, c, remote);
  });
  taker.join();
  phase.store(3);
  a.join();
  b.join();
  EXPECT_GE(remote[0], cap);  // the first time they are remote
  // Adopted as their magazines fill: at most the last one is left.
  EXPECT_LE(remote[1], cap);
  EXPECT_LE(remote[2], cap);
}

// A thread that stays alive but takes nothing from its inbox (a main thread
// waiting in pthread_join, a worker with objects enough of its own in the
// class) while another frees and reuses its objects. The full remote
// magazines go to its inbox and displace one another; from the depot the
// displaced ones would come back to the freeing thread's next misses, to be
// freed as remote again, round after round (larson: 15 % of all frees). Past
// a few unclaimed ones they go back to their slabs, whose next refill makes
// them the freeing thread's own — and so does the magazine left waiting in
// the idle thread's inbox, which it would keep for as long as it lives.
TEST(StatsEvents, ObjectsOfAnIdleRunningThreadStopComingBackAsRemote) {
  const size_t kSize = 208;
  const unsigned c = class_of(kSize);
  const size_t cap = mag_cap(c), n = 16 * cap;
  std::vector<void*> blocks(n);
  std::atomic<int> phase{0};
  bool inbox_empty = false;
  std::thread owner([&] {
    for (void*& p : blocks) p = magslab_malloc(kSize);
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
    inbox_empty = std::atomic_ref<magslab::Magazine*>(magslab::t_cache->inbox[c]).load() == nullptr;
  });
  size_t remote[5] = {};
  std::thread taker([&] {
    while (phase.load() != 1) std::this_thread::yield();
    free_then_reuse(blocks, kSize, c, remote);
  });
  taker.join();
  phase.store(2);
  owner.join();
  EXPECT_EQ(remote[0], n);  // the first time, all of them: their owner runs
  // By then the few that went through the depot have come back once more.
  EXPECT_LE(remote[3], cap);
  EXPECT_LE(remote[4], cap);
  EXPECT_TRUE(inbox_empty);
}

// A producer waits (its queue is full) while a consumer, which allocates
// nothing of the class, frees what it made: the consumer's full remote
// magazines displace one another in the producer's inbox, and the displaced
// ones go to the depot, where the producer's next misses take them back. Not
// to the slabs, as they did past a few unclaimed ones (the test above): that
// cost the consumer's free a trip under the class lock (a whole magazine's
// objects, emptied slabs back to the page heap) and the producer's next
// refills another — xmalloc at 2 threads made 71,000 of each a second, and
// its frees' p99.9 was 751 ns against mimalloc's 184. The slab route is for a
// sender that allocates the class itself: from the depot its own misses would
// take the objects and free them as remote again.
TEST(StatsEvents, AConsumersMagazinesForAWaitingProducerGoThroughTheDepot) {
  const size_t kSize = 448;
  const unsigned c = class_of(kSize);
  const size_t n = 8 * mag_cap(c);
  std::vector<void*> blocks(n);
  std::atomic<int> phase{0};
  std::thread producer([&] {
    for (void*& p : blocks) p = magslab_malloc(kSize);
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
    for (void*& p : blocks) p = magslab_malloc(kSize);
    phase.store(3);
    while (phase.load() != 4) std::this_thread::yield();
  });
  while (phase.load() != 1) std::this_thread::yield();
  const magslab_class_stats before = class_stats(c);
  std::thread([&] {
    for (void* p : blocks) magslab_free(p);
  }).join();
  const magslab_class_stats freed = class_stats(c);
  phase.store(2);
  while (phase.load() != 3) std::this_thread::yield();
  const magslab_class_stats after = class_stats(c);
  phase.store(4);
  producer.join();
  EXPECT_EQ(freed.slab_releases, before.slab_releases);
  EXPECT_GE(freed.depot_puts - before.depot_puts, 4u);
  EXPECT_EQ(after.slab_refills, freed.slab_refills);  // all of them back through the depot
  for (void* p : blocks) magslab_free(p);
}

// Two running threads allocate one class in turn: the second one's refills
// leave alone the slab the first one was refilling from (slab.cc, "Partial
// slabs kept for their owner"), so every object of the first thread — those
// it handed out and those still in its magazines — stays its own, and its
// frees of them are local. Before, the second thread's first refill took the
// head of the shared partial list — the first thread's slab — and made it its
// own: 44 of the first thread's objects were no longer its own, and 35 of
// its frees remote (map at 4 threads, each thread freeing only what it
// allocated: 11 % of all frees remote).
TEST(StatsEvents, AnotherThreadsRefillsLeaveARunningThreadsSlabAlone) {
  const size_t kSize = 240;  // 68 objects a slab, 136 a magazine
  const unsigned c = class_of(kSize);
  const size_t n = 4 * mag_cap(c);
  std::atomic<int> phase{0};
  size_t not_own = 0, remote = 0;
  std::thread first([&] {
    std::vector<void*> mine(n);
    for (void*& p : mine) p = magslab_malloc(kSize);
    const uint64_t tag = magslab::t_cache->owner_tag;
    const magslab::ThreadCache::Pair& pr = magslab::t_cache->cls[c];
    const size_t held = pr.loaded->count + pr.previous->count;
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
    for (size_t i = 0; i < held; ++i) mine.push_back(magslab_malloc(kSize));  // no refill
    for (void* p : mine)
      not_own +=
          magslab::word_owner(magslab::pagemap::lookup_word(reinterpret_cast<uintptr_t>(p))) != tag;
    const uint64_t before = class_stats(c).remote_frees;
    for (void* p : mine) magslab_free(p);
    remote = class_stats(c).remote_frees - before;
  });
  std::thread second([&] {
    while (phase.load() != 1) std::this_thread::yield();
    std::vector<void*> theirs(n);
    for (void*& p : theirs) p = magslab_malloc(kSize);
    for (void* p : theirs) magslab_free(p);
    magslab::cache::flush_current();  // none of its objects for the first thread's depot trips
    phase.store(2);
  });
  second.join();
  first.join();
  EXPECT_EQ(not_own, 0u);
  EXPECT_EQ(remote, 0u);
}

// The slab a thread keeps for its refills becomes anyone's when the thread
// exits or calls magslab_thread_idle (slab::disown): the next thread's refill
// takes it instead of carving a new one. (Its magazines go to the depot: the
// next thread takes those first, then refills.)
TEST(StatsEvents, AThreadsKeptSlabIsSharedWhenItExitsOrIdles) {
  for (bool exits : {true, false}) {
    SCOPED_TRACE(exits ? "exit" : "magslab_thread_idle");
    const size_t kSize = exits ? 304 : 336;
    const unsigned c = class_of(kSize);
    const size_t n = 4 * mag_cap(c);
    std::vector<void*> mine(n);
    std::atomic<int> phase{0};
    std::thread first([&] {
      for (void*& p : mine) p = magslab_malloc(kSize);
      if (!exits) magslab_thread_idle();
      phase.store(1);
      while (!exits && phase.load() != 2) std::this_thread::yield();
    });
    if (exits) first.join();
    while (phase.load() != 1) std::this_thread::yield();
    const magslab_class_stats before = class_stats(c);
    std::thread([&] {
      // The depot's magazines, then one refill.
      std::vector<void*> theirs(before.cached_objects + 1);
      for (void*& p : theirs) p = magslab_malloc(kSize);
      for (void* p : theirs) magslab_free(p);
    }).join();
    const magslab_class_stats after = class_stats(c);
    EXPECT_GT(after.slab_refills, before.slab_refills);
    EXPECT_EQ(after.slabs_carved, before.slabs_carved);
    phase.store(2);
    if (!exits) first.join();
    for (void* p : mine) magslab_free(p);
  }
}

using mstest::stash_objects;

// A running thread whose frees overflow its magazines keeps the full ones
// (thread_cache.cc, "The stash"): another thread's misses do not take them
// from the depot, the thread's own next misses get them back, and its frees
// of them are local. The stats count them as cached. (Before, they went to
// the depot, where the other thread's misses took them: 15-30 % of mstress's
// depot magazines at 4 threads were another thread's own overflow.)
TEST(StatsEvents, AThreadsOverflowingMagazinesStayItsOwnWhileItRuns) {
  const size_t kSize = 368;
  const unsigned c = class_of(kSize);
  const size_t n = 6 * mag_cap(c);
  const uint64_t live_before = class_stats(c).live_objects;
  std::atomic<int> phase{0};
  std::vector<void*> stashed;
  size_t held = 0, back = 0, remote = 0, taken = 0;
  std::thread first([&] {
    std::vector<void*> mine(n);
    for (void*& p : mine) p = magslab_malloc(kSize);
    for (void* p : mine) magslab_free(p);
    magslab::ThreadCache* tc = magslab::t_cache;
    stashed = stash_objects(tc, c);
    held = tc->cls[c].loaded->count + tc->cls[c].previous->count;
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
    // Its magazines first, then the stash: every stashed object comes back.
    mine.resize(held + stashed.size());
    for (void*& p : mine) p = magslab_malloc(kSize);
    std::sort(mine.begin(), mine.end());
    for (void* p : stashed) back += std::binary_search(mine.begin(), mine.end(), p);
    const uint64_t before = class_stats(c).remote_frees;
    for (void* p : mine) magslab_free(p);
    remote = class_stats(c).remote_frees - before;
  });
  while (phase.load() != 1) std::this_thread::yield();
  const magslab_class_stats mid = class_stats(c);
  std::thread([&] {
    std::vector<void*> theirs(n);
    for (void*& p : theirs) p = magslab_malloc(kSize);
    std::sort(stashed.begin(), stashed.end());
    for (void* p : theirs) taken += std::binary_search(stashed.begin(), stashed.end(), p);
    for (void* p : theirs) magslab_free(p);
    magslab::cache::flush_current();
  }).join();
  phase.store(2);
  first.join();
  ASSERT_FALSE(stashed.empty());
  EXPECT_EQ(mid.live_objects, live_before);  // the stashed objects are cached, not live
  EXPECT_GE(mid.cached_objects, held + stashed.size());
  EXPECT_EQ(taken, 0u);
  EXPECT_EQ(back, stashed.size());
  EXPECT_EQ(remote, 0u);
}

// A thread's stash goes back at magslab_trim_all (from any thread), at its
// own magslab_trim and magslab_thread_idle, and at its exit.
TEST(StatsEvents, AThreadsStashGoesBackAtTrimIdleAndExit) {
  const size_t kSize = 384;
  const unsigned c = class_of(kSize);
  const size_t n = 6 * mag_cap(c);
  for (int how = 0; how < 4; ++how) {
    SCOPED_TRACE(how == 0 ? "trim_all" : how == 1 ? "trim" : how == 2 ? "idle" : "exit");
    std::atomic<int> phase{0};
    magslab::ThreadCache* tc = nullptr;
    size_t before = 0, after = 0;
    std::thread first([&] {
      std::vector<void*> mine(n);
      for (void*& p : mine) p = magslab_malloc(kSize);
      for (void* p : mine) magslab_free(p);
      tc = magslab::t_cache;
      before = stash_objects(tc, c).size();
      phase.store(1);
      while (phase.load() != 2) std::this_thread::yield();
      if (how == 1) magslab_trim();
      if (how == 2) magslab_thread_idle();
      if (how != 3) after = stash_objects(tc, c).size();
      phase.store(3);
      while (how != 3 && phase.load() != 4) std::this_thread::yield();
    });
    while (phase.load() != 1) std::this_thread::yield();
    if (how == 0) magslab_trim_all();
    phase.store(2);
    while (phase.load() != 3) std::this_thread::yield();
    if (how == 3) {
      first.join();
      after = stash_objects(tc, c).size();  // its cache, in the pool now
    } else {
      phase.store(4);
      first.join();
    }
    EXPECT_GT(before, 0u);
    EXPECT_EQ(after, 0u);
  }
}

// A thread frees 20 magazines of its own objects: full magazines go to the
// depot up to its limit, the rest to their slabs. (Its own frees, not another
// thread's: full remote magazines for an idle running owner go to its inbox,
// and past a few unclaimed ones to the slabs without the depot — which left
// this test's overflow to the order in which the two threads' exits flushed
// their last magazines, and under tsan it sometimes found none.)
TEST(StatsEvents, DepotOverflowsGoToTheSlabsAndTrimReturnsSlabs) {
  const size_t kSize = 256;
  const unsigned c = class_of(kSize);
  ASSERT_EQ(magslab_option_set("depot_bytes", 0), 0);  // the minimum: 4 magazines per class
  magslab_class_stats before = class_stats(c);
  const size_t n = 20 * mag_cap(c);
  std::vector<void*> blocks(n);
  std::thread([&] {
    for (void*& p : blocks) p = magslab_malloc(kSize);
    for (void* p : blocks) magslab_free(p);
  }).join();
  magslab_class_stats after = class_stats(c);
  EXPECT_GT(after.depot_overflows, before.depot_overflows);
  EXPECT_GT(after.slab_releases, before.slab_releases);
  EXPECT_LE(after.depot_puts - before.depot_puts, 4u + 1u);
  magslab_trim();
  EXPECT_GT(class_stats(c).slabs_returned, before.slabs_returned);
  ASSERT_EQ(magslab_option_set("depot_bytes", 1 << 20), 0);
}

}  // namespace
