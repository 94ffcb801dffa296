// testing/threads.h: starting threads together, stepping them through
// phases, and running them for a while. Waits spin with yield (no futex, no
// allocation), so they are usable around allocator calls under test.
#pragma once

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace mstest {

// A one-shot start line: threads wait() until the main thread open()s it, so
// all of them start at once (thread creation, which may allocate, is over).
class StartGate {
 public:
  void wait() const {
    while (!open_.load(std::memory_order_acquire)) std::this_thread::yield();
  }
  void open() { open_.store(true, std::memory_order_release); }

 private:
  std::atomic<bool> open_{false};
};

// A phase counter for hand-shakes between a few threads: one thread reaches
// a phase (set or arrive), others wait_for it. Release/acquire: what a thread
// did before reaching a phase is visible to those that waited for it.
class Phase {
 public:
  void set(int n) { v_.store(n, std::memory_order_release); }
  void arrive() { v_.fetch_add(1, std::memory_order_acq_rel); }
  void wait_for(int n) const {
    while (v_.load(std::memory_order_acquire) < n) std::this_thread::yield();
  }
  int get() const { return v_.load(std::memory_order_acquire); }

 private:
  std::atomic<int> v_{0};
};

// Runs body(i) for i in [0, threads) on that many threads for `duration`:
// `stop` is cleared first and set when the time is up; the bodies loop until
// they see it. Returns when every thread has joined.
template <class Rep, class Period, class F>
void run_threads_for(int threads, std::chrono::duration<Rep, Period> duration,
                     std::atomic<bool>& stop, F&& body) {
  stop.store(false);
  std::vector<std::thread> ts;
  ts.reserve(threads);
  for (int i = 0; i < threads; ++i) ts.emplace_back([&body, i] { body(i); });
  std::this_thread::sleep_for(duration);
  stop.store(true);
  for (auto& t : ts) t.join();
}

}  // namespace mstest
