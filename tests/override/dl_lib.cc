// A small shared library for the override dlopen test, built twice (DL_NAME
// "A" and "B"). Every function allocates or frees with a different form, so
// that blocks cross library boundaries in both directions.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#ifndef DL_NAME
#error "define DL_NAME"
#endif

#define DL_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

struct alignas(256) Aligned256 {
  std::uint64_t w[40];
};

// Allocates when the library is loaded, frees when it is unloaded.
std::map<std::string, std::vector<int>>* g_table = [] {
  auto* t = new std::map<std::string, std::vector<int>>;
  for (int i = 0; i < 200; ++i) (*t)[std::string(DL_NAME) + std::to_string(i)].assign(i, i);
  return t;
}();

struct Unload {
  ~Unload() { delete g_table; }
} g_unload;

}  // namespace

DL_EXPORT const char* dl_name() { return DL_NAME; }
DL_EXPORT long dl_table_sum() {
  long s = 0;
  for (const auto& [k, v] : *g_table)
    s += static_cast<long>(k.size()) + static_cast<long>(v.size());
  return s;
}

DL_EXPORT void* dl_malloc(std::size_t n, int seed) {
  auto* p = static_cast<unsigned char*>(std::malloc(n));
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(seed + i);
  return p;
}
DL_EXPORT int dl_free(void* v, std::size_t n, int seed) {
  auto* p = static_cast<unsigned char*>(v);
  int ok = 1;
  for (std::size_t i = 0; i < n; ++i) ok &= p[i] == static_cast<unsigned char>(seed + i);
  std::free(p);
  return ok;
}
DL_EXPORT void* dl_realloc(void* v, std::size_t n) { return std::realloc(v, n); }
DL_EXPORT char* dl_strdup(const char* s) { return strdup(s); }

DL_EXPORT void* dl_new_strings(int n, int seed) {
  auto* v = new std::vector<std::string>;
  for (int i = 0; i < n; ++i)
    v->push_back(
        std::string(static_cast<std::size_t>(i % 300), static_cast<char>('a' + (seed + i) % 26)));
  return v;
}
DL_EXPORT int dl_delete_strings(void* p, int n, int seed) {
  auto* v = static_cast<std::vector<std::string>*>(p);
  int ok = static_cast<int>(v->size()) == n;
  for (int i = 0; ok && i < n; ++i)
    ok = (*v)[i] ==
         std::string(static_cast<std::size_t>(i % 300), static_cast<char>('a' + (seed + i) % 26));
  delete v;
  return ok;
}

DL_EXPORT void* dl_new_aligned(int seed) {
  auto* a = new Aligned256;
  for (int i = 0; i < 40; ++i) a->w[i] = static_cast<std::uint64_t>(seed) * 40 + i;
  return a;
}
DL_EXPORT int dl_delete_aligned(void* p, int seed) {
  auto* a = static_cast<Aligned256*>(p);
  int ok = (reinterpret_cast<std::uintptr_t>(a) & 255) == 0;
  for (int i = 0; i < 40; ++i) ok &= a->w[i] == static_cast<std::uint64_t>(seed) * 40 + i;
  delete a;
  return ok;
}

DL_EXPORT void* dl_new_array(std::size_t n) {
  auto* a = new char[n];
  std::memset(a, 'z', n);
  return a;
}
DL_EXPORT int dl_delete_array(void* p, std::size_t n) {
  auto* a = static_cast<char*>(p);
  int ok = 1;
  for (std::size_t i = 0; i < n; ++i) ok &= a[i] == 'z';
  delete[] a;
  return ok;
}
