// Decay passes and magslab_trim_all hollow the depot's empty magazines
// (depot::decay_empty, depot::hollow_empty: their pages go back with
// MADV_DONTNEED) while owners take empty magazines, fill every slot, and give
// them back (stop 53's bug hunt, area: the empty magazines decay hollows).
// A magazine hollowed while a thread holds it would read back zeros where its
// owner wrote; one handed to two threads at once would hold the other's
// words; one made whole again from the hollow list must have every field of
// a fresh one.
#include <gtest/gtest.h>

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "platform/platform.h"
#include "small/decay.h"
#include "small/depot.h"
#include "small/magazine.h"
#include "small/size_classes.h"
#include "testing/rng.h"
#include "testing/sanitizers.h"

// ThreadSanitizer tracks at most 64 locks held by one thread; the fork
// prepare handler holds every lock of magslab (as tests/fork_mt_test.cc).
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

using namespace magslab;

#ifdef MS_SANITIZED
constexpr int kRounds = 200;
#else
constexpr int kRounds = 1500;
#endif
constexpr int kOwners = 3;
#ifdef MS_SANITIZED
constexpr int kForks = 8;
#else
constexpr int kForks = 40;
#endif

TEST(DecayEmptyMt, HollowingNeverTouchesAnEmptyMagazineSomeoneHolds) {
  const unsigned classes[] = {class_of(40), class_of(200), class_of(3000), class_of(100000)};
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, bad_field{0};
  std::atomic<uint64_t> passes{0}, hollowed{0};
  std::thread passer([&] {
    uint64_t now = platform::now_ns() + uint64_t{3600} * 1000 * 1000 * 1000;
    while (!stop.load(std::memory_order_relaxed)) {
      now += decay::kTickNs;
      const uint64_t n = passes.fetch_add(1, std::memory_order_relaxed) + 1;
      if (n % 16 == 0) {
        magslab_trim_all();
      } else if (n % 2 == 0) {
        decay::NoPassScope no_pass;  // decay_empty's lock, as in a pass
        if (depot::decay_empty() != 0) hollowed.fetch_add(1, std::memory_order_relaxed);
      } else {
        decay::tick(now);
      }
      sched_yield();
    }
  });
  std::vector<std::thread> owners;
  for (int t = 0; t < kOwners; ++t)
    owners.emplace_back([&, t] {
      mstest::Rng r(static_cast<uint64_t>(t) * 7919 + 3);
      std::vector<std::pair<Magazine*, unsigned>> held;
      for (int round = 0; round < kRounds; ++round) {
        const size_t n = 1 + r.below(48);
        for (size_t i = 0; i < n; ++i) {
          const unsigned cls = classes[r.below(4)];
          Magazine* m = depot::get_empty(cls);
          if (m == nullptr) {
            bad.fetch_add(1);
            return;
          }
          if (m->count != 0 || m->cls != cls || m->cap != m->slots || m->slots != mag_cap(cls) ||
              m->free_key != g_free_key.load())
            bad_field.fetch_add(1);
          const uint64_t tag = (uint64_t{static_cast<unsigned>(t)} << 56) ^
                               (static_cast<uint64_t>(round) << 32) ^
                               reinterpret_cast<uintptr_t>(m);
          for (uint32_t k = 0; k < m->slots; ++k) m->objs[k] = reinterpret_cast<void*>(tag + k);
          held.emplace_back(m, cls);
        }
        // Hold them across a pass or two.
        const uint64_t until = passes.load(std::memory_order_relaxed) + 1 + r.below(2);
        while (passes.load(std::memory_order_relaxed) < until) sched_yield();
        for (auto [m, cls] : held) {
          const uint64_t tag = (uint64_t{static_cast<unsigned>(t)} << 56) ^
                               (static_cast<uint64_t>(round) << 32) ^
                               reinterpret_cast<uintptr_t>(m);
          for (uint32_t k = 0; k < m->slots; ++k)
            if (m->objs[k] != reinterpret_cast<void*>(tag + k)) {
              bad.fetch_add(1);
              break;
            }
          depot::push_empty(cls, m);
        }
        held.clear();
        // Every third round: nobody takes for a few passes, so passes hollow.
        if (round % 3 == 2) {
          const uint64_t idle = passes.load(std::memory_order_relaxed) + 3;
          while (passes.load(std::memory_order_relaxed) < idle) sched_yield();
        }
      }
    });
  for (auto& th : owners) th.join();
  stop.store(true);
  passer.join();
  std::printf("%llu passes, %llu hollowings by decay_empty\n",
              static_cast<unsigned long long>(passes.load()),
              static_cast<unsigned long long>(hollowed.load()));
  EXPECT_EQ(bad.load(), 0) << "a held magazine lost what its owner wrote";
  EXPECT_EQ(bad_field.load(), 0) << "get_empty handed out a magazine not whole";
  // magslab_trim_all hollowed at every 16th pass (decay_empty: 1-5 times in
  // a run under ThreadSanitizer, 5-40 in release).
  EXPECT_GE(passes.load(), 16u);
}

// fork() while passes hollow and owners trade empty magazines: the child
// (one thread, every lock free again) takes and fills empty magazines of
// every kind — from the stacks, the hollow lists, new ones — hollows them
// itself, and gets them back whole.
TEST(DecayEmptyMt, AForkChildTradesAndHollowsEmptyMagazines) {
  const unsigned classes[] = {class_of(40), class_of(200), class_of(3000), class_of(100000)};
  std::atomic<bool> stop{false};
  std::thread passer([&] {
    uint64_t now = platform::now_ns() + uint64_t{7200} * 1000 * 1000 * 1000;
    for (uint64_t n = 1; !stop.load(std::memory_order_relaxed); ++n) {
      now += decay::kTickNs;
      if (n % 8 == 0)
        magslab_trim_all();
      else
        decay::tick(now);
      sched_yield();
    }
  });
  std::vector<std::thread> owners;
  for (int t = 0; t < 2; ++t)
    owners.emplace_back([&, t] {
      mstest::Rng r(static_cast<uint64_t>(t) + 11);
      std::vector<Magazine*> held;
      while (!stop.load(std::memory_order_relaxed)) {
        const unsigned cls = classes[r.below(4)];
        for (size_t i = 0, n = 1 + r.below(32); i < n; ++i)
          if (Magazine* m = depot::get_empty(cls)) {
            m->objs[m->slots - 1] = m;
            held.push_back(m);
          }
        for (Magazine* m : held) depot::push_empty(cls, m);
        held.clear();
        if (r.below(4) == 0) sched_yield();
      }
    });
  int failed = 0;
  for (int k = 0; k < kForks; ++k) {
    usleep(2000);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(20);
      int bad = 0;
      for (int round = 0; round < 3; ++round) {
        std::vector<std::pair<Magazine*, unsigned>> mine;
        for (unsigned cls : classes)
          for (int i = 0; i < 100; ++i) {
            Magazine* m = depot::get_empty(cls);
            if (m == nullptr) _exit(2);
            if (m->count != 0 || m->cls != cls || m->cap != m->slots) ++bad;
            for (uint32_t s = 0; s < m->slots; ++s) m->objs[s] = &m->objs[s];
            mine.emplace_back(m, cls);
          }
        for (auto [m, cls] : mine) {
          for (uint32_t s = 0; s < m->slots; ++s)
            if (m->objs[s] != &m->objs[s]) {
              ++bad;
              break;
            }
          depot::push_empty(cls, m);
        }
        magslab_trim_all();  // hollows them
        magslab_free(magslab_malloc(100));
      }
      _exit(bad == 0 ? 0 : 1);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ++failed;
  }
  stop.store(true);
  for (auto& th : owners) th.join();
  passer.join();
  EXPECT_EQ(failed, 0) << "of " << kForks << " children";
}

}  // namespace
