// pthread_atfork handlers registered before magslab's own (a constructor that
// runs before magslab's: here one of priority 101, in a static link) run after
// magslab's prepare handler, which holds every lock of the heap, and before its
// parent and child handlers, which release them. glibc lets such handlers call
// malloc (its own malloc locks are taken after every prepare handler); here
// they call magslab. Until stop 49 the first slow path among those calls
// blocked for ever on a lock its own thread held (a class lock, the page-heap
// lock, the huge lock): fork() never returned.
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <thread>

#include "gtest/gtest.h"
#include "magslab/magslab.h"

// ThreadSanitizer's deadlock detector tracks at most 64 locks held by one
// thread, and magslab's prepare handler holds all of its own (as in
// tests/fork_mt_test.cc): lock-order tracking off in this binary, race
// detection (and its checks of unlocks) on.
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

// Armed only in the process that forks under the watchdog (the test's own
// fork of that process must not run them).
bool g_armed = false;
bool g_registered = false;
constexpr int kBlocks = 48;
void* g_kept[kBlocks];
// An object cache made by the prepare handler, used and destroyed after
// fork() returns: its lock is not one the fork took, and magslab's parent and
// child handlers must leave it as they find it.
magslab_cache* g_cache = nullptr;
void* g_cached = nullptr;

// Sizes of classes the process has not used yet (each allocation a slow path:
// a slab refill under its class lock), then large blocks (the page heap's
// lock) and a huge one (the huge blocks' lock).
size_t size_of(int i) {
  if (i < kBlocks - 4) return 8 * 1024 + 1 + static_cast<size_t>(i) * 1500;  // 8 KiB - 73 KiB
  if (i < kBlocks - 1) return (size_t{256} << 10) << (i - (kBlocks - 4));    // 256 KiB - 1 MiB
  return size_t{12} << 20;                                                   // 12 MiB
}

void prepare() {
  if (!g_armed) return;
  for (int i = 0; i < kBlocks; ++i) {
    g_kept[i] = magslab_malloc(size_of(i));
    if (g_kept[i] != nullptr) std::memset(g_kept[i], i, 64);
  }
  g_cache = magslab_cache_create("made while forking", 72, 0, nullptr, nullptr, nullptr);
  if (g_cache != nullptr) g_cached = magslab_cache_alloc(g_cache);
}
void release_all() {
  if (!g_armed) return;
  for (void*& p : g_kept) {
    magslab_free(p);
    p = nullptr;
  }
}
// After fork() returned: the cache made in prepare() works, from another
// thread too, and goes.
bool use_and_destroy_cache() {
  if (g_cache == nullptr || g_cached == nullptr) return false;
  magslab_cache_free(g_cache, g_cached);
  bool ok = true;
  std::thread t([&] {
    for (int i = 0; i < 1000 && ok; ++i) {
      void* o = magslab_cache_alloc(g_cache);
      ok = o != nullptr;
      magslab_cache_free(g_cache, o);
    }
  });
  t.join();
  magslab_cache_destroy(g_cache);
  g_cache = nullptr;
  return ok;
}
void parent() { release_all(); }
void child() {
  // The child frees what prepare allocated, and allocates again.
  if (!g_armed) return;
  release_all();
  void* p = magslab_malloc(100);
  magslab_free(p);
}

// Before magslab's constructor (default priority), so registered first: run last at prepare.
[[gnu::constructor(101)]] void register_before_magslab() {
  g_registered = pthread_atfork(prepare, parent, child) == 0;
}

TEST(ForkHandlerOrder, HandlersRegisteredBeforeMagslabsMayAllocateAndFree) {
  ASSERT_TRUE(g_registered);
  // A watchdog: the forking happens in a child of the test process, which an
  // alarm ends if fork() never returns there.
  pid_t w = fork();
  ASSERT_GE(w, 0);
  if (w == 0) {
    alarm(30);
    g_armed = true;
    pid_t c = fork();
    if (c < 0) _exit(10);
    if (c == 0) {
      void* p = magslab_malloc(size_t{64} << 10);
      bool ok = p != nullptr && use_and_destroy_cache();
      magslab_free(p);
      _exit(ok ? 0 : 11);
    }
    int st = 0;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) _exit(12);
    for (void* p : g_kept)
      if (p != nullptr) _exit(13);  // parent() freed them all
    if (!use_and_destroy_cache()) _exit(15);
    // The parent goes on allocating in the classes prepare used.
    for (int i = 0; i < kBlocks; ++i) {
      void* p = magslab_malloc(size_of(i));
      if (p == nullptr) _exit(14);
      magslab_free(p);
    }
    _exit(0);
  }
  int st = 0;
  ASSERT_EQ(waitpid(w, &st, 0), w);
  ASSERT_FALSE(WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
      << "fork() did not return in 30 s: a handler's allocation waited on a lock magslab's "
         "prepare handler held";
  ASSERT_TRUE(WIFEXITED(st)) << "signal " << WTERMSIG(st);
  EXPECT_EQ(WEXITSTATUS(st), 0);
}

}  // namespace
