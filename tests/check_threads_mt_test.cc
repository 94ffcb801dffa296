// Check mode (docs/check.md), linked against magslab::check, under many
// threads: blocks allocated on one thread are checked and freed on another
// while threads come and go, the quarantine is shared by all of them, and
// every block a thread receives has its requested size and contents intact
// (usable size == requested size holds only in check mode). Run under TSan.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "magslab/magslab.h"
#include "testing/sanitizers.h"

// LeakReportLinesAddUpToItsTotalWhileThreadsAllocate forks: magslab's fork
// prepare handler holds all of its locks (one per size class, and more), past
// ThreadSanitizer's 64 tracked locks per thread, and the child starts threads.
// Race detection stays on; lock-order tracking is off in this binary (as in
// fork_mt_test.cc and decay_mt_test.cc).
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0:die_after_fork=0"; }

namespace {

#if defined(MS_SANITIZED)
constexpr int kRounds = 3;
#else
constexpr int kRounds = 10;
#endif
constexpr int kThreads = 4;
constexpr int kPerThread = 2000;

size_t size_of(int t, int i) {
  static constexpr size_t kSizes[] = {0, 8, 24, 100, 1000, 5000, 70000};
  return kSizes[(t * 7 + i) % 7];
}

TEST(CheckThreadsTest, CrossThreadFreesAsThreadsExit) {
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::vector<unsigned char*>> made(kThreads);
    std::vector<std::thread> producers;
    for (int t = 0; t < kThreads; ++t) {
      producers.emplace_back([t, &made] {
        for (int i = 0; i < kPerThread; ++i) {
          size_t n = size_of(t, i);
          auto* p = static_cast<unsigned char*>(magslab_malloc(n));
          std::memset(p, t + i, n);
          made[t].push_back(p);
        }
      });
    }
    for (auto& th : producers) th.join();  // their magazines go to the depot
    std::atomic<int> bad{0};
    std::vector<std::thread> consumers;
    for (int t = 0; t < kThreads; ++t) {
      consumers.emplace_back([t, &made, &bad] {
        int from = (t + 1) % kThreads;  // another thread's blocks
        for (int i = 0; i < kPerThread; ++i) {
          unsigned char* p = made[from][i];
          size_t n = size_of(from, i);
          // relaxed: a count read after join
          if (magslab_usable_size(p) != n) bad.fetch_add(1, std::memory_order_relaxed);
          for (size_t k = 0; k < n; ++k)
            if (p[k] != static_cast<unsigned char>(from + i)) {
              bad.fetch_add(1, std::memory_order_relaxed);  // relaxed: as above
              break;
            }
          if (i % 2 == 0)
            magslab_free_sized(p, n);
          else
            magslab_free(p);
        }
        if (t == 0) magslab_trim();  // empties the quarantine under the others' frees
      });
    }
    for (auto& th : consumers) th.join();
    EXPECT_EQ(bad.load(), 0) << "round " << round;
  }
  magslab_trim();
}

}  // namespace

// The leak report at exit() while other threads still allocate and free:
// its first line's totals are the sum of the site lines below it. Before stop
// 42 the report summed the sites' counters, then read them again for each
// line, so a thread that allocated meanwhile made the lines add up to more or
// less than the total (2 of 10 runs of a bug hunt's program).
TEST(CheckThreadsTest, LeakReportLinesAddUpToItsTotalWhileThreadsAllocate) {
  int mismatches = 0, reports = 0;
#if defined(MS_TSAN)
  constexpr int kReports = 8;  // a forked child that starts threads takes ~1 s there
#else
  constexpr int kReports = 40;
#endif
  for (int r = 0; r < kReports; ++r) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      dup2(fds[1], 2);  // the report goes to fd 2 (no duplicate: the option is set late)
      close(fds[0]);
      if (magslab_option_set("leak_report", 1) != 0) _exit(2);
      for (int i = 0; i < 10; ++i) (void)magslab_malloc(1000);  // a site that stays
      for (int t = 0; t < 2; ++t)
        std::thread([t] {
          std::vector<void*> v;
          for (;;) {
            for (int i = 0; i < 64; ++i) v.push_back(magslab_malloc(16 + 48 * t + i));
            for (void* p : v) magslab_free(p);
            v.clear();
          }
        }).detach();
      usleep(2000);
      std::exit(0);  // the threads run on while the report is written
    }
    close(fds[1]);
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
      out.append(buf, static_cast<size_t>(n));
    close(fds[0]);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
    long long total_bytes = -1, total_blocks = -1, sum_bytes = 0, sum_blocks = 0;
    size_t at = 0;
    while (at < out.size()) {
      size_t end = out.find('\n', at);
      if (end == std::string::npos) end = out.size();
      const std::string line = out.substr(at, end - at);
      at = end + 1;
      long long b = 0, n = 0;
      if (std::sscanf(line.c_str(), "magslab: leak report: %lld B in %lld", &b, &n) == 2) {
        total_bytes = b;
        total_blocks = n;
      } else if (std::sscanf(line.c_str(), "magslab:   %lld B in %lld", &b, &n) == 2) {
        sum_bytes += b;
        sum_blocks += n;
      }
    }
    ASSERT_GE(total_bytes, 0) << "no leak report in: " << out;
    ++reports;
    if (sum_bytes != total_bytes || sum_blocks != total_blocks) {
      ++mismatches;
      std::fprintf(stderr, "report %d: total %lld B in %lld, lines %lld B in %lld\n", r,
                   total_bytes, total_blocks, sum_bytes, sum_blocks);
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << reports << " reports, the site lines did not add up";
}
