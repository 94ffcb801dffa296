// testing/own_process_main.cc: GoogleTest's main for test binaries whose
// tests each need a process of their own (a fake installed before the first
// allocation, an option read once when a thread starts, a background thread
// that cannot be stopped). CTest runs every test of a binary by itself
// (gtest_discover_tests: --gtest_filter=Suite.Name), and so does this main
// when the binary is run by hand: it lists the tests the filter selects and
// runs each in a new process of this binary, then prints which failed. Before,
// `build/release/decay_mt_test` run whole failed two tests that pass alone.
// A run that selects one test, lists tests, or is such a child runs in
// process, as gtest_main does.
#include <gtest/gtest.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

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

// The tests `args` select, as "Suite.Name", from this binary's own listing
// (none if it cannot be listed: the caller then runs them in process).
std::vector<std::string> selected_tests(const std::string& self,
                                        const std::vector<std::string>& args) {
  if (self.empty() || self.find('\'') != std::string::npos) return {};
  std::string cmd = "'" + self + "' --gtest_list_tests";
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i].find('\'') != std::string::npos) return {};  // could not be quoted as below
    cmd += " '" + args[i] + "'";
  }
  std::vector<std::string> tests;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return tests;
  std::string suite;
  char line[1024];
  while (fgets(line, sizeof line, f) != nullptr) {
    std::string s(line);
    // "Suite." or "  Name", either perhaps followed by "  # GetParam() = ...".
    s = s.substr(0, s.find_first_of("#\n"));
    while (!s.empty() && s.back() == ' ') s.pop_back();
    if (s.empty()) continue;
    if (s[0] != ' ') {
      suite = s;  // "Suite."
    } else {
      tests.push_back(suite + s.substr(s.find_first_not_of(' ')));
    }
  }
  pclose(f);
  return tests;
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

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv, argv + argc);  // before gtest takes its flags out
  testing::InitGoogleTest(&argc, argv);
  if (getenv(kChildEnv) != nullptr || GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();
  const std::string self = self_path();
  const std::vector<std::string> tests = selected_tests(self, args);
  if (tests.size() <= 1) return RUN_ALL_TESTS();
  std::vector<std::string> failed;
  for (const std::string& t : tests)
    if (!run_in_own_process(self, args, t)) failed.push_back(t);
  printf("[==========] %zu tests, each in a process of its own: %zu passed, %zu failed\n",
         tests.size(), tests.size() - failed.size(), failed.size());
  for (const std::string& t : failed) printf("[  FAILED  ] %s\n", t.c_str());
  return failed.empty() ? 0 : 1;
}
