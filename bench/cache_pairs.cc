// bench/cache_pairs: N acquire+release pairs of a 64-byte object on an
// ObjectCache, or N new+delete pairs of it (under whatever allocator is
// preloaded), for counting instructions per pair with callgrind
// (docs/cpp.md, "Measured"): the difference of two runs, N and 2N, divided by N.
//
//   cache-pairs cache|new N
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "magslab/magslab.hpp"

namespace {

// The object of bench/cxx's BM_cache: a constructor that fills the 64 bytes.
struct Obj64 {
  Obj64() {
    for (int i = 0; i < 8; ++i) v[i] = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1);
  }
  ~Obj64() { asm volatile("" ::"r"(v[7])); }
  uint64_t v[8];
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "cache") != 0 && std::strcmp(argv[1], "new") != 0)) {
    std::fprintf(stderr, "usage: cache-pairs cache|new N\n");
    return 2;
  }
  const long n = std::atol(argv[2]);
  // One object stays live in either mode, as some always does in a real
  // program: without it each new+delete freed the only live block of its page,
  // an empty-page path for some allocators (bench/fastpath.cc; stop 33).
  if (std::strcmp(argv[1], "cache") == 0) {
    magslab::ObjectCache<Obj64> cache("pairs");
    Obj64* resident = cache.acquire();
    for (long i = 0; i < n; ++i) {
      Obj64* p = cache.acquire();
      asm volatile("" ::"r"(p) : "memory");
      cache.release(p);
    }
    cache.release(resident);
  } else {
    Obj64* resident = new Obj64;
    asm volatile("" ::"r"(resident) : "memory");
    for (long i = 0; i < n; ++i) {
      Obj64* p = new Obj64;
      asm volatile("" ::"r"(p) : "memory");
      delete p;
    }
    delete resident;
  }
  return 0;
}
