// arena.cc: bump allocation with reset (magslab::Arena) for per-request scratch
// memory, and magslab::ConcurrentArena shared by threads. Each "request" parses
// words into arena memory; reset() frees them all at once and the next request
// reuses the same pages.
//
// Build: c++ -std=c++20 arena.cc -lmagslab -pthread
#include <magslab/magslab.hpp>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

int main() {
  magslab::Arena arena(64 * 1024, 64 * 1024);  // 64 KiB, grows by 64 KiB
  const char* text = "the quick brown fox jumps over the lazy dog";
  void* first_word = nullptr;
  for (int request = 0; request < 1000; ++request) {
    size_t words = 0;
    for (const char* p = text; *p != '\0';) {
      size_t n = std::strcspn(p, " ");
      char* w = static_cast<char*>(arena.allocate(n + 1, 1));
      if (w == nullptr) return 1;
      std::memcpy(w, p, n);
      w[n] = '\0';
      if (words++ == 0 && request == 0) first_word = w;
      if (words == 1 && w != first_word) return 1;  // reset reuses the same memory
      p += n + (p[n] == ' ');
    }
    if (request == 999)
      std::printf("request %d: %zu words, %zu bytes used\n", request, words, arena.used());
    arena.reset();
  }
  // Edge behaviour: never undefined.
  if (arena.allocate(0) != nullptr || arena.allocate(8, 3) != nullptr ||
      arena.allocate(SIZE_MAX) != nullptr)
    return 1;

  magslab::ConcurrentArena shared(1 << 20);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&shared, t] {
      for (int i = 0; i < 1000; ++i) {
        auto* p = static_cast<int*>(shared.allocate(sizeof(int) * 8, 32));
        if (p != nullptr) p[0] = t;
      }
    });
  for (auto& th : ts) th.join();
  std::printf("concurrent arena: %zu of %zu bytes used\n", shared.used(), shared.capacity());
  // Each 32-byte request at alignment 32 reserves at most 48 bytes (16 of padding).
  return shared.used() >= 4 * 1000 * 32 && shared.used() <= 4 * 1000 * 48 ? 0 : 1;
}
