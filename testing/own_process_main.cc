// testing/own_process_main.cc: GoogleTest's main for test binaries whose
// tests each need a process of their own (a fake installed before the first
// allocation, an option read once when a thread starts, a background thread
// that cannot be stopped). CTest runs every test of a binary by itself
// (gtest_discover_tests: --gtest_filter=Suite.Name), and so does this main
// when the binary is run by hand: it lists the tests the filter selects and
// runs each in a new process of this binary, then prints which failed. Before,
// `build/release/decay_mt_test` run whole failed two tests that pass alone.
// A shard (GTEST_TOTAL_SHARDS, GTEST_SHARD_INDEX) runs its share of the tests
// so, test i of the listing for shard i % total, as GoogleTest deals them. A
// run that selects one test, lists tests, asks for help, writes a report
// (--gtest_output: each child would overwrite it), or is such a child runs in
// process, as gtest_main does.
#include <gtest/gtest.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace {

constexpr const char* kChildEnv = "MSTEST_OWN_PROCESS_CHILD";

// This binary's path ("" if unknown): /proc/self/exe names the shell in popen's command.
std::string self_path() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// GoogleTest's rule for a disabled suite or test name ("DISABLED_*:*/DISABLED_*").
bool disabled(const std::string& name) {
  return name.rfind("DISABLED_", 0) == 0 || name.find("/DISABLED_") != std::string::npos;
}

// The tests `args` select, as "Suite.Name", from this binary's own listing;
// false if it cannot be listed (the caller then runs them in process, where
// GoogleTest reports what is wrong).
bool selected_tests(const std::string& self, const std::vector<std::string>& args,
                    std::vector<std::string>* tests) {
  if (self.empty() || self.find('\'') != std::string::npos) return false;
  std::string cmd = "'" + self + "' --gtest_list_tests";
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i].find('\'') != std::string::npos) return false;  // could not be quoted as below
    cmd += " '" + args[i] + "'";
  }
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return false;
  std::string suite;
  char line[1024];
  const bool disabled_too = GTEST_FLAG_GET(also_run_disabled_tests);
  while (fgets(line, sizeof line, f) != nullptr) {
    std::string s(line);
    // "Suite." or "  Name", either perhaps followed by "  # GetParam() = ...".
    s = s.substr(0, s.find_first_of("#\n"));
    while (!s.empty() && s.back() == ' ') s.pop_back();
    if (s.empty()) continue;
    if (s[0] != ' ') {
      suite = s;  // "Suite."
    } else {
      const std::string name = s.substr(s.find_first_not_of(' '));
      // Listed, but not run unless asked for (they would count as passed).
      if (!disabled_too && (disabled(suite) || disabled(name))) continue;
      tests->push_back(suite + name);
    }
  }
  return pclose(f) == 0;
}

// GTEST_TOTAL_SHARDS and GTEST_SHARD_INDEX: false if neither is set; else
// true with *total and *index, or with *total = 0 if they are not valid (for
// GoogleTest to report, in process).
bool shard_of(long* total, long* index) {
  const char* t = getenv("GTEST_TOTAL_SHARDS");
  const char* i = getenv("GTEST_SHARD_INDEX");
  if (t == nullptr && i == nullptr) return false;
  *total = 0;
  if (t == nullptr || i == nullptr) return true;  // one without the other
  char *t_end = nullptr, *i_end = nullptr;
  const long n = strtol(t, &t_end, 10), k = strtol(i, &i_end, 10);
  if (*t_end == '\0' && *i_end == '\0' && n >= 1 && k >= 0 && k < n) *total = n, *index = k;
  return true;
}

// Runs `test` in a new process of this binary; true if it passed.
bool run_in_own_process(const std::string& self, const std::vector<std::string>& args,
                        const std::string& test) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    std::vector<std::string> child = args;
    child.push_back("--gtest_filter=" + test);  // the last filter given wins
    std::vector<char*> argv;
    for (std::string& a : child) argv.push_back(a.data());
    argv.push_back(nullptr);
    setenv(kChildEnv, "1", 1);
    execv(self.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Arguments and environment under which the whole run belongs in one process.
bool run_in_process(const std::vector<std::string>& args) {
  if (getenv("GTEST_OUTPUT") != nullptr) return true;
  for (const std::string& a : args)
    if (a == "--help" || a == "-h" || a == "-?" || a == "/?" || a.rfind("--gtest_output", 0) == 0)
      return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv, argv + argc);  // before gtest takes its flags out
  const bool child = getenv(kChildEnv) != nullptr;
  unsetenv(kChildEnv);  // not for the processes the tests start themselves
  testing::InitGoogleTest(&argc, argv);
  if (child || GTEST_FLAG_GET(list_tests) || run_in_process(args)) return RUN_ALL_TESTS();
  long total = 0, index = 0;
  const bool sharded = shard_of(&total, &index);  // then even one test (or none) is ours
  if (sharded && total == 0) return RUN_ALL_TESTS();
  const std::string self = self_path();
  std::vector<std::string> tests;
  if (!selected_tests(self, args, &tests)) return RUN_ALL_TESTS();
  if (sharded) {
    std::vector<std::string> mine;
    for (size_t k = 0; k < tests.size(); ++k)
      if (static_cast<long>(k % static_cast<size_t>(total)) == index) mine.push_back(tests[k]);
    tests.swap(mine);
    // The children run their one test whole (the listing above saw every test).
    unsetenv("GTEST_TOTAL_SHARDS");
    unsetenv("GTEST_SHARD_INDEX");
    // As GoogleTest does when it shards: the file says sharding is understood.
    if (const char* status = getenv("GTEST_SHARD_STATUS_FILE"))
      if (FILE* sf = fopen(status, "w")) fclose(sf);
  }
  if (tests.size() <= 1 && !sharded) return RUN_ALL_TESTS();
  std::vector<std::string> failed;
  for (const std::string& t : tests)
    if (!run_in_own_process(self, args, t)) failed.push_back(t);
  printf("[==========] %zu tests, each in a process of its own: %zu passed, %zu failed\n",
         tests.size(), tests.size() - failed.size(), failed.size());
  for (const std::string& t : failed) printf("[  FAILED  ] %s\n", t.c_str());
  return failed.empty() ? 0 : 1;
}
