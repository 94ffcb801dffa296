// Which malloc is really active in this process, and peak and current RSS.
//
// bench/micro and bench/macro are built once, against nothing but libc; the
// runner (bench/run) selects the allocator with LD_PRELOAD. At start the
// binary checks that the malloc it will call lives in the library the runner
// asked for and that the allocator's own marker symbol is visible, and exits
// with status 2 otherwise (a mistyped path or a silently ignored LD_PRELOAD
// must not produce a figure under the wrong name).
#ifndef MAGSLAB_BENCH_ACTIVE_ALLOCATOR_H
#define MAGSLAB_BENCH_ACTIVE_ALLOCATOR_H

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace bench {

struct AllocatorSignature {
  const char* name;
  const char* marker;     // symbol only this allocator exports (nullptr: none)
  const char* lib_token;  // substring of the file that must define malloc
};

inline constexpr AllocatorSignature kSignatures[] = {
    {"magslab", "magslab_malloc", "magslab-override"},
    {"magslab-check", "magslab_malloc", "magslab-check"},  // check mode (docs/check.md)
    {"mimalloc", "mi_malloc", "mimalloc"},
    {"tbb", "scalable_malloc", "tbbmalloc_proxy"},
    {"jemalloc", "mallctl", "jemalloc"},
    {"tcmalloc", "tc_malloc", "tcmalloc"},
    {"glibc", nullptr, "libc.so"},
};

// The file that defines the process's malloc (as the dynamic linker binds it).
inline std::string malloc_provider() {
  void* sym = dlsym(RTLD_DEFAULT, "malloc");
  Dl_info info{};
  if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "?";
  return info.dli_fname;
}

// Name of the active allocator, or "unknown".
inline std::string detect_allocator() {
  const std::string provider = malloc_provider();
  for (const auto& sig : kSignatures) {
    if (provider.find(sig.lib_token) == std::string::npos) continue;
    if (sig.marker != nullptr && dlsym(RTLD_DEFAULT, sig.marker) == nullptr) continue;
    if (sig.marker == nullptr) {
      // glibc: none of the others' markers may be present either.
      bool other = false;
      for (const auto& o : kSignatures)
        if (o.marker != nullptr && dlsym(RTLD_DEFAULT, o.marker) != nullptr) other = true;
      if (other) continue;
    }
    return sig.name;
  }
  return "unknown";
}

// Exit 2 unless `expected` is the active allocator. "any" skips the check.
inline void require_allocator(const std::string& expected) {
  if (expected == "any") return;
  const std::string active = detect_allocator();
  if (active != expected) {
    std::fprintf(stderr,
                 "allocator check failed: expected '%s' but malloc comes from %s "
                 "(detected '%s'); set LD_PRELOAD correctly (bench/run does)\n",
                 expected.c_str(), malloc_provider().c_str(), active.c_str());
    std::exit(2);
  }
}

// Peak resident set size of this process, in KiB: VmHWM from /proc/self/status
// (per address space, so it starts afresh at execve; getrusage's ru_maxrss
// keeps the parent's peak across fork+exec, e.g. python's, and is only the
// fallback).
inline long peak_rss_kib() {
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long kib = -1;
    while (std::fgets(line, sizeof line, f) != nullptr)
      if (std::strncmp(line, "VmHWM:", 6) == 0) kib = std::strtol(line + 6, nullptr, 10);
    std::fclose(f);
    if (kib > 0) return kib;
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Current resident set size of this process, in KiB: VmRSS from
// /proc/self/status, read with open/read into a stack buffer, so that sampling
// it calls no allocator function (bench/macro's burst samples an idle process:
// a malloc there could run the allocator's deferred work). -1 if unreadable.
inline long current_rss_kib() {
  char buf[8192];
  const int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = 0;
  for (ssize_t r; len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0;)
    len += static_cast<size_t>(r);
  close(fd);
  buf[len] = '\0';
  const char* line = std::strstr(buf, "\nVmRSS:");
  return line != nullptr ? std::strtol(line + 7, nullptr, 10) : -1;
}

}  // namespace bench

#endif
