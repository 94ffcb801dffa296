// Parked huge blocks under concurrency (lib/large/large.cc, "Parked huge
// blocks"): threads park and take back huge blocks while others free blocks
// they did not allocate (parking them in their own slots) and a reclaimer
// empties every slot (magslab_trim, as a decay pass does) and reads the
// statistics. Every block must keep its contents while it is live, no block
// may be handed out twice, and at the end the statistics must balance.
// Runs under the tsan preset (label mt).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "magslab/magslab.h"

namespace {

constexpr size_t MiB = size_t{1} << 20;

// A block's stamp: its owner's tag at both ends (the whole block would be
// slow under the sanitizers).
void stamp(char* p, size_t n, uint64_t tag) {
  memcpy(p, &tag, sizeof tag);
  memcpy(p + n - sizeof tag, &tag, sizeof tag);
}
bool stamped(const char* p, size_t n, uint64_t tag) {
  uint64_t a, b;
  memcpy(&a, p, sizeof a);
  memcpy(&b, p + n - sizeof b, sizeof b);
  return a == tag && b == tag;
}

struct Block {
  char* p = nullptr;
  size_t n = 0;
  uint64_t tag = 0;
};

TEST(HugeParkMt, ParkTakeHandOffAndReclaimRace) {
  magslab_trim();
  struct magslab_stats base;
  magslab_stats(&base);
  constexpr int kWorkers = 3, kRounds = 300;
  std::mutex mailbox_lock;
  std::vector<Block> mailbox;  // blocks handed to whichever worker comes next
  std::atomic<int> done{0};
  std::atomic<bool> bad{false};

  auto worker = [&](int w) {
    uint64_t seq = 0;
    for (int r = 0; r < kRounds; ++r) {
      const size_t n = (2 + (r + w) % 3) * MiB - (r % 2) * 4096;  // 2, 3, 4 MiB and a page less
      Block b{static_cast<char*>(magslab_malloc(n)), n, (uint64_t(w) << 32) | ++seq};
      if (b.p == nullptr) {
        bad = true;
        break;
      }
      stamp(b.p, n, b.tag);
      std::this_thread::yield();
      if (!stamped(b.p, n, b.tag)) bad = true;  // handed to someone else too
      if (r % 4 == 0) {
        std::lock_guard<std::mutex> g(mailbox_lock);
        mailbox.push_back(b);
        continue;
      }
      magslab_free(b.p);
      Block other;
      {
        std::lock_guard<std::mutex> g(mailbox_lock);
        if (!mailbox.empty()) {
          other = mailbox.back();
          mailbox.pop_back();
        }
      }
      if (other.p != nullptr) {
        if (!stamped(other.p, other.n, other.tag)) bad = true;
        magslab_free(other.p);  // parks in this thread's slot
      }
    }
    done.fetch_add(1);
  };
  std::thread reclaimer([&] {
    while (done.load() < kWorkers) {
      magslab_trim();  // empties every slot, as a decay pass does
      struct magslab_stats st;
      magslab_stats(&st);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) workers.emplace_back(worker, w);
  for (auto& t : workers) t.join();
  reclaimer.join();
  for (const Block& b : mailbox) {
    EXPECT_TRUE(stamped(b.p, b.n, b.tag));
    magslab_free(b.p);
  }
  EXPECT_FALSE(bad.load()) << "a block lost its stamp while live, or a malloc failed";

  struct magslab_stats st;
  magslab_stats(&st);
  EXPECT_EQ(st.huge_live_blocks, base.huge_live_blocks);
  EXPECT_EQ(st.huge_live_bytes, base.huge_live_bytes);
  EXPECT_EQ(st.live_large_requested_bytes, base.live_large_requested_bytes);
  magslab_trim();
  magslab_stats(&st);
  EXPECT_EQ(st.mapped_bytes, base.mapped_bytes) << "trim unmaps every parked and cached block";
}

}  // namespace
