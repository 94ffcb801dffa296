// The versioned stats API: magslab_stats_get with smaller and larger sizes,
// magslab_stats_json's snprintf contract, magslab_stats_print to an fd, and
// magslab_version. (tests/check_stats_json.py parses the JSON with python3.)
#include <errno.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "magslab/magslab.h"

namespace {

TEST(StatsApi, Version) {
  EXPECT_EQ(magslab_version(), MAGSLAB_VERSION);
  EXPECT_EQ(MAGSLAB_VERSION,
            MAGSLAB_VERSION_MAJOR * 10000 + MAGSLAB_VERSION_MINOR * 100 + MAGSLAB_VERSION_PATCH);
}

TEST(StatsApi, GetFillsOnlyTheCallersSize) {
  void* p = magslab_malloc(100);
  // A caller built against an older, shorter struct: only its part is written.
  std::vector<unsigned char> buf(sizeof(struct magslab_stats) + 64, 0xAB);
  size_t old_size = offsetof(struct magslab_stats, huge_live_bytes);
  EXPECT_EQ(magslab_stats_get(reinterpret_cast<struct magslab_stats*>(buf.data()), old_size),
            old_size);
  for (size_t i = old_size; i < buf.size(); ++i) ASSERT_EQ(buf[i], 0xAB) << i;
  struct magslab_stats st;
  memcpy(&st, buf.data(), old_size);
  EXPECT_GE(st.live_objects, 1u);
  EXPECT_GT(st.class_count, 0u);
  // A caller built against a newer, longer struct: the unknown tail reads 0.
  EXPECT_EQ(magslab_stats_get(reinterpret_cast<struct magslab_stats*>(buf.data()), buf.size()),
            sizeof(struct magslab_stats));
  for (size_t i = sizeof(struct magslab_stats); i < buf.size(); ++i) ASSERT_EQ(buf[i], 0) << i;
  struct magslab_stats full;
  magslab_stats(&full);
  EXPECT_EQ(full.thread_caches, 1u);
  magslab_free(p);
}

// NULL is ignored, as magslab_stats(NULL) is (until stop 47 it crashed;
// a bug hunt): nothing filled, 0 returned.
TEST(StatsApi, GetOfNullFillsNothing) {
  magslab_stats(nullptr);
  EXPECT_EQ(magslab_stats_get(nullptr, sizeof(struct magslab_stats)), 0u);
  EXPECT_EQ(magslab_stats_get(nullptr, 16), 0u);
}

TEST(StatsApi, JsonIsCutLikeSnprintf) {
  size_t n = magslab_stats_json(nullptr, 0);
  ASSERT_GT(n, 1000u);
  std::string whole(n + 1, '\0');
  EXPECT_EQ(magslab_stats_json(whole.data(), whole.size()), n);
  EXPECT_EQ(strlen(whole.c_str()), n);
  EXPECT_EQ(whole[0], '{');
  EXPECT_EQ(whole.substr(n - 3, 3), "]}\n");
  char small[16];
  memset(small, 'x', sizeof small);
  EXPECT_EQ(magslab_stats_json(small, sizeof small), n);
  EXPECT_EQ(small[15], '\0');
  EXPECT_EQ(std::string(small), whole.substr(0, 15));
}

TEST(StatsApi, PrintWritesTheSameJsonAndReportsErrors) {
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(magslab_stats_print(fileno(f), MAGSLAB_STATS_JSON), 0);
  std::string expect(magslab_stats_json(nullptr, 0) + 1, '\0');
  magslab_stats_json(expect.data(), expect.size());
  expect.pop_back();
  std::string got(expect.size() + 100, '\0');
  ssize_t r = pread(fileno(f), got.data(), got.size(), 0);
  ASSERT_GT(r, 0);
  got.resize(static_cast<size_t>(r));
  EXPECT_EQ(got, expect);
  EXPECT_EQ(magslab_stats_print(fileno(f), MAGSLAB_STATS_TEXT), 0);
  fclose(f);
  errno = 1234;
  EXPECT_EQ(magslab_stats_print(-1, MAGSLAB_STATS_TEXT), EBADF);
  EXPECT_EQ(errno, 1234);
  EXPECT_EQ(magslab_stats_print(2, 7), EINVAL);
}

}  // namespace
