// base/lock.h's fork protocol for a Lock made between magslab's prepare and
// parent handlers — an object cache's, created by a pthread_atfork handler
// registered before magslab's (tests/fork_handler_order_mt_test.cc): the
// parent and child handlers release every cache's lock
// (objcache::unlock_after_fork); a first version released this one too, which
// lock_for_fork never took and another thread of the parent may hold then, so
// that the forking thread's next call into the cache entered its critical
// section beside that thread (a review, stop 49).

#include <atomic>
#include <chrono>
#include <thread>

#include "base/lock.h"
#include "gtest/gtest.h"

namespace magslab {
namespace {

TEST(LockFork, UnlockAfterForkLeavesALockTheForkDidNotTakeToItsHolder) {
  Lock l;  // made after lock_for_fork ran
  std::atomic<int> stage{0};
  std::thread holder([&] {
    l.lock();
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
    l.unlock();
  });
  while (stage.load() != 1) std::this_thread::yield();
  l.unlock_after_fork();  // the parent handler's, as for every cache's lock
  std::atomic<bool> entered{false};
  std::thread other([&] {
    l.lock();
    entered.store(true);
    l.unlock();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(entered.load()) << "a second thread entered while the holder held the lock";
  stage.store(2);
  holder.join();
  other.join();
  EXPECT_TRUE(entered.load());
}

TEST(LockFork, ALockTakenForTheForkIsReleasedAfterIt) {
  Lock a;
  a.lock_for_fork();
  a.unlock_after_fork();
  a.lock();  // free again
  a.unlock();
}

}  // namespace
}  // namespace magslab
