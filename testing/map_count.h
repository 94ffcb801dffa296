// testing/map_count.h: using up the process's map count (vm.max_map_count),
// for tests of a correct program near the limit, where an munmap or mprotect
// that would split a mapping fails with ENOMEM (tests/map_count_test.cc,
// tests/check_map_count_test.cc). Run in a child process: the count stays
// used up until the region goes back.
#pragma once

#include <stdio.h>
#include <sys/mman.h>

#include <cstddef>

namespace mstest {

inline constexpr size_t kMapCountPage = 4096;

// Using up a limit of millions of mappings (some distributions raise it so)
// would take millions of mprotect calls: tests skip above this.
inline constexpr long kMostMappings = 4 << 20;

inline long max_map_count() {
  long n = 65530;
  if (FILE* f = fopen("/proc/sys/vm/max_map_count", "r")) {
    if (fscanf(f, "%ld", &n) != 1) n = 65530;
    fclose(f);
  }
  return n;
}

// Uses up the map count: one region of every other page PROT_NONE. Returns
// the region (its size in *bytes) for the program to give back.
inline char* use_up_map_count(size_t* bytes) {
  const size_t pages = 2 * static_cast<size_t>(max_map_count()) + 1000;
  *bytes = pages * kMapCountPage;
  auto* big = static_cast<char*>(
      mmap(nullptr, *bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (big == MAP_FAILED) return nullptr;
  for (size_t i = 0; i < pages; i += 2)
    if (mprotect(big + i * kMapCountPage, kMapCountPage, PROT_NONE) != 0) break;  // ENOMEM
  return big;
}

}  // namespace mstest
