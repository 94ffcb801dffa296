// Check mode's shared quarantine ring (lib/api/check.cc, "The quarantine of
// slab objects"): a block freed by a thread without a cache waits there until
// the turnover count has gone up more times since it came in than there are
// rings. Counts and stamps are taken modulo 2^32, so an entry stamped with a
// count newer than the one a turnover compares against reads as 2^32 - 1
// turnovers old. Reaches the check-mode core's test hook (api/check.h), so it
// links its objects, not libmagslab-check-api.so.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "api/check.h"
#include "magslab/magslab.h"
#include "testing/misuse_line.h"

namespace {

char* alloc(size_t n) { return static_cast<char*>(magslab_malloc(n)); }

// 63 B + the canary byte: the 64-byte class. With quarantine 8192 (a ring's
// share: 1 KiB) a new thread's 32nd free turns its ring over once
// (tests/check_misuse_death_test.cc, ...OutlastsRingsNearlyTurnedOver).
constexpr size_t kSize = 63;
constexpr int kFreesToTurnOver = 32;

std::atomic<bool> g_armed{false};
std::atomic<bool> g_fired{false};
char* volatile g_victim = nullptr;

// On the first turnover after arming, between the turning thread's look at
// the shared ring and its lock: another ring turns over, then a thread whose
// first call is a free puts the victim in the shared ring (stamped with the
// count that second turnover made).
void on_turn_over() {
  if (!g_armed.exchange(false)) return;
  std::thread([] {
    for (int i = 0; i < kFreesToTurnOver; ++i) magslab_free(alloc(kSize));
  }).join();
  std::thread([] { magslab_free(g_victim); }).join();
  g_fired.store(true);
}

TEST(CheckInternalTurnoverDeathTest, ASharedRingEntryNewerThanATurnoverWaits) {
  use_threadsafe_style();
  EXPECT_DEATH(
      {
        ASSERT_EQ(magslab_option_set("quarantine", 8192), 0);
        g_victim = alloc(kSize);
        // The shared ring made (a turnover skips the look without one), then emptied.
        char* first = alloc(kSize);
        std::thread([first] { magslab_free(first); }).join();
        magslab_trim();
        magslab::check::g_turn_over_hook.store(on_turn_over);
        g_armed.store(true);
        for (int i = 0; i < 10 * kFreesToTurnOver && !g_fired.load(); ++i)
          magslab_free(alloc(kSize));
        ASSERT_TRUE(g_fired.load());
        magslab::check::g_turn_over_hook.store(nullptr);
        // Freed two turnovers ago at most: still in quarantine, where the exit
        // check finds this write.
        g_victim[5] = 1;
        ANNOUNCE(g_victim);
        std::exit(0);
      },
      MisuseLineOf("write after free of", R"( \(class [0-9]+, 64 B; requested 63 B\))"));
}

}  // namespace
