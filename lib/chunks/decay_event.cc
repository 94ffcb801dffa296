// chunks/decay_event: the parked word and its wake-up.
#include "chunks/decay_event.h"

#include "platform/platform.h"

namespace magslab::decay_event {

constinit std::atomic<uint32_t> g_parked{0};
constinit std::atomic<bool> g_paused{false};

void wake_parked() {
  // relaxed: the futex wake-up orders nothing; the sleeper re-checks for work.
  if (g_parked.exchange(0, std::memory_order_relaxed) != 0)
    platform::wake(reinterpret_cast<const uint32_t*>(&g_parked));
}

}  // namespace magslab::decay_event
