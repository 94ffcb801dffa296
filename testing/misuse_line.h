// testing/misuse_line: death-test helpers for magslab's misuse messages
// (tests/misuse_death_test.cc, tests/check_misuse_death_test.cc).
//
// The death tests use the "threadsafe" style, which re-executes the test
// binary for every death test. With ASLR the child's heap/stack addresses
// differ from the parent's, so an address formatted in the parent could not
// match. Instead the child announces the pointer on stderr
// ("magslab-test: freeing <%p>") right before the bad call, and the matcher
// checks that the magslab line names exactly that address.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
// GCC 12's libstdc++ <regex>, built with -fsanitize=address, warns that a
// std::function inside its NFA "may be used uninitialized" (a false positive
// in the library's own code, not in ours).
#if defined(__clang__)
#include <regex>
#else
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#pragma GCC diagnostic pop
#endif
#include <sstream>
#include <string>
#include <vector>

#include "magslab/magslab.h"

// Child side: print the pointer (the address the line must name).
#define ANNOUNCE(ptr)                                                 \
  do {                                                                \
    std::fprintf(stderr, "magslab-test: freeing %p\n", (void*)(ptr)); \
    std::fflush(stderr);                                              \
  } while (0)

// Child side: print the pointer, then free it.
#define ANNOUNCE_AND_FREE(ptr)    \
  do {                            \
    void* volatile ms_p_ = (ptr); \
    ANNOUNCE(ms_p_);              \
    magslab_free(ms_p_);          \
  } while (0)

class MisuseLine : public testing::MatcherInterface<const std::string&> {
 public:
  // message: base/misuse.h's text of the kind ("invalid free of"); suffix: a
  // regular expression for what follows the address; the line must be exactly
  // "magslab: <message> 0x<addr><suffix>".
  MisuseLine(std::string message, std::string suffix)
      : message_(std::move(message)), suffix_(std::move(suffix)) {}

  bool MatchAndExplain(const std::string& err,
                       testing::MatchResultListener* listener) const override {
    // The announced address (%p: 0x-prefixed lowercase hex on glibc).
    static const std::regex ann_re("magslab-test: freeing 0x([0-9a-f]+)");
    // The whole magslab line: kind, address and what is known of the block.
    const std::regex line_re("magslab: " + message_ + " 0x([0-9a-f]+)" + suffix_);
    std::vector<std::string> lines;
    std::istringstream in(err);
    for (std::string l; std::getline(in, l);) {
      if (!l.empty() && l.back() == '\r') l.pop_back();
      lines.push_back(l);
    }
    unsigned long long announced = 0, reported = 0;
    if (!last_address(lines, ann_re, &announced)) {
      *listener << "the child never reached the bad free (no announcement line)";
      return false;
    }
    int magslab_lines = 0;
    for (const auto& l : lines)
      if (l.rfind("magslab:", 0) == 0) ++magslab_lines;
    if (!last_address(lines, line_re, &reported)) {
      *listener << "no line of the form \"magslab: " << message_ << " 0x..." << suffix_ << "\"";
      return false;
    }
    if (magslab_lines != 1) {
      *listener << "expected exactly one magslab line, got " << magslab_lines;
      return false;
    }
    if (reported != announced) {
      *listener << "reported address 0x" << std::hex << reported
                << " differs from the announced pointer 0x" << announced;
      return false;
    }
    return true;
  }
  void DescribeTo(std::ostream* os) const override {
    *os << "has exactly one stderr line \"magslab: " << message_ << " 0x<the announced address>"
        << suffix_ << "\"";
  }
  void DescribeNegationTo(std::ostream* os) const override {
    *os << "does not have the line \"magslab: " << message_ << " 0x<addr>\"";
  }

 private:
  // The address (group 1, hex) of the last line matching re; false if none does.
  static bool last_address(const std::vector<std::string>& lines, const std::regex& re,
                           unsigned long long* address) {
    bool found = false;
    for (const auto& l : lines) {
      std::smatch m;
      if (std::regex_match(l, m, re)) {
        *address = std::strtoull(m[1].str().c_str(), nullptr, 16);
        found = true;
      }
    }
    return found;
  }

  std::string message_;
  std::string suffix_;
};

inline testing::Matcher<const std::string&> MisuseLineOf(const std::string& message,
                                                         const std::string& suffix) {
  return testing::MakeMatcher(new MisuseLine(message, suffix));
}

inline void use_threadsafe_style() { testing::GTEST_FLAG(death_test_style) = "threadsafe"; }
