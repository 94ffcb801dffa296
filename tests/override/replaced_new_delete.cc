// Override test: a program that replaces only the basic operator new and
// delete forms — operator new(size_t), operator delete(void*) and their
// align_val_t twins — from an arena of its own. The standard's other forms
// (array, nothrow, sized, and their aligned kinds) call these by default
// ([new.delete]: "Default behavior: calls operator new(size)", "calls
// operator delete(ptr)"), as libstdc++'s do; under the override they must as
// well, or a block of the program's arena reaches magslab's free (an invalid
// free: the process aborted) and a block of magslab's the program's delete.
//
// stdout is a deterministic transcript: for each form called, how many times
// each replaced operator ran. Usage: replaced_new_delete --expect=glibc|magslab.
#include <dlfcn.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kArena = 64 << 20;
char* g_arena = nullptr;
std::size_t g_used = 0;
bool g_fail_next = false;  // the next replaced new throws std::bad_alloc
// Calls of the replaced operators: new, aligned new, delete, aligned delete.
long g_new = 0, g_new_al = 0, g_del = 0, g_del_al = 0;

void* arena_alloc(std::size_t n, std::size_t align) {
  if (g_arena == nullptr) {
    void* m = mmap(nullptr, kArena, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) std::abort();
    g_arena = static_cast<char*>(m);
  }
  if (g_fail_next) {
    g_fail_next = false;
    throw std::bad_alloc();
  }
  std::size_t at = (g_used + align - 1) & ~(align - 1);
  if (at + n + 1 > kArena) throw std::bad_alloc();
  g_used = at + n + 1;
  return g_arena + at;
}

void arena_free(void* p) {
  if (p == nullptr) return;
  char* c = static_cast<char*>(p);
  if (c < g_arena || c >= g_arena + kArena) {
    std::printf("FAIL: the replaced delete got a block its new did not make\n");
    std::fflush(stdout);
    std::abort();
  }
}

}  // namespace

// The point: no sized (nor array, nor nothrow) form is replaced.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wsized-deallocation"
#endif
void* operator new(std::size_t n) {
  ++g_new;
  return arena_alloc(n, 16);
}
void* operator new(std::size_t n, std::align_val_t a) {
  ++g_new_al;
  return arena_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
  ++g_del;
  arena_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  ++g_del_al;
  arena_free(p);
}

namespace {

template <typename T>
T opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}

bool from_arena(const void* p) {
  auto* c = static_cast<const char*>(p);
  return p == nullptr || (c >= g_arena && c < g_arena + kArena);
}

// ours: the block (if any) came from the arena; tested before it is deleted.
void report(const char* what, bool ours) {
  static long n0, na0, d0, da0;
  std::printf("%-36s new %ld, aligned new %ld, delete %ld, aligned delete %ld%s\n", what,
              g_new - n0, g_new_al - na0, g_del - d0, g_del_al - da0,
              ours ? "" : " (block not from the replaced new)");
  n0 = g_new, na0 = g_new_al, d0 = g_del, da0 = g_del_al;
}

struct Obj {
  long a[5];
};
struct alignas(64) Wide {
  char c[100];
};

}  // namespace

int main(int argc, char** argv) {
  bool expect_magslab = argc > 1 && std::strcmp(argv[1], "--expect=magslab") == 0;
  if ((dlsym(RTLD_DEFAULT, "magslab_malloc") != nullptr) != expect_magslab) {
    std::fprintf(stderr, "magslab %s, expected otherwise\n", expect_magslab ? "absent" : "loaded");
    return 2;
  }
  std::size_t n = opaque(std::size_t{40});
  std::align_val_t al = opaque(std::align_val_t{64});
  void* p;
  bool ours;
  report("(start)", true);

  p = ::operator new[](n);
  report("operator new[](n)", from_arena(p));
  ::operator delete[](p);
  report("operator delete[](p)", true);
  p = ::operator new(n, std::nothrow);
  report("operator new(n, nothrow)", from_arena(p));
  ::operator delete(p, std::nothrow);
  report("operator delete(p, nothrow)", true);
  p = ::operator new[](n, std::nothrow);
  report("operator new[](n, nothrow)", from_arena(p));
  ::operator delete[](p, std::nothrow);
  report("operator delete[](p, nothrow)", true);
  p = ::operator new(n);
  report("operator new(n)", from_arena(p));
  ::operator delete(p, n);
  report("operator delete(p, n)", true);
  p = ::operator new[](n);
  ours = from_arena(p);
  ::operator delete[](p, n);
  report("new[](n), delete[](p, n)", ours);

  p = ::operator new[](n, al);
  report("operator new[](n, al)", from_arena(p));
  ::operator delete[](p, al);
  report("operator delete[](p, al)", true);
  p = ::operator new(n, al, std::nothrow);
  report("operator new(n, al, nothrow)", from_arena(p));
  ::operator delete(p, al, std::nothrow);
  report("operator delete(p, al, nothrow)", true);
  p = ::operator new[](n, al, std::nothrow);
  report("operator new[](n, al, nothrow)", from_arena(p));
  ::operator delete[](p, al, std::nothrow);
  report("operator delete[](p, al, nothrow)", true);
  p = ::operator new(n, al);
  ours = from_arena(p);
  ::operator delete(p, n, al);
  report("new(n, al), delete(p, n, al)", ours);
  p = ::operator new[](n, al);
  ours = from_arena(p);
  ::operator delete[](p, n, al);
  report("new[](n, al), delete[](p, n, al)", ours);

  // The forms the compiler picks: sized delete of a complete type, arrays.
  Obj* o = new Obj;
  ours = from_arena(o);
  delete o;
  report("new Obj; delete (sized)", ours);
  Obj* oa = new Obj[opaque(3)];
  ours = from_arena(oa);
  delete[] oa;
  report("new Obj[3]; delete[]", ours);
  Wide* w = new Wide;
  ours = from_arena(w);
  delete w;
  report("new Wide (alignas 64); delete", ours);
  Wide* wa = new Wide[opaque(2)];
  ours = from_arena(wa);
  delete[] wa;
  report("new Wide[2]; delete[]", ours);
  Obj* on = new (std::nothrow) Obj;
  ours = from_arena(on);
  delete on;
  report("new (nothrow) Obj; delete", ours);
  {
    std::vector<long> v(opaque(100));
    std::string s(opaque(std::size_t{200}), 'x');
    auto sp = std::make_shared<Obj>();
  }
  report("vector, string, make_shared", true);

  // A nothrow new whose replaced new throws returns nullptr.
  g_fail_next = true;
  p = ::operator new(n, std::nothrow);
  report(p == nullptr ? "nothrow new, new throws: nullptr" : "nothrow new, new throws: BAD", true);
  g_fail_next = true;
  p = ::operator new[](n, al, std::nothrow);
  report(p == nullptr ? "nothrow new[] al, throws: nullptr" : "nothrow new[] al, throws: BAD",
         true);
  std::printf("done\n");
  return 0;
}
