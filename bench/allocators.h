// Allocator adaptors shared by bench/fastpath.cc and bench/throughput.cc.
//
// Each binary is compiled with a subset of BENCH_WITH_{MAGSLAB,TBB,GLIBC,
// MIMALLOC,JEMALLOC}. Debian's libmimalloc.so.2 and libjemalloc.so.2 both export
// the unprefixed malloc/free, so linking either one makes it the process malloc
// (and "glibc" would silently stop meaning glibc). They therefore live in their
// own binaries (<prog>_mi, <prog>_je); the main binary holds magslab, TBB and
// glibc and re-executes the sibling binary when asked for mimalloc or jemalloc.
#ifndef MAGSLAB_BENCH_ALLOCATORS_H
#define MAGSLAB_BENCH_ALLOCATORS_H

#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

#ifdef BENCH_WITH_MAGSLAB
#include <magslab/magslab.h>
#endif
#ifdef BENCH_WITH_TBB
#include <tbb/scalable_allocator.h>
#endif
#ifdef BENCH_WITH_MIMALLOC
#include <mimalloc.h>
#endif
#ifdef BENCH_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

namespace bench {

#ifdef BENCH_WITH_MAGSLAB
struct Magslab {
  static void *alloc(size_t n) { return magslab_malloc(n); }
  static void dealloc(void *p) { magslab_free(p); }
};
#endif
#ifdef BENCH_WITH_TBB
struct Tbb {
  static void *alloc(size_t n) { return scalable_malloc(n); }
  static void dealloc(void *p) { scalable_free(p); }
};
#endif
#ifdef BENCH_WITH_GLIBC
struct Glibc {
  static void *alloc(size_t n) { return malloc(n); }
  static void dealloc(void *p) { free(p); }
};
#endif
#ifdef BENCH_WITH_MIMALLOC
struct Mimalloc {
  static void *alloc(size_t n) { return mi_malloc(n); }
  static void dealloc(void *p) { mi_free(p); }
};
#endif
#ifdef BENCH_WITH_JEMALLOC
// jemalloc's non-standard API (flags 0 = default alignment, no zeroing, tcache).
struct Jemalloc {
  static void *alloc(size_t n) { return mallocx(n, 0); }
  static void dealloc(void *p) { dallocx(p, 0); }
};
// jemalloc through the standard names (this binary links -ljemalloc, so
// malloc/free are jemalloc's).
struct JemallocStd {
  static void *alloc(size_t n) { return malloc(n); }
  static void dealloc(void *p) { free(p); }
};
#endif

// Which binary hosts a given allocator name: "" (main), "_mi" or "_je".
inline const char *binary_suffix(const std::string &name) {
  if (name == "mimalloc") return "_mi";
  if (name == "jemalloc" || name == "jemalloc-std") return "_je";
  return "";
}

// If `name` lives in another binary than this one, exec it with the same
// arguments. Returns only if the allocator belongs here (or exec failed).
inline void forward_if_needed(const char *self_suffix, const char *prog,
                              const std::string &name, char **argv) {
  const char *want = binary_suffix(name);
  if (std::strcmp(want, self_suffix) == 0) return;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  std::string path(exe);
  path = path.substr(0, path.rfind('/') + 1) + prog + want;
  argv[0] = const_cast<char *>(path.c_str());
  execv(path.c_str(), argv);
  std::fprintf(stderr, "cannot exec %s\n", path.c_str());
  std::exit(2);
}

}  // namespace bench

#endif
