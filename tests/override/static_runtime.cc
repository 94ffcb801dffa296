// magslab::override_static in a program whose C++ runtime is linked into the executable
// (-static-libstdc++, or -static with glibc's libc.a too), where dlsym cannot find the runtime:
// a failing new calls the new_handler and throws std::bad_alloc as libstdc++'s own new does, and
// every function of the malloc family and glibc's internal allocations are magslab's.
//
// No std::string or container here on purpose: such a program links no std::__throw_bad_alloc,
// and the override must still throw (stop 51's bug hunt: it aborted with 'no C++ runtime to
// throw'). Prints "OK" and exits 0 when everything held.
#include <magslab/magslab.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <new>

namespace {

int g_failures = 0;
int g_handler_calls = 0;

void check(bool ok, const char* what) {
  printf("%s: %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) ++g_failures;
}

size_t live() {
  struct magslab_stats st;
  magslab_stats(&st);
  return st.live_objects;
}

// Whether make() returns a block that magslab counts as live.
template <class F>
bool from_magslab(F make) {
  size_t before = live();
  void* p = make();
  bool ok = p != nullptr && live() == before + 1;
  free(p);
  return ok && live() == before;
}

void uninstalling_handler() {
  ++g_handler_calls;
  std::set_new_handler(nullptr);
}

void* thread_main(void*) { return malloc(100); }

int compare_ints(const void* a, const void* b) {
  return *static_cast<const int*>(a) - *static_cast<const int*>(b);
}

}  // namespace

int main() {
  volatile size_t huge = SIZE_MAX / 2;

  bool caught = false;
  try {
    char* p = new char[huge];
    printf("new char[2^63] returned %p\n", static_cast<void*>(p));
  } catch (const std::bad_alloc&) {
    caught = true;
  }
  check(caught, "new without a handler throws std::bad_alloc");

  std::set_new_handler(uninstalling_handler);
  caught = false;
  try {
    void* p = ::operator new (huge, std::align_val_t{64});
    printf("aligned new(2^63) returned %p\n", p);
  } catch (const std::bad_alloc&) {
    caught = true;
  }
  check(caught && g_handler_calls == 1, "aligned new calls the handler once, then throws");

  std::set_new_handler(uninstalling_handler);
  char* q = new (std::nothrow) char[huge];
  check(q == nullptr && g_handler_calls == 2, "nothrow new calls the handler, returns nullptr");

  void* mp = nullptr;
  check(from_magslab([] { return malloc(10); }), "malloc");
  check(from_magslab([] { return calloc(3, 10); }), "calloc");
  check(from_magslab([] { return realloc(nullptr, 10); }), "realloc");
  check(from_magslab([] { return memalign(64, 10); }), "memalign");
  check(from_magslab([&] { return posix_memalign(&mp, 64, 10) == 0 ? mp : nullptr; }),
        "posix_memalign");
  check(from_magslab([] { return aligned_alloc(64, 64); }), "aligned_alloc");
  check(from_magslab([] { return valloc(10); }), "valloc");
  check(from_magslab([] { return pvalloc(10); }), "pvalloc");
  check(from_magslab([] { return static_cast<void*>(strdup("glibc inside")); }), "strdup");
  void* r = realloc(malloc(16), 100000);
  check(r != nullptr && malloc_usable_size(r) >= 100000, "realloc to a large block");
  free(r);

  char text[] = "first\nsecond\n";
  FILE* f = fmemopen(text, sizeof text - 1, "r");
  char* line = nullptr;
  size_t cap = 0;
  size_t before = live();
  bool got = f != nullptr && getline(&line, &cap, f) == 6;
  check(got && live() > before && strcmp(line, "first\n") == 0, "getline");
  free(line);
  if (f) fclose(f);

  int v[257];
  for (int i = 0; i < 257; ++i) v[i] = (i * 7919) % 257;
  qsort(v, 257, sizeof v[0], compare_ints);
  check(v[0] == 0 && v[256] == 256, "qsort");
  char wide[64];
  snprintf(wide, sizeof wide, "%ls", L"wide");
  check(strcmp(wide, "wide") == 0, "printf %ls");

  pthread_t t;
  void* from_thread = nullptr;
  check(pthread_create(&t, nullptr, thread_main, nullptr) == 0 &&
            pthread_join(t, &from_thread) == 0 && from_thread != nullptr,
        "a thread's malloc");
  free(from_thread);

  printf("%s\n", g_failures == 0 ? "OK" : "FAILED");
  return g_failures == 0 ? 0 : 1;
}
