// NUMA awareness (issue #17) across fork(), on a fake two-node machine
// (testing/fake_numa.h): while threads pinned to both nodes allocate and free
// (each node's class locks in use), the process forks; each child allocates
// from both nodes (getting each node's memory) under an alarm(), so a class
// lock of node 1 inherited held would fail the test instead of hanging it.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "testing/fake_numa.h"
#include "testing/rng.h"

// As in fork_mt_test.cc: the prepare handler holds every lock magslab has (a
// class lock per size class and node here), more than the 64 ThreadSanitizer's
// deadlock detector tracks per thread. Race detection stays on; only
// lock-order tracking is off, and only in this binary.
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

namespace fake = mstest::fake_numa;
using fake::chunk_node;

TEST(NumaForkMt, ForkWhileThreadsAllocateOnBothNodes) {
  fake::install(2);
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (unsigned node = 0; node < 2; ++node) {
    ts.emplace_back([&, node] {
      fake::set_thread_node(node);
      mstest::Rng rng(node + 7);
      std::vector<void*> v(64, nullptr);
      for (uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        size_t i = rng.next() % v.size();
        magslab_free(v[i]);
        v[i] = magslab_malloc(8 + rng.next() % 4096);
        // Often inside the node's class locks (trim takes each of them), so
        // that a fork that did not hold them would often catch one held.
        if (n % 16 == 0) magslab_trim();
      }
      for (void* p : v) magslab_free(p);
    });
  }
  for (int f = 0; f < 20; ++f) {
    pid_t pid = fork();
    if (pid < 0) {
      ADD_FAILURE() << "fork failed";
      break;
    }
    if (pid == 0) {
      alarm(20);  // a lock inherited held would hang here: fail instead
      // No std::vector here: the child may use no allocator but magslab. The
      // system one (ASan's, in that preset) is not fork-safe: a lock another
      // thread held at the fork hung this child in operator new now and then.
      static void* v[3000];
      for (unsigned node : {0u, 1u, 0u}) {
        magslab_trim();  // a migrating thread keeps its magazines: empty them
        fake::set_thread_node(node);
        for (int i = 0; i < 3000; ++i) v[i] = magslab_malloc(8 + (i % 512) * 8);
        for (void* p : v)
          if (chunk_node(p) != node) _exit(3);
        for (void* p : v) magslab_free(p);
      }
      magslab_trim_all();
      _exit(0);
    }
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ADD_FAILURE() << "child status " << status
                    << (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM
                            ? " (deadlock: alarm fired)"
                            : "");
      break;
    }
  }
  stop.store(true);
  for (auto& t : ts) t.join();
}

}  // namespace
