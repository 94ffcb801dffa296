// The library's table of magslab::pmr::resource() classes (magslab.h, "For
// magslab.hpp"; lib/api/cxx_support.cc), through its C calls: classes added
// are known until removed, a second add of one class does nothing, at most
// 128 are known at once and a removed one frees its slot, and adding and
// removing classes again and again (a plugin reloaded) does not grow the
// process's memory: the atexit handler that keeps classes known at exit is
// registered for the first 64 adds only (glibc never frees an atexit entry:
// a million reloads grew glibc's heap by 33 MB before; a review of stop 47).
#include <gtest/gtest.h>
#include <malloc.h>

#include "magslab/magslab.h"

namespace {

// Distinct addresses standing for vtables (only compared, never read).
char g_fake[4096];
const void* fake(size_t i) { return &g_fake[i]; }

TEST(ResourceClasses, KnownFromAddUntilRemove) {
  EXPECT_EQ(magslab_resource_class_known(fake(1)), 0);
  magslab_resource_class_add(fake(1));
  magslab_resource_class_add(fake(1));  // known already: nothing
  EXPECT_EQ(magslab_resource_class_known(fake(1)), 1);
  EXPECT_EQ(magslab_resource_class_known(fake(2)), 0);
  magslab_resource_class_remove(fake(1));
  EXPECT_EQ(magslab_resource_class_known(fake(1)), 0);
  magslab_resource_class_remove(fake(1));  // unknown: nothing
  magslab_resource_class_add(nullptr);
  EXPECT_EQ(magslab_resource_class_known(nullptr), 0);
}

TEST(ResourceClasses, AtMost128AtOnceAndRemovedSlotsAreReused) {
  for (size_t i = 100; i < 300; ++i) magslab_resource_class_add(fake(i));
  size_t known = 0;
  for (size_t i = 100; i < 300; ++i) known += magslab_resource_class_known(fake(i));
  EXPECT_LE(known, 128u);
  EXPECT_GE(known, 100u);  // (this process's own modules may hold a few slots)
  for (size_t i = 100; i < 300; ++i) magslab_resource_class_remove(fake(i));
  for (size_t i = 100; i < 300; ++i) ASSERT_EQ(magslab_resource_class_known(fake(i)), 0);
  // Every slot is free again: as many as before fit.
  for (size_t i = 300; i < 500; ++i) magslab_resource_class_add(fake(i));
  size_t again = 0;
  for (size_t i = 300; i < 500; ++i) again += magslab_resource_class_known(fake(i));
  EXPECT_EQ(again, known);
  for (size_t i = 300; i < 500; ++i) magslab_resource_class_remove(fake(i));
}

TEST(ResourceClasses, AddingAndRemovingAgainAndAgainDoesNotGrowMemory) {
  for (size_t i = 0; i < 100; ++i) {  // past the 64 handlers
    magslab_resource_class_add(fake(1000 + i));
    magslab_resource_class_remove(fake(1000 + i));
  }
  const size_t before = mallinfo2().uordblks;  // glibc's heap: atexit's entries are there
  for (size_t i = 0; i < 100000; ++i) {
    magslab_resource_class_add(fake(2000 + i % 1000));
    magslab_resource_class_remove(fake(2000 + i % 1000));
  }
  EXPECT_LT(mallinfo2().uordblks, before + 64 * 1024) << "atexit entries piling up";
}

}  // namespace
