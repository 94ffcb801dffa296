// small/decay with threads, on the real clock: the background thread starts
// with the second thread, gives a burst back while the process idles, sleeps
// when nothing is left and wakes when something is cached again; it can be
// disabled; a forked child gets its own; and passes run at any moment against
// threads that allocate, free and check their blocks (every pass as
// aggressive as it can be: everything counts as old).
#include "small/decay.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "chunks/decay_event.h"
#include "magslab/magslab.h"
#include "platform/platform.h"
#include "small/size_classes.h"
#include "small/thread_cache.h"
#include "testing/magazines.h"
#include "testing/pattern.h"
#include "testing/rng.h"

// ForkedChildStartsItsOwnThread forks: magslab's fork prepare handler holds
// all of its locks (one per size class, and more), past ThreadSanitizer's 64
// tracked locks per thread. Race detection stays on; only lock-order tracking
// is off, and only in this binary (as in fork_mt_test.cc). The child starts
// threads after a multithreaded fork, which ThreadSanitizer refuses unless
// told (die_after_fork=0): that is the case under test.
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0:die_after_fork=0"; }

namespace {

using namespace magslab;
using namespace std::chrono_literals;

constexpr size_t MiB = size_t{1} << 20;

// Threads of this process named "magslab-decay".
int decay_threads() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string path = std::string("/proc/self/task/") + e->d_name + "/comm";
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      char name[32] = {};
      if (std::fgets(name, sizeof name, f) != nullptr &&
          std::strncmp(name, "magslab-decay", 13) == 0)
        ++n;
      std::fclose(f);
    }
  }
  closedir(d);
  return n;
}

// Bytes magslab holds for nothing: cached objects, empty slabs, dirty pages,
// cached huge mappings.
size_t cached_bytes() {
  struct magslab_stats st;
  magslab_stats(&st);
  return st.cached_bytes;
}

// `threads` threads allocate `total` bytes of blocks of 16..1024 bytes, then
// each frees half of its own and half of its neighbour's, and they exit.
void burst(int threads, size_t total) {
  const size_t per = total / threads / 256;
  std::vector<std::vector<void*>> blocks(threads);
  std::atomic<int> built{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      mstest::Rng r(static_cast<uint64_t>(t) + 1);
      for (size_t k = 0; k < per; ++k) {
        size_t n = 16 + r.below(1009);
        auto* p = static_cast<char*>(magslab_malloc(n));
        p[0] = p[n - 1] = 1;
        blocks[t].push_back(p);
      }
      built.fetch_add(1);
      while (built.load() < threads) std::this_thread::yield();
      auto& next = blocks[(t + 1) % threads];
      for (size_t k = 0; k < per; k += 2) {
        magslab_free(blocks[t][k]);
        if (k + 1 < per) magslab_free(next[k + 1]);
      }
    });
  for (auto& t : ts) t.join();
}

// Polls until cached bytes are at most `limit`, for up to `seconds`.
bool cached_falls_to(size_t limit, int seconds) {
  for (int i = 0; i < seconds * 20; ++i) {
    if (cached_bytes() <= limit) return true;
    std::this_thread::sleep_for(50ms);
  }
  return cached_bytes() <= limit;
}

// Polls until the decay thread parks (nothing left to decay), for up to 2 s.
bool decay_thread_parks() {
  for (int i = 0; i < 100; ++i) {
    if (decay_event::g_parked.load() != 0) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// A quiet start for the tests that watch one thing go back: an earlier burst
// decayed, the decay thread parked with nothing left.
void decay_thread_parked_after_a_burst() {
  burst(2, 8 * MiB);
  ASSERT_TRUE(cached_falls_to(MiB, 10));
  ASSERT_TRUE(decay_thread_parks());
}

// Polls (for up to 10 s, or `seconds`) until the magazine slot of another thread reads
// nullptr: a decay pass took what was there (acquire: its take is an
// exchange; a null slot is the whole answer).
bool slot_empties(Magazine*& slot, int seconds = 10) {
  for (int i = 0; i < seconds * 20; ++i) {
    std::this_thread::sleep_for(50ms);
    if (std::atomic_ref<Magazine*>(slot).load(std::memory_order_acquire) == nullptr) return true;
  }
  return false;
}

TEST(DecayMt, BackgroundThreadGivesABurstBackWhileTheProcessIdles) {
  burst(4, 96 * MiB);
  EXPECT_TRUE(decay::background_running());
  EXPECT_EQ(decay_threads(), 1);
  const size_t after = cached_bytes();
  EXPECT_GT(after, 4 * MiB) << "a burst leaves magazines, slabs and dirty pages cached";
  // Half a second of page age plus the depot's halving: well within 10 s even
  // under a sanitizer on a loaded machine.
  EXPECT_TRUE(cached_falls_to(MiB, 10))
      << "cached after the burst: " << after << " B, now: " << cached_bytes() << " B";
}

TEST(DecayMt, SleepsWhenNothingIsLeftAndWakesForTheNextBurst) {
  burst(2, 32 * MiB);
  ASSERT_TRUE(cached_falls_to(MiB, 10));
  // Nothing left to decay: the thread parks (no timed wake-ups while idle).
  EXPECT_TRUE(decay_thread_parks());
  burst(2, 32 * MiB);
  EXPECT_TRUE(cached_falls_to(MiB, 10)) << "woken by what the second burst cached";
}

// A huge block parked in a slot (lib/large/large.cc, "Parked huge blocks")
// while the decay thread sleeps with nothing left wakes it: the block goes to
// the huge cache and is unmapped after huge_cache_ms (1 s), not at the decay
// thread's 10 s bounded sleep. Since stop 36 park() wakes it without a fence
// (decay_event::note_after_seq_cst_rmw).
TEST(DecayMt, AParkedHugeBlockWakesTheSleepingDecayThread) {
  ASSERT_NO_FATAL_FAILURE(decay_thread_parked_after_a_burst());
  const size_t before = cached_bytes();
  size_t parked = 0;
  std::thread([&] {
    void* p = magslab_malloc(4 * MiB);
    ASSERT_NE(p, nullptr);
    magslab_free(p);          // parked in this thread's slot
    parked = cached_bytes();  // at once: it stays cached for huge_cache_ms (1 s)
  }).join();
  EXPECT_GE(parked, before + 4 * MiB) << "the parked block counts as cached";
  EXPECT_TRUE(cached_falls_to(before, 5)) << "still cached: " << cached_bytes() << " B";
}

// A thread's stash (small/thread_cache.cc, "The stash") that it stops using
// while it lives on, blocked, goes back: the decay thread, parked with nothing
// left to decay, wakes for it, moves it to the depot and decays it there.
TEST(DecayMt, AStashLeftByABlockedThreadGoesBack) {
  ASSERT_NO_FATAL_FAILURE(decay_thread_parked_after_a_burst());
  const unsigned cls = class_of(336);
  std::atomic<int> phase{0};
  ThreadCache* tc = nullptr;
  size_t stashed = 0;
  std::thread owner([&] {
    // No pass while the stash fills and the owner looks at it: one a tick or
    // two after its last use (the thread descheduled meanwhile, as on a
    // loaded CI machine) took the stash first, and the look found nothing
    // (or raced with the depot's decay of those magazines). The wake the
    // stash owes the parked thread comes all the same (it then ticks, paused,
    // until the pause ends), as in the test below.
    decay::pause(true);
    std::vector<void*> v(8 * size_t{kClasses[cls].mag_cap});
    for (void*& p : v) p = magslab_malloc(kClasses[cls].size);
    for (void* p : v) magslab_free(p);
    tc = t_cache;
    stashed = mstest::stash_objects(tc, cls).size();
    decay::pause(false);
    phase.store(1);
    while (phase.load() != 2) std::this_thread::sleep_for(10ms);  // alive, makes no call
  });
  while (phase.load() != 1) std::this_thread::yield();
  EXPECT_GT(stashed, 0u);
  EXPECT_TRUE(slot_empties(tc->stash[cls])) << "the stash of a thread that makes no call stayed";
  EXPECT_TRUE(cached_falls_to(MiB, 10)) << "and decayed from the depot";
  phase.store(2);
  owner.join();
}

// A thread's previous magazine of a class it stopped using goes back while
// the thread lives on, blocked (a pool's worker waiting for work): 8 such
// threads that had each used every class up to 8 KiB held 36 MiB three
// seconds after they stopped (mimalloc 6.5 MiB), two magazines of each class;
// a decay pass now takes the previous one of each class their slow paths did
// not use since the pass before. (The loaded one stays: the owner's fast
// paths use it without an atomic.) For a small class and a large one; then,
// once the decay thread has parked with nothing left, a previous magazine the
// worker fills on waking for one more job goes back too: its slow path wakes
// the parked thread (a review found it left to the parked thread's 10 s
// bounded sleep: taken after 9.8 s).
TEST(DecayMt, ThePreviousMagazineOfAClassABlockedThreadStoppedUsingGoesBack) {
  ASSERT_NO_FATAL_FAILURE(decay_thread_parked_after_a_burst());
  // acquire: the pass takes the slot with an exchange.
  auto previous = [](ThreadCache* tc, unsigned cls) {
    return std::atomic_ref<Magazine*>(tc->cls[cls].previous).load(std::memory_order_acquire);
  };
  // The owner looks inside as its slow paths do: it takes the magazine out of
  // the slot, reads it, and puts it back (a pass may take it at any moment).
  auto held_in_previous = [](ThreadCache* tc, unsigned cls) {
    std::atomic_ref<Magazine*> slot(tc->cls[cls].previous);
    Magazine* m = slot.exchange(&g_empty_magazine, std::memory_order_acq_rel);
    const uint32_t n = m->count;
    slot.store(m, std::memory_order_release);
    return n;
  };
  auto taken_within = [&](ThreadCache* tc, unsigned cls, int seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      std::this_thread::sleep_for(50ms);
      if (previous(tc, cls) == &g_empty_magazine) return true;
    }
    return false;
  };
  for (size_t size : {size_t{336}, size_t{96} * 1024}) {
    const unsigned cls = class_of(size);
    std::atomic<int> phase{0};
    ThreadCache* tc = nullptr;
    uint32_t held = 0;
    std::thread owner([&] {
      // Two magazines' worth allocated, then freed: the loaded one fills,
      // swaps with the empty previous and fills again. No pass meanwhile: a
      // second one before the look below (the thread descheduled for a tick,
      // as under ASan in CI) took the magazine, and the look found nothing.
      decay::pause(true);
      std::vector<void*> v(2 * size_t{kClasses[cls].mag_cap});
      for (void*& p : v) p = magslab_malloc(size);
      for (void* p : v) magslab_free(p);
      tc = t_cache;
      held = held_in_previous(tc, cls);
      decay::pause(false);
      phase.store(1);
      while (phase.load() != 2) std::this_thread::sleep_for(10ms);  // alive, makes no call
      // One more job: the loaded magazine runs empty and one more comes from
      // the slabs, and all go back: loaded fills, and becomes the previous.
      // Paused as above; the wake the frees owe the parked thread comes all
      // the same (it then ticks, paused, until the pause ends).
      decay::pause(true);
      std::vector<void*> u(std::atomic_ref<Magazine*>(tc->cls[cls].loaded).load()->count + 1);
      for (void*& p : u) p = magslab_malloc(size);
      for (void* p : u) magslab_free(p);
      held = held_in_previous(tc, cls);
      decay::pause(false);
      phase.store(3);
      while (phase.load() != 4) std::this_thread::sleep_for(10ms);
    });
    while (phase.load() != 1) std::this_thread::yield();
    EXPECT_GT(held, 0u) << size << " B: nothing in the previous magazine: the test tests nothing";
    EXPECT_TRUE(taken_within(tc, cls, 10))
        << size << " B: the previous magazine of a thread that makes no call stayed";
    EXPECT_TRUE(decay_thread_parks()) << size << " B: the decay thread did not park";
    phase.store(2);
    while (phase.load() != 3) std::this_thread::yield();
    EXPECT_GT(held, 0u) << size << " B: nothing in the previous magazine the second time";
    EXPECT_TRUE(taken_within(tc, cls, 5))
        << size << " B: the parked decay thread was not woken for the previous magazine";
    phase.store(4);
    owner.join();
  }
}

// A running thread that moved on to other classes (a working set whose sizes
// drift, a program past a phase) gives back the loaded and remote magazines of
// the classes it left. A decay pass cannot take them (the fast paths use them
// without an atomic); it marks the classes unused for a tick, and the owner's
// next slow path of any class gives theirs back. Before stop 41 they stayed
// for the thread's life: 4 threads whose 16 MiB working sets drifted from 16 B
// to 8 KiB and then kept 256 KiB of 16-byte blocks held 147 MiB for good
// (glibc 81, mimalloc 8; stop 41's bug hunt).
TEST(DecayMt, TheMagazinesOfAClassARunningThreadStoppedUsingGoBack) {
  const unsigned left = class_of(336), used = class_of(48);
  ASSERT_NE(left, used);
  std::atomic<int> phase{0};
  std::vector<void*> theirs(8);  // the main thread's: remote to the owner
  uint32_t loaded0 = 0, remote0 = 0;
  bool gone = false;
  std::thread owner([&] {
    ThreadCache* tc = nullptr;
    auto held = [&](Magazine* ThreadCache::Pair::*slot) { return (tc->cls[left].*slot)->count; };
    // Own objects of `left` into the loaded magazine (fewer than a
    // magazine's capacity: nothing goes to the previous one or the depot).
    std::vector<void*> mine(4);
    for (void*& p : mine) p = magslab_malloc(336);
    for (void* p : mine) magslab_free(p);
    tc = t_cache;
    phase.store(1);
    // The main thread allocates its objects now, after this thread's refill:
    // a refill retags the slab it takes objects from (slab.h), so theirs are
    // of a slab tagged the main thread's, and go to the remote magazine.
    while (phase.load() != 2) std::this_thread::yield();
    for (void* p : theirs) magslab_free(p);
    loaded0 = held(&ThreadCache::Pair::loaded);
    remote0 = held(&ThreadCache::Pair::remote);
    // Then only `used`, with a slow path every round (two magazines' worth
    // allocated and freed), for up to 10 s.
    std::vector<void*> v(2 * size_t{kClasses[used].mag_cap} + 1);
    for (int round = 0; round < 500 && !gone; ++round) {
      for (void*& p : v) p = magslab_malloc(48);
      for (void* p : v) magslab_free(p);
      gone = held(&ThreadCache::Pair::loaded) == 0 && held(&ThreadCache::Pair::remote) == 0;
      std::this_thread::sleep_for(20ms);
    }
  });
  while (phase.load() != 1) std::this_thread::yield();
  for (void*& p : theirs) p = magslab_malloc(336);
  phase.store(2);
  owner.join();
  EXPECT_GT(loaded0, 0u) << "nothing in the loaded magazine: the test tests nothing";
  EXPECT_GT(remote0, 0u) << "nothing in the remote magazine: the test tests nothing";
  EXPECT_TRUE(gone) << "the loaded and remote magazines of a class the thread left stayed with it";
}

// Own objects another thread freed wait in the owner's inbox for its next
// miss in their class (small/thread_cache.cc, send_to_owner). An owner that
// makes no call any more must not keep them, nor their slabs, for good: decay
// takes an inbox its owner has not claimed for a tick and gives it back.
TEST(DecayMt, AnInboxLeftByAThreadThatStoppedAllocatingGoesBack) {
  ASSERT_NO_FATAL_FAILURE(decay_thread_parked_after_a_burst());
  const unsigned cls = class_of(336);
  std::atomic<int> phase{0};
  ThreadCache* tc = nullptr;
  // Two magazines' worth: past a few unclaimed sends (kUnclaimedSends), the
  // senders themselves would give the inbox back to the slabs.
  std::vector<void*> v(2 * size_t{kClasses[cls].mag_cap});
  std::thread owner([&] {
    for (void*& p : v) p = magslab_malloc(kClasses[cls].size);
    tc = t_cache;
    phase.store(1);
    while (phase.load() != 3) std::this_thread::sleep_for(10ms);  // alive, makes no call
  });
  while (phase.load() != 1) std::this_thread::yield();
  // No pass between the sends and the look below: two ticks after the last
  // send (this thread descheduled meanwhile) one takes the inbox, and the
  // look finds nothing. The wake the sends owe the parked decay thread comes
  // all the same (it then ticks, paused, until the pause ends).
  decay::pause(true);
  std::thread freer([&] {
    for (void* p : v) magslab_free(p);  // remote frees: full magazines to the owner's inbox
  });
  freer.join();
  // acquire: as in the decay pass's exchange.
  EXPECT_NE(std::atomic_ref<Magazine*>(tc->inbox[cls]).load(std::memory_order_acquire), nullptr)
      << "the freer sent nothing to the owner's inbox: the test tests nothing";
  decay::pause(false);
  EXPECT_TRUE(slot_empties(tc->inbox[cls])) << "the inbox of a thread that makes no call stayed";
  EXPECT_TRUE(cached_falls_to(MiB, 10)) << "and decayed from the depot";
  phase.store(3);
  owner.join();
}

// The same for a single magazine sent into an empty inbox while the decay
// thread was parked with nothing left, by a sender that then blocks too: no
// depot put wakes the decay thread then (a displaced magazine's would), so
// the send itself does (a review found it left to the parked thread's 10 s
// bounded sleep: taken after 9.9 s).
TEST(DecayMt, AMagazineSentToAnIdleInboxWhileTheDecayThreadSleepsGoesBack) {
  ASSERT_NO_FATAL_FAILURE(decay_thread_parked_after_a_burst());
  const unsigned cls = class_of(336);
  std::atomic<int> phase{0};
  ThreadCache* tc = nullptr;
  // One remote magazine at its first capacity (a quarter of the slots) and
  // one object more: the free of that one sends the full magazine.
  std::vector<void*> v(size_t{kClasses[cls].mag_cap} / 4 + 1);
  std::thread owner([&] {
    for (void*& p : v) p = magslab_malloc(kClasses[cls].size);
    tc = t_cache;
    phase.store(1);
    while (phase.load() != 5) std::this_thread::sleep_for(10ms);  // alive, makes no call
  });
  while (phase.load() != 1) std::this_thread::yield();
  std::thread freer([&] {
    // Its cache, before the decay thread parks (another class: a refill of
    // this one could take the owner's slab, and its objects with it).
    magslab_free(magslab_malloc(16));
    phase.store(2);
    while (phase.load() != 3) std::this_thread::sleep_for(1ms);
    for (void* p : v) magslab_free(p);
    phase.store(4);
    while (phase.load() != 5) std::this_thread::sleep_for(10ms);  // alive, makes no call
  });
  while (phase.load() != 2) std::this_thread::yield();
  ASSERT_TRUE(decay_thread_parks());
  // No pass between the send and the look below (as in the test above); the
  // send's wake comes all the same: without it the thread stays parked
  // after the pause, and the inbox stays.
  decay::pause(true);
  phase.store(3);
  while (phase.load() != 4) std::this_thread::yield();
  // acquire: as in the decay pass's exchange.
  EXPECT_NE(std::atomic_ref<Magazine*>(tc->inbox[cls]).load(std::memory_order_acquire), nullptr)
      << "the freer sent nothing to the owner's inbox: the test tests nothing";
  decay::pause(false);
  EXPECT_TRUE(slot_empties(tc->inbox[cls], 5)) << "the parked decay thread was not woken";
  phase.store(5);
  owner.join();
  freer.join();
}

TEST(DecayMt, BackgroundThreadCanBeDisabled) {
  // Before the process's second thread (each test runs in its own process:
  // testing/own_process_main.cc);
  // what MAGSLAB_BACKGROUND_THREAD=0 sets at start (tests/options_test.cc
  // covers the environment).
  ASSERT_EQ(magslab_option_set("background_thread", 0), 0);
  magslab_free(magslab_malloc(100));  // this thread's cache, then a second thread's
  std::thread([] { magslab_free(magslab_malloc(100)); }).join();
  EXPECT_FALSE(decay::background_running());
  EXPECT_EQ(decay_threads(), 0);
}

// Threads that use only huge blocks (I/O buffers) make no thread cache, whose
// registration started the decay thread: a process whose second thread did so
// had no decay thread, and its huge cache and park slots stayed mapped and
// resident for good while it idled (stop 53's bug hunt: 4 such threads kept
// 206 MiB resident 3 s after they ended; 2 MiB with one small malloc in each).
// Its free of a huge block starts the thread as a second cache does, whether
// the first thread to use magslab made a cache or freed huge blocks too.
void free_huge_blocks() {
  for (size_t mib = 2; mib <= 8; mib += 2) {
    void* p = magslab_malloc(mib * MiB);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, mib * MiB);
    magslab_free(p);
  }
}

TEST(DecayMt, AThreadThatFreesOnlyHugeBlocksStartsTheBackgroundThread) {
  ASSERT_EQ(magslab_option_set("huge_cache_ms", 100), 0);  // the test's wait
  magslab_free(magslab_malloc(100));                       // this thread's cache
  std::thread(free_huge_blocks).join();
  EXPECT_TRUE(decay::background_running());
  EXPECT_TRUE(cached_falls_to(MiB, 10)) << "still cached: " << cached_bytes() << " B";
}

TEST(DecayMt, TwoThreadsThatFreeOnlyHugeBlocksStartTheBackgroundThread) {
  ASSERT_EQ(magslab_option_set("huge_cache_ms", 100), 0);
  std::thread(free_huge_blocks).join();
  EXPECT_FALSE(decay::background_running()) << "one thread has used magslab";
  std::thread(free_huge_blocks).join();
  EXPECT_TRUE(decay::background_running());
  EXPECT_TRUE(cached_falls_to(MiB, 10)) << "still cached: " << cached_bytes() << " B";
}

// A producer that only allocates huge buffers and a consumer that frees them:
// the producer frees none, and counts from its first block of fresh memory.
TEST(DecayMt, AProducerAndAConsumerOfHugeBlocksStartTheBackgroundThread) {
  ASSERT_EQ(magslab_option_set("huge_cache_ms", 100), 0);
  std::atomic<void*> slot{nullptr};
  std::thread producer([&] {
    for (size_t mib = 2; mib <= 8; mib += 2) {
      void* p = magslab_malloc(mib * MiB);
      ASSERT_NE(p, nullptr);
      std::memset(p, 1, mib * MiB);
      slot.store(p);
      while (slot.load() != nullptr) std::this_thread::yield();
    }
  });
  std::thread consumer([&] {
    for (int i = 0; i < 4; ++i) {
      void* p;
      while ((p = slot.load()) == nullptr) std::this_thread::yield();
      magslab_free(p);
      slot.store(nullptr);
    }
  });
  producer.join();
  consumer.join();
  EXPECT_TRUE(decay::background_running());
  EXPECT_TRUE(cached_falls_to(MiB, 10)) << "still cached: " << cached_bytes() << " B";
}

// A producer (here the main thread) that made its first huge buffers before
// its consumer thread existed, and whose later ones are those the consumer
// freed (park slots): two threads use magslab, and the decay thread starts.
// Stop 54's bug hunt: a block of fresh memory counted its thread only in a
// process that had had a second thread, so the producer never counted, the
// consumer alone did, and the idle process kept 16 MiB of huge blocks cached
// for good.
TEST(DecayMt, AProducerWhoseFirstBuffersCameBeforeItsConsumerStartsTheBackgroundThread) {
  ASSERT_EQ(magslab_option_set("huge_cache_ms", 100), 0);
  constexpr size_t kBytes = 8 * MiB;
  std::vector<void*> first;
  for (int i = 0; i < 2; ++i) {
    first.push_back(magslab_malloc(kBytes));
    ASSERT_NE(first.back(), nullptr);
    std::memset(first.back(), 1, kBytes);
  }
  std::atomic<void*> slot{nullptr};
  std::atomic<bool> done{false};
  std::thread consumer([&] {
    for (;;) {
      void* p;
      while ((p = slot.load()) == nullptr)
        if (done.load()) return;
      magslab_free(p);
      slot.store(nullptr);
    }
  });
  auto hand = [&](void* p) {
    slot.store(p);
    while (slot.load() != nullptr) std::this_thread::yield();
  };
  for (void* p : first) hand(p);
  for (int i = 0; i < 8; ++i) {
    void* p = magslab_malloc(kBytes);
    ASSERT_NE(p, nullptr);
    std::memset(p, 2, kBytes);
    hand(p);
  }
  done.store(true);
  consumer.join();
  EXPECT_TRUE(decay::background_running());
  EXPECT_TRUE(cached_falls_to(MiB, 10)) << "still cached: " << cached_bytes() << " B";
}

// A fork child whose one thread has a cache, made while another thread's
// existed, and whose second thread uses only huge blocks: two threads use
// magslab there, and the second starts the decay thread. Stop 54's bug hunt:
// only a cache made with no other registered counted its thread as a user,
// the child's count started from that mark (0 here), and the huge-block
// thread counted as the first: no decay thread, and the child kept its
// huge blocks cached for good while it idled.
TEST(DecayMt, AForkChildsHugeBlockThreadStartsTheBackgroundThread) {
  std::atomic<int> stage{0};
  std::thread first([&] {
    magslab_free(magslab_malloc(100));  // the process's first cache
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
  });
  while (stage.load() != 1) std::this_thread::yield();
  magslab_free(magslab_malloc(100));  // this thread's, while the other one's exists
  stage.store(2);
  first.join();  // (ThreadSanitizer: no thread of the parent's but this one in the child)
  ASSERT_TRUE(decay::background_running());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);
    magslab_option_set("huge_cache_ms", 100);
    std::thread(free_huge_blocks).join();
    magslab_free(magslab_malloc(100));  // this thread goes on with small blocks only
    const bool running = decay::background_running();
    _exit(!running ? 1 : cached_falls_to(MiB, 10) ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: no decay thread in the child; 2: its huge blocks stayed";
}

// Two threads with a cache at once make a process multithreaded (gtest's own
// allocations do not go through magslab: the main thread needs one of its own).
TEST(DecayMt, ForkedChildStartsItsOwnThread) {
  magslab_free(magslab_malloc(100));
  std::thread([] { magslab_free(magslab_malloc(100)); }).join();
  ASSERT_TRUE(decay::background_running());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The parent's thread does not exist here; the child's second thread starts one.
    int before = decay_threads();
    std::thread([] { magslab_free(magslab_malloc(100)); }).join();
    int after = decay_threads();
    _exit(before == 0 && after == 1 && decay::background_running() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// Passes (as if every cached thing were old) race with threads that allocate,
// fill, check and free blocks of every kind: a pass must never give back a
// page, slab or record in use, nor lose a cached object.
TEST(DecayMt, PassesNeverTouchWhatIsInUse) {
  std::atomic<bool> stop{false};
  std::atomic<size_t> bad{0}, passes{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      mstest::Rng r(static_cast<uint64_t>(t) * 77 + 5);
      std::vector<std::pair<char*, size_t>> live;
      for (int it = 0; it < 60000; ++it) {
        if (live.size() < 400 && (live.empty() || r.below(3) != 0)) {
          size_t n = r.below(8) == 0 ? 1 + r.below(300000) : 1 + r.below(2000);
          auto* p = static_cast<char*>(r.below(16) == 0 ? magslab_aligned_alloc(8192, n)
                                                        : magslab_malloc(n));
          mstest::fill_pattern_sparse(p, n, mstest::block_key(9, p, n), 512);
          live.emplace_back(p, n);
        } else {
          size_t i = r.below(live.size());
          auto [p, n] = live[i];
          if (mstest::check_pattern_sparse(p, n, mstest::block_key(9, p, n), 512) !=
              mstest::kNoMismatch)
            bad.fetch_add(1);
          magslab_free(p);
          live[i] = live.back();
          live.pop_back();
        }
      }
      for (auto [p, n] : live) magslab_free(p);
    });
  std::thread passer([&] {
    while (!stop.load()) {
      decay::tick(platform::now_ns() + uint64_t{3600} * 1000 * 1000 * 1000);
      passes.fetch_add(1);
    }
  });
  for (auto& t : ts) t.join();
  stop.store(true);
  passer.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(passes.load(), 10u);
}

}  // namespace
