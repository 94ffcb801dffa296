// Override test: memory crosses dlopen()ed libraries. Two libraries (A and B,
// tests/override/dl_lib.cc) are loaded with dlopen; blocks are allocated in
// one (malloc, new, new[], aligned new, strdup) and freed in the other (free,
// delete, delete[], realloc) and the other way round; a library is closed
// while blocks it allocated are alive and they are freed through the other.
//
// Usage: dlopen_main --expect=glibc|magslab <libA.so> <libB.so>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Lib {
  void* handle = nullptr;
  const char* (*name)() = nullptr;
  long (*table_sum)() = nullptr;
  void* (*malloc_)(std::size_t, int) = nullptr;
  int (*free_)(void*, std::size_t, int) = nullptr;
  void* (*realloc_)(void*, std::size_t) = nullptr;
  char* (*strdup_)(const char*) = nullptr;
  void* (*new_strings)(int, int) = nullptr;
  int (*delete_strings)(void*, int, int) = nullptr;
  void* (*new_aligned)(int) = nullptr;
  int (*delete_aligned)(void*, int) = nullptr;
  void* (*new_array)(std::size_t) = nullptr;
  int (*delete_array)(void*, std::size_t) = nullptr;
};

template <typename F>
void sym(void* h, const char* n, F& f) {
  f = reinterpret_cast<F>(dlsym(h, n));
  if (!f) {
    std::fprintf(stderr, "dlopen_main: missing %s\n", n);
    std::exit(4);
  }
}

Lib open_lib(const char* path) {
  Lib l;
  l.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!l.handle) {
    std::fprintf(stderr, "dlopen_main: dlopen(%s): %s\n", path, dlerror());
    std::exit(4);
  }
  sym(l.handle, "dl_name", l.name);
  sym(l.handle, "dl_table_sum", l.table_sum);
  sym(l.handle, "dl_malloc", l.malloc_);
  sym(l.handle, "dl_free", l.free_);
  sym(l.handle, "dl_realloc", l.realloc_);
  sym(l.handle, "dl_strdup", l.strdup_);
  sym(l.handle, "dl_new_strings", l.new_strings);
  sym(l.handle, "dl_delete_strings", l.delete_strings);
  sym(l.handle, "dl_new_aligned", l.new_aligned);
  sym(l.handle, "dl_delete_aligned", l.delete_aligned);
  sym(l.handle, "dl_new_array", l.new_array);
  sym(l.handle, "dl_delete_array", l.delete_array);
  return l;
}

int g_failures = 0;

// Everything allocated by `from` is freed by `to`.
void cross(const Lib& from, const Lib& to, int rounds) {
  int ok_malloc = 0, ok_strings = 0, ok_aligned = 0, ok_array = 0, ok_realloc = 0, ok_strdup = 0;
  for (int r = 0; r < rounds; ++r) {
    std::size_t n = 1 + static_cast<std::size_t>(r * 7919) % 70000;
    void* p = from.malloc_(n, r);
    ok_malloc += to.free_(p, n, r);

    void* s = from.new_strings(r % 50, r);
    ok_strings += to.delete_strings(s, r % 50, r);

    void* a = from.new_aligned(r);
    ok_aligned += to.delete_aligned(a, r);

    void* arr = from.new_array(n);
    ok_array += to.delete_array(arr, n);

    void* q = from.malloc_(64, 5);
    q = to.realloc_(q, n + 64);  // grows: the first 64 bytes move with it
    ok_realloc += to.free_(q, 64, 5);

    static const char kText[] = "a string duplicated in one library and freed in another";
    char* d = from.strdup_(kText);
    ok_strdup += std::strcmp(d, kText) == 0;
    void* dd = d;
    to.realloc_(dd, 0);  // realloc(p, 0) frees in glibc
  }
  std::printf(
      "%s -> %s: malloc/free %d, new/delete strings %d, aligned new/delete %d, "
      "new[]/delete[] %d, realloc %d, strdup %d (of %d)\n",
      from.name(), to.name(), ok_malloc, ok_strings, ok_aligned, ok_array, ok_realloc, ok_strdup,
      rounds);
  int all = ok_malloc + ok_strings + ok_aligned + ok_array + ok_realloc + ok_strdup;
  if (all != 6 * rounds) ++g_failures;
}

}  // namespace

int main(int argc, char** argv) {
  const char* expect = nullptr;
  const char* paths[2] = {nullptr, nullptr};
  int np = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--expect=", 9) == 0)
      expect = argv[i] + 9;
    else if (np < 2)
      paths[np++] = argv[i];
  }
  bool magslab = dlsym(RTLD_DEFAULT, "magslab_malloc") != nullptr;
  if (!expect || np != 2 || magslab != (std::strcmp(expect, "magslab") == 0)) {
    std::fprintf(stderr,
                 "usage: dlopen_main --expect=glibc|magslab libA.so libB.so "
                 "(magslab_malloc is %s)\n",
                 magslab ? "present" : "absent");
    return 3;
  }

  Lib a = open_lib(paths[0]);
  Lib b = open_lib(paths[1]);
  std::printf("loaded %s (table %ld) and %s (table %ld)\n", a.name(), a.table_sum(), b.name(),
              b.table_sum());
  cross(a, b, 3000);
  cross(b, a, 3000);

  // Close A while blocks it allocated are alive; free them through B.
  const int kKeep = 500;
  void* strings[kKeep];
  void* aligned[kKeep];
  for (int i = 0; i < kKeep; ++i) {
    strings[i] = a.new_strings(i % 40, i);
    aligned[i] = a.new_aligned(i);
  }
  dlclose(a.handle);
  int ok = 0;
  for (int i = 0; i < kKeep; ++i) {
    ok += b.delete_strings(strings[i], i % 40, i);
    ok += b.delete_aligned(aligned[i], i);
  }
  std::printf("A closed; %d of %d of its blocks freed through B\n", ok, 2 * kKeep);
  if (ok != 2 * kKeep) ++g_failures;

  // Reopen A (its constructors allocate again) and go once more both ways.
  a = open_lib(paths[0]);
  std::printf("reopened %s (table %ld)\n", a.name(), a.table_sum());
  cross(a, b, 500);
  cross(b, a, 500);
  dlclose(a.handle);
  dlclose(b.handle);

  std::printf("%s\n", g_failures == 0 ? "OK" : "FAILED");
  return g_failures == 0 ? 0 : 1;
}
