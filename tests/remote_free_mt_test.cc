// Frees of another thread's objects (thread_cache.h, ThreadCache::Pair::remote):
// the freeing thread does not hand such an object out again itself (no passive
// false sharing), stats count the objects it holds, and they reach other
// threads as whole magazines: the thread whose slabs they are from (its inbox,
// ThreadCache::inbox), or through the depot.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/slab.h"
#include "small/thread_cache.h"
#include "testing/no_decay.h"  // exact inboxes: decay takes one its owner leaves alone
#include "testing/threads.h"

namespace {

// 3000 B: a class nothing else in this binary uses (magazine capacity 10).
constexpr size_t kSize = 3000;
constexpr size_t kCap = 10;

// The main thread allocates enough that its last object comes from a slab it
// refilled from itself (it is the slab's owner).
std::vector<void*> allocate_on_main(size_t n) {
  std::vector<void*> v;
  for (size_t i = 0; i < n; ++i) {
    void* p = magslab_malloc(kSize);
    EXPECT_NE(p, nullptr);
    std::memset(p, 0xA5, kSize);
    v.push_back(p);
  }
  return v;
}

TEST(RemoteFreeMt, FreeingThreadDoesNotReuseAnotherThreadsObject) {
  std::vector<void*> mine = allocate_on_main(3 * kCap);
  void* handed = mine.back();
  mine.pop_back();
  std::vector<void*> got;
  std::thread t([&] {
    magslab_free(handed);  // another thread's object
    // Without the remote magazine, the next allocation is `handed` again (LIFO).
    for (size_t i = 0; i < 4 * kCap; ++i) got.push_back(magslab_malloc(kSize));
    for (void* p : got) magslab_free(p);  // own objects: must not disturb anything
  });
  t.join();
  for (void* p : got)
    EXPECT_NE(p, handed) << "the freeing thread handed out the object it was given";
  for (void* p : mine) magslab_free(p);
}

TEST(RemoteFreeMt, OwnObjectsAreStillReusedLifo) {
  // Control: a thread's own free is handed out again by its next allocation.
  // "Own" means from a slab this thread refilled from (Slab::owner): objects
  // it gets in full magazines from the depot (left there by threads of earlier
  // tests in this process) belong to others, and their frees go remote. So
  // allocate until an own object turns up, bounded by the depot's contents.
  std::thread t([] {
    std::vector<void*> others;
    void* p = nullptr;
    for (size_t i = 0; i < 100000 && p == nullptr; ++i) {
      void* q = magslab_malloc(kSize);
      ASSERT_NE(q, nullptr);
      const uint64_t w = magslab::pagemap::lookup_word(reinterpret_cast<uintptr_t>(q));
      ASSERT_NE(w, 0u);
      if (magslab::word_owner(w) == magslab::t_cache->owner_tag)
        p = q;
      else
        others.push_back(q);
    }
    ASSERT_NE(p, nullptr) << "no object from a slab this thread refilled from";
    magslab_free(p);
    void* q = magslab_malloc(kSize);
    EXPECT_EQ(p, q);
    magslab_free(q);
    for (void* o : others) magslab_free(o);
  });
  t.join();
}

size_t live_objects() {
  static struct magslab_stats s;
  magslab_stats(&s);
  return s.live_objects;
}

TEST(RemoteFreeMt, StatsCountObjectsHeldInRemoteMagazines) {
  std::vector<void*> mine = allocate_on_main(2 * kCap);
  const size_t before = live_objects();
  mstest::Phase phase;
  std::thread t([&] {
    for (size_t i = 0; i < 3; ++i) magslab_free(mine[i]);  // stay in the remote magazine
    phase.set(1);
    phase.wait_for(2);
  });
  phase.wait_for(1);
  EXPECT_EQ(live_objects(), before - 3)
      << "objects in the freeing thread's remote magazine counted as live";
  phase.set(2);
  t.join();
  EXPECT_EQ(live_objects(), before - 3);  // after thread exit: in the depot or the slabs
  for (size_t i = 3; i < mine.size(); ++i) magslab_free(mine[i]);
}

// Is p from a slab the calling thread owns? (The depot may have handed it
// others' objects, left by earlier tests of this process.)
bool is_own(void* p) {
  return magslab::word_owner(magslab::pagemap::lookup_word(reinterpret_cast<uintptr_t>(p))) ==
         magslab::t_cache->owner_tag;
}
std::vector<void*> own_objects(const std::vector<void*>& v) {
  std::vector<void*> own;
  for (void* p : v)
    if (is_own(p)) own.push_back(p);
  return own;
}

// A full remote magazine of one running thread's objects goes to that thread
// (its inbox), not to the depot, whence the freeing thread's own next miss
// would take it straight back and hand the objects out, and free them as
// remote, again (larson: 24 % of all frees at 2 threads). Counted as cached
// while it waits; taken by the owner's next miss.
TEST(RemoteFreeMt, FullRemoteMagazineGoesBackToItsOwner) {
  // The depot and this thread's magazines emptied first: earlier tests (in a
  // shuffled order) can leave enough of other threads' objects there that
  // none of the 4 * kCap below is this thread's own.
  magslab_trim_all();
  std::vector<void*> mine = allocate_on_main(4 * kCap);
  std::vector<void*> own = own_objects(mine);
  ASSERT_GE(own.size(), 2 * kCap + 1);
  const std::set<void*> sent(own.begin(), own.begin() + kCap);
  const size_t live_before = live_objects();
  mstest::Phase phase;
  std::thread t([&] {
    // kCap fill the remote magazine; the next free sends it.
    for (size_t i = 0; i <= kCap; ++i) magslab_free(own[i]);
    std::vector<void*> got;
    for (size_t i = 0; i < 2 * kCap; ++i) got.push_back(magslab_malloc(kSize));
    for (void* p : got)
      EXPECT_EQ(sent.count(p), 0u) << "the freeing thread took back the magazine it freed";
    for (void* p : got) magslab_free(p);
    phase.set(1);
    phase.wait_for(2);
  });
  phase.wait_for(1);
  EXPECT_EQ(live_objects(), live_before - (kCap + 1)) << "objects in the inbox counted as live";
  // The owner's next misses take its inbox: the sent objects come back here.
  std::vector<void*> again;
  size_t back = 0;
  for (size_t i = 0; i < 4 * kCap && back < kCap; ++i) {
    again.push_back(magslab_malloc(kSize));
    back += sent.count(again.back());
  }
  EXPECT_EQ(back, kCap) << "the owner did not get its objects back";
  phase.set(2);
  t.join();
  for (void* p : again) magslab_free(p);
  for (void* p : mine)
    if (std::find(own.begin(), own.begin() + kCap + 1, p) == own.begin() + kCap + 1)
      magslab_free(p);
}

// An idle thread (it makes no call) with one full magazine of its own objects,
// which another thread freed, waiting in its inbox; the thread ends with the
// fixture.
class IdleOwnerWithInbox {
 public:
  const unsigned cls = magslab::class_of(kSize);
  magslab::ThreadCache* owner = nullptr;

  // false: the setup failed (the test reports it).
  bool start() {
    t_ = std::thread([this] {
      // A new thread gets the depot's magazines (earlier tests') first:
      // allocate until it has objects of its own slabs.
      std::vector<void*> mine;
      for (size_t i = 0; i < 100000 && own_.size() < 4 * kCap; ++i) {
        mine.push_back(magslab_malloc(kSize));
        if (is_own(mine.back())) own_.push_back(mine.back());
      }
      owner = magslab::t_cache;
      phase_.set(1);
      phase_.wait_for(2);  // idle
      for (void* p : mine)
        if (std::find(own_.begin(), own_.begin() + kCap + 1, p) == own_.begin() + kCap + 1)
          magslab_free(p);
    });
    phase_.wait_for(1);
    if (own_.size() < kCap + 1) return false;
    // From a new thread, whose remote magazine holds nothing else yet: one
    // magazine to the owner's inbox.
    std::thread([&] {
      for (size_t i = 0; i <= kCap; ++i) magslab_free(own_[i]);
    }).join();
    return true;
  }
  magslab::Magazine* inbox() const {
    return std::atomic_ref<magslab::Magazine*>(owner->inbox[cls]).load(std::memory_order_acquire);
  }
  ~IdleOwnerWithInbox() {
    phase_.set(2);
    if (t_.joinable()) t_.join();
  }

 private:
  mstest::Phase phase_;
  std::vector<void*> own_;
  std::thread t_;
};

// A trim of the whole process takes an idle thread's inbox (as its previous
// magazine): it makes no call that would take it itself.
TEST(RemoteFreeMt, TrimAllTakesAnIdleThreadsInbox) {
  IdleOwnerWithInbox idle;
  ASSERT_TRUE(idle.start()) << "the thread got too few objects of its own slabs";
  ASSERT_NE(idle.inbox(), nullptr) << "the full remote magazine did not go to its owner";
  EXPECT_EQ(idle.inbox()->count, kCap);
  magslab_trim_all();
  EXPECT_EQ(idle.inbox(), nullptr) << "trim left the idle thread's inbox";
}

// Decay takes it too, but only a whole tick after a pass first found it:
// passes may run back to back (the background thread looks once more before
// it parks, and runs at once when woken), and counting passes took the
// inbox within a millisecond of its arrival — a double free of one of its
// objects was then reported as "free in its slab" instead of "in this
// thread's inbox" (a fresh-clone CI run, stop 32).
TEST(RemoteFreeMt, DecayTakesAnIdleThreadsInboxAWholeTickAfterFindingIt) {
  IdleOwnerWithInbox idle;
  ASSERT_TRUE(idle.start()) << "the thread got too few objects of its own slabs";
  ASSERT_NE(idle.inbox(), nullptr) << "the full remote magazine did not go to its owner";
  constexpr uint64_t kTick = magslab::decay::kTickNs;
  const uint64_t t0 = 1000 * kTick + 1;  // early in a tick
  magslab::cache::decay_stashes(t0);
  magslab::cache::decay_stashes(t0 + 1000);
  magslab::cache::decay_stashes(t0 + kTick / 2);
  EXPECT_NE(idle.inbox(), nullptr) << "passes less than a tick apart took the inbox";
  magslab::cache::decay_stashes(t0 + 2 * kTick);
  EXPECT_EQ(idle.inbox(), nullptr) << "a pass two ticks later left it";
}

// Inboxes under churn: threads in generations pass blocks round a ring (each
// frees its neighbour's), so full remote magazines go to owners that are
// running, exiting or gone, while another thread trims the whole process.
// Every block keeps its contents, and at the end nothing is counted live.
TEST(RemoteFreeMt, InboxesUnderChurnExitAndTrim) {
  constexpr int kThreads = 3, kGenerations = 6, kPerThread = 400;
  const size_t live_before = live_objects();
  std::atomic<bool> stop{false};
  std::thread trimmer([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      magslab_trim_all();
      std::this_thread::yield();
    }
  });
  std::vector<std::atomic<unsigned char*>> ring(kThreads * kPerThread);
  for (auto& s : ring) s.store(nullptr);
  for (int g = 0; g < kGenerations; ++g) {
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
      ts.emplace_back([&, t, g] {
        for (int round = 0; round < 20; ++round)
          for (int i = 0; i < kPerThread; ++i) {
            // Free what the previous thread of the ring left in this slot
            // (checking its stamp), and leave one of this thread's own.
            const size_t slot = static_cast<size_t>(((t + 1) % kThreads) * kPerThread + i);
            const size_t size = 16 + static_cast<size_t>((i * 37) % 1000);
            auto* mine = static_cast<unsigned char*>(magslab_malloc(size));
            ASSERT_NE(mine, nullptr);
            const auto stamp = static_cast<unsigned char>(t * 31 + i + round + g);
            std::memset(mine, stamp, size);
            unsigned char* theirs = ring[slot].exchange(mine, std::memory_order_acq_rel);
            if (theirs != nullptr) {
              const unsigned char s0 = theirs[8];
              for (size_t k = 8; k < 16; ++k) ASSERT_EQ(theirs[k], s0) << "contents lost";
              magslab_free(theirs);
            }
          }
      });
    for (auto& th : ts) th.join();
  }
  stop.store(true);
  trimmer.join();
  for (auto& s : ring)
    if (unsigned char* p = s.exchange(nullptr)) magslab_free(p);
  EXPECT_EQ(live_objects(), live_before);
}

TEST(RemoteFreeMt, RemoteFreesCirculateBackToTheProducer) {
  // One producer, one consumer, many rounds: the consumer's frees go back to
  // the producer as whole magazines, so the producer's objects are recycled
  // (the set of distinct addresses stays bounded) and every byte survives.
  constexpr size_t kRounds = 200, kPerRound = 4 * kCap;
  std::set<void*> distinct;
  for (size_t r = 0; r < kRounds; ++r) {
    std::vector<void*> batch;
    for (size_t i = 0; i < kPerRound; ++i) {
      auto* p = static_cast<unsigned char*>(magslab_malloc(kSize));
      ASSERT_NE(p, nullptr);
      std::memset(p, static_cast<int>((r + i) & 0xFF), kSize);
      batch.push_back(p);
      distinct.insert(p);
    }
    std::thread t([&] {
      for (size_t i = 0; i < batch.size(); ++i) {
        auto* p = static_cast<unsigned char*>(batch[i]);
        // The first word may hold the free key only while free; check the rest.
        for (size_t k = 8; k < kSize; ++k)
          if (p[k] != static_cast<unsigned char>((r + i) & 0xFF)) {
            ADD_FAILURE() << "content lost at byte " << k;
            break;
          }
        magslab_free(p);
      }
    });
    t.join();
  }
  // Each consumer thread keeps ≤ kCap objects in its remote magazine only until
  // it exits; all the rest come back. Far fewer than kRounds * kPerRound.
  EXPECT_LE(distinct.size(), 8 * kPerRound) << "remote frees are not recycled";
}

}  // namespace
