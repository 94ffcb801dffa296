// Full remote magazines sent to their owner's inbox while the owner exits and
// a new thread takes over its pooled cache (thread_cache.cc, send_to_owner and
// current()). A sender that read the owner's tag as running just before the
// exit still touches that cache's inbox and its unclaimed count; the new
// thread, which got the cache from the pool, must not meet those accesses with
// plain writes (a data race the tsan preset reported in the thread churn test,
// one run in ten: a fresh-clone CI run, stop 48; this test, eight in ten
// before the fix). Then, with every thread gone and the heap trimmed, the
// class holds no slab: nothing sent across the exits was lost.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "small/size_classes.h"
#include "testing/sanitizers.h"

namespace {

// 3000 B: a class nothing else in this binary uses (magazine capacity 10),
// so that whole magazines of one owner's objects fill quickly.
constexpr size_t kSize = 3000;
#ifdef MS_SANITIZED
constexpr int kOwners = 400;
#else
constexpr int kOwners = 2000;
#endif
constexpr int kLanes = 8;
constexpr int kPerOwner = 400;

// One owner's objects on their way to the sender. The owner stores with
// release (its writes into the objects are the sender's to see); the sender
// never releases anything back to an owner: its only signal, `taken`, is
// relaxed, so under tsan nothing the sender does happens before an owner's
// exit but through the allocator itself.
struct Handoff {
  std::atomic<void**> objs{nullptr};
  std::atomic<int> taken{0};  // relaxed: when the owner may exit, not what it sees
};

void owner(Handoff& h, std::vector<void*>& mine) {
  for (int i = 0; i < kPerOwner; ++i) {
    void* p = magslab_malloc(kSize);
    if (p != nullptr) std::memset(p, 0x5A, 64);
    mine[static_cast<size_t>(i)] = p;
  }
  h.objs.store(mine.data(), std::memory_order_release);
  // Exit while the sender is halfway through this owner's objects.
  while (h.taken.load(std::memory_order_relaxed) == 0) std::this_thread::yield();
}

// One lane: owners one after another, each new one taking the pooled cache of
// an owner that just exited (which a sender may be sending to at that moment),
// and the sender freeing each owner's objects.
void lane(std::vector<Handoff>& hs, std::vector<std::vector<void*>>& objs,
          std::atomic<int>& nulls) {
  std::thread sender([&] {
    for (size_t k = 0; k < hs.size(); ++k) {
      void** o;
      while ((o = hs[k].objs.load(std::memory_order_acquire)) == nullptr) std::this_thread::yield();
      for (int i = 0; i < kPerOwner; ++i) {
        if (i == kPerOwner / 2) hs[k].taken.store(1, std::memory_order_relaxed);
        if (o[i] == nullptr) nulls.fetch_add(1, std::memory_order_relaxed);
        magslab_free(o[i]);
      }
    }
  });
  for (size_t k = 0; k < hs.size(); ++k)
    std::thread(owner, std::ref(hs[k]), std::ref(objs[k])).join();
  sender.join();
}

TEST(InboxRecycledMt, SendsToAnOwnerThatExitsMeetItsCachesNextThreadSafely) {
  const unsigned cls = magslab::class_of(kSize);
  std::atomic<int> nulls{0};
  std::vector<std::thread> lanes;
  std::vector<std::vector<Handoff>> hs(kLanes);
  std::vector<std::vector<std::vector<void*>>> objs(kLanes);
  for (int l = 0; l < kLanes; ++l) {
    hs[l] = std::vector<Handoff>(kOwners / kLanes);
    objs[l].assign(kOwners / kLanes, std::vector<void*>(kPerOwner));
  }
  for (int l = 0; l < kLanes; ++l)
    lanes.emplace_back(lane, std::ref(hs[l]), std::ref(objs[l]), std::ref(nulls));
  for (auto& t : lanes) t.join();
  EXPECT_EQ(nulls.load(), 0) << "allocations failed";

  // Every thread that touched the class is gone: trimmed, every object is
  // back in its slab and every slab back in the page heap. A magazine left in
  // a pooled cache's inbox (no trim reaches one) would keep its slabs.
  magslab_trim_all();
  struct magslab_stats s {};
  magslab_stats(&s);
  EXPECT_EQ(s.classes[cls].live_objects, 0u);
  EXPECT_EQ(s.classes[cls].slabs, 0u) << "objects sent to exiting owners stayed behind";
}

}  // namespace
