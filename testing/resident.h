// testing/resident.h: what the kernel has resident, for the tests that check
// memory going back to the OS — the process's size and RSS (/proc/self/statm)
// and which pages of a range are in core (mincore).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

namespace mstest {

// /proc/self/statm in bytes: the address space (VmSize) and its resident part.
// Zeros if it cannot be read.
struct Statm {
  size_t size = 0, resident = 0;
};
inline Statm statm() {
  Statm m;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return m;
  unsigned long pages = 0, resident = 0;
  if (std::fscanf(f, "%lu %lu", &pages, &resident) == 2) {
    const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    m.size = pages * page;
    m.resident = resident * page;
  }
  std::fclose(f);
  return m;
}
inline size_t rss_bytes() { return statm().resident; }

// Transparent huge pages set to "always": the kernel may back a 2 MiB region
// at its first touch, so a test of a few pages' RSS cannot hold.
inline bool thp_always() {
  FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f == nullptr) return false;
  char mode[128] = {};
  const bool always =
      std::fgets(mode, sizeof mode, f) != nullptr && std::strstr(mode, "[always]") != nullptr;
  std::fclose(f);
  return always;
}

// Whether the 4 KiB page at `page` (page-aligned) is resident; nullopt if it
// is not mapped at all (mincore fails with ENOMEM: a chunk given back whole).
inline std::optional<bool> page_resident(uintptr_t page) {
  unsigned char v = 0;
  if (mincore(reinterpret_cast<void*>(page), 4096, &v) != 0) return std::nullopt;
  return (v & 1) != 0;
}

// Residency of each of the n 4 KiB pages from `page` (page-aligned); empty if
// any of them is not mapped.
inline std::vector<bool> pages_resident(uintptr_t page, size_t n) {
  std::vector<unsigned char> v(n);
  if (mincore(reinterpret_cast<void*>(page), n * 4096, v.data()) != 0) return {};
  std::vector<bool> r(n);
  for (size_t k = 0; k < n; ++k) r[k] = (v[k] & 1) != 0;
  return r;
}

}  // namespace mstest
