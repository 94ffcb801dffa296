// testing/held_point: a point in the library (a seam call, a test hook) where
// a test holds the thread that reaches it first, to show that another thread
// does not wait for it. hold() at that point: its first call says so
// (reached()) and waits until the test's other thread calls release() or
// the limit passes, and records whether release() came first (in_time());
// later calls go on at once. A test whose other thread waited for the held
// one fails by in_time() false, after the limit, instead of hanging.
#pragma once
#include <atomic>
#include <chrono>
#include <thread>

namespace mstest {

class HeldPoint {
 public:
  static constexpr std::chrono::seconds kLimit{3};

  // At the held point; true for the call that was held.
  bool hold() {
    if (calls_.fetch_add(1) != 0) return false;
    reached_.store(true);
    const auto deadline = std::chrono::steady_clock::now() + kLimit;
    while (!released_.load() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    in_time_.store(released_.load());
    return true;
  }
  void release() { released_.store(true); }
  void wait_reached() const {
    while (!reached_.load()) std::this_thread::yield();
  }
  bool reached() const { return reached_.load(); }
  bool in_time() const { return in_time_.load(); }
  int calls() const { return calls_.load(); }
  void reset() {
    reached_.store(false);
    released_.store(false);
    in_time_.store(false);
    calls_.store(0);
  }

 private:
  std::atomic<bool> reached_{false}, released_{false}, in_time_{false};
  std::atomic<int> calls_{0};
};

}  // namespace mstest
