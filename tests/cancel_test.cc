// Thread cancellation (pthread_cancel, deferred) and magslab. No magslab call
// is a cancellation point — POSIX allows none for malloc and free — but until
// stop 41 a few reached one: the object caches' first key and a process's
// first allocation (glibc's getrandom), the constructors and destructors of
// object caches (a user's T() may open(), connect(), usleep()). A thread with
// a cancel pending was cancelled there and, magslab being built without
// exceptions, unwound past magslab's frames with their locks held: fork() and
// every later cache call hung, ObjectCache<T> aborted ("exception not
// rethrown"), and a half-built slab leaked (stop 41's bug hunt). Now magslab
// keeps cancellation off on those paths (platform::NoCancel) and the cancel
// is acted on at the thread's next cancellation point, after magslab returned.
//
// Each case runs in a death test's child, a fresh process: the first key is
// made there, and a hang (SIGALRM after 20 s) or an abort fails the case.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "magslab/magslab.h"
#include "magslab/magslab.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);  // fprintf is a cancellation point
  fprintf(stderr, "%s\n", what);
  _exit(1);
}

// Runs body() in a thread that has a cancel pending from its start (deferred:
// acted on at the thread's next cancellation point), then a cancellation
// point. Returns whether body() returned (it set `reached`) and the thread was
// then cancelled at that point, as it would have been with no magslab call.
struct Pending {
  void (*body)();
  std::atomic<bool> reached{false};
};
void* pending_thread(void* arg) {
  auto* pc = static_cast<Pending*>(arg);
  pthread_cancel(pthread_self());  // pending: no cancellation point yet
  pc->body();
  pc->reached.store(true);
  pthread_testcancel();
  return nullptr;
}
void run_with_cancel_pending(void (*body)(), const char* what) {
  Pending pc{body};
  pthread_t t;
  if (pthread_create(&t, nullptr, pending_thread, &pc) != 0) fail("pthread_create failed");
  void* res = nullptr;
  pthread_join(t, &res);
  if (!pc.reached.load()) {
    fprintf(stderr, "%s: the thread was cancelled inside magslab\n", what);
    _exit(1);
  }
  if (res != PTHREAD_CANCELED) fail("the thread was not cancelled at its cancellation point");
}

// After the cancelled thread: the rest of the process still works.
void fork_and_create_cache() {
  pid_t pid = fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) _exit(0);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) fail("the fork child failed");
  magslab_cache* c = magslab_cache_create("after", 64, 8, nullptr, nullptr, nullptr);
  if (c == nullptr) fail("magslab_cache_create failed after the cancelled thread");
  void* o = magslab_cache_alloc(c);
  if (o == nullptr) fail("magslab_cache_alloc failed after the cancelled thread");
  magslab_cache_free(c, o);
  magslab_cache_destroy(c);
}

TEST(CancelDeathTest, TheFirstCacheCreateIsNoCancellationPoint) {
  EXPECT_EXIT(
      {
        alarm(20);
        run_with_cancel_pending(
            [] {
              magslab_cache* c = magslab_cache_create("first", 64, 8, nullptr, nullptr, nullptr);
              if (c == nullptr) fail("magslab_cache_create failed");
              magslab_cache_destroy(c);
            },
            "magslab_cache_create");
        fork_and_create_cache();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(CancelDeathTest, TheFirstMallocIsNoCancellationPoint) {
  EXPECT_EXIT(
      {
        alarm(20);
        run_with_cancel_pending(
            [] {
              void* volatile p = magslab_malloc(24);
              if (p == nullptr) fail("magslab_malloc failed");
              magslab_free(p);
            },
            "magslab_malloc");
        fork_and_create_cache();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// The statistics report writes (write: a cancellation point) from a snapshot
// in a mapping of its own, which a thread cancelled there leaked.
int g_null_fd = -1;
TEST(CancelDeathTest, AStatisticsReportIsNoCancellationPoint) {
  EXPECT_EXIT(
      {
        alarm(20);
        g_null_fd = open("/dev/null", O_WRONLY);
        if (g_null_fd < 0) fail("cannot open /dev/null");
        run_with_cancel_pending(
            [] {
              if (magslab_stats_print(g_null_fd, MAGSLAB_STATS_TEXT) != 0)
                fail("magslab_stats_print failed");
            },
            "magslab_stats_print");
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// A misuse report is a write to stderr: the thread that double-frees aborts the
// process even with a cancel pending. Before, it was cancelled in the write:
// no report, no abort (the program went on), and for a huge block with the
// huge lock held, so the next huge malloc hung (stop 41's review).
void* g_twice = nullptr;
TEST(CancelDeathTest, ADoubleFreeIsReportedWithACancelPending) {
  for (size_t size : {size_t{48}, size_t{8} << 20}) {
    g_twice = magslab_malloc(size);
    ASSERT_NE(g_twice, nullptr);
    EXPECT_DEATH(
        {
          alarm(20);
          run_with_cancel_pending(
              [] {
                magslab_free(g_twice);
                magslab_free(g_twice);
              },
              "magslab_free");
          // Not reached: the report aborts the process.
          void* p = magslab_malloc(size_t{8} << 20);
          magslab_free(p);
          _exit(0);
        },
        "magslab: double free of 0x")
        << size << " B";
    magslab_free(g_twice);
  }
}

// magslab_cache_destroy of a cache with live objects warns (a write) and goes
// on: the warning was a cancellation point, and the cache and its slabs leaked.
magslab_cache* g_leaky = nullptr;
TEST(CancelDeathTest, DestroyingACacheWithLiveObjectsIsNoCancellationPoint) {
  EXPECT_EXIT(
      {
        alarm(20);
        g_leaky = magslab_cache_create("leaky", 64, 8, nullptr, nullptr, nullptr);
        if (g_leaky == nullptr || magslab_cache_alloc(g_leaky) == nullptr)
          fail("magslab_cache_create or _alloc failed");
        run_with_cancel_pending([] { magslab_cache_destroy(g_leaky); }, "magslab_cache_destroy");
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "live");
}

// With a report fd open (show_stats without stats_file), fork()'s child
// handler closes the parent's duplicate of stderr: close was a cancellation
// point there, and a child forked by a thread with a cancel pending died
// inside fork() (exit status 0, its own code never ran).
TEST(CancelDeathTest, ForkByAThreadWithACancelPendingAndAReportFd) {
  // Read by the death test's child as it starts: a child of its own (threadsafe).
  testing::GTEST_FLAG(death_test_style) = "threadsafe";
  setenv("MAGSLAB_SHOW_STATS", "1", 1);
  EXPECT_EXIT(
      {
        alarm(20);
        run_with_cancel_pending(
            [] {
              pid_t pid = fork();
              if (pid < 0) fail("fork failed");
              if (pid == 0) _exit(7);  // the child runs its own code
              int status = 0, old = 0;
              // waitpid is a cancellation point of its own.
              pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
              if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 7)
                fail("the child forked by a thread with a cancel pending died in fork()");
              pthread_setcancelstate(old, nullptr);
            },
            "fork");
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  unsetenv("MAGSLAB_SHOW_STATS");
  testing::GTEST_FLAG(death_test_style) = "fast";
}

// A C constructor and destructor that reach cancellation points.
int slow_ctor(void* obj, void*) {
  usleep(100);
  *static_cast<int*>(obj) = 7;
  return 0;
}
void slow_dtor(void*, void*) { usleep(100); }
magslab_cache* g_slow_cache = nullptr;

TEST(CancelDeathTest, ACacheWhoseConstructorIsACancellationPointIsNone) {
  EXPECT_EXIT(
      {
        alarm(20);
        g_slow_cache = magslab_cache_create("slow", 64, 8, slow_ctor, slow_dtor, nullptr);
        if (g_slow_cache == nullptr) fail("magslab_cache_create failed");
        run_with_cancel_pending(
            [] {
              auto* o = static_cast<int*>(magslab_cache_alloc(g_slow_cache));
              if (o == nullptr || *o != 7) fail("magslab_cache_alloc failed");
              magslab_cache_free(g_slow_cache, o);
              // The destructors run here (the thread's magazines, then the slabs).
              magslab_cache_reap(g_slow_cache);
            },
            "magslab_cache_alloc");
        struct magslab_cache_stats st {};
        magslab_cache_stats(g_slow_cache, &st);
        if (st.live != 0) fail("a cancelled thread left objects live");
        magslab_cache_destroy(g_slow_cache);
        fork_and_create_cache();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

struct Connection {
  Connection() { usleep(100); }  // stands for open() or connect(): a cancellation point
  char buf[200] = {};
};
magslab::ObjectCache<Connection>* g_connections = nullptr;

TEST(CancelDeathTest, ObjectCacheOfATypeWhoseConstructorIsACancellationPoint) {
  EXPECT_EXIT(
      {
        alarm(20);
        g_connections = new magslab::ObjectCache<Connection>("connections");
        run_with_cancel_pending(
            [] {
              Connection* c = g_connections->acquire();
              g_connections->release(c);
            },
            "ObjectCache::acquire");
        delete g_connections;
        fork_and_create_cache();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// pthread_exit() is glibc's other forced unwind: a T() that ends its thread
// (a worker that finds it must quit while the cache populates a slab) ends
// that thread, and the rest of the process goes on. Until stop 49 the
// catch (...) of ObjectCache's construct() took the unwind and glibc ended the
// process ("FATAL: exception not rethrown"; a bug hunt).
thread_local bool t_quit_in_constructor = false;
std::atomic<int> g_quitters_constructed{0};
struct Quitter {
  Quitter() {
    if (t_quit_in_constructor) pthread_exit(nullptr);
    g_quitters_constructed.fetch_add(1);
  }
  long word = 42;
};
magslab::ObjectCache<Quitter>* g_quitters = nullptr;

TEST(CancelDeathTest, AnObjectCacheConstructorThatEndsItsThreadEndsOnlyThatThread) {
  EXPECT_EXIT(
      {
        alarm(20);
        g_quitters = new magslab::ObjectCache<Quitter>("quitters");
        std::atomic<bool> returned{false};
        pthread_t t;
        if (pthread_create(
                &t, nullptr,
                [](void* arg) -> void* {
                  t_quit_in_constructor = true;
                  g_quitters->acquire();
                  static_cast<std::atomic<bool>*>(arg)->store(true);
                  return nullptr;
                },
                &returned) != 0)
          fail("pthread_create failed");
        void* res = &returned;
        pthread_join(t, &res);
        if (returned.load() || res != nullptr) fail("the thread did not end in the constructor");
        // The cache, and acquire() on this thread, work on.
        Quitter* q = g_quitters->acquire();
        if (q == nullptr || q->word != 42) fail("acquire failed after the thread ended");
        g_quitters->release(q);
        if (g_quitters->stats().live != 0) fail("an object is counted live");
        delete g_quitters;
        fork_and_create_cache();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
