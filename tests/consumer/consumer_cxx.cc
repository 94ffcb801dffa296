// Smoke test of the installed C++ API (magslab/magslab.hpp): an object cache,
// an arena, a container on magslab::allocator and one on a pmr pool.
#include <magslab/magslab.hpp>

#include <cstdio>
#include <map>
#include <memory_resource>
#include <vector>

namespace {
struct Widget {
  Widget() : id(42) {}
  int id;
};
}  // namespace

int main() {
  magslab::ObjectCache<Widget> cache("widgets");
  auto w = cache.acquire_unique();
  if (w->id != 42) return 1;
  magslab::Arena arena(4096);
  if (arena.allocate(100) == nullptr || arena.allocate(0) != nullptr) return 1;
  std::vector<int, magslab::allocator<int>> v(1000, 7);
  magslab::pmr::PoolResource pool;
  std::pmr::map<int, int> m(&pool);
  for (int i = 0; i < 1000; ++i) m[i] = i;
  if (v[999] != 7 || m.size() != 1000 || m.at(500) != 500) return 1;
  std::printf("consumer_cxx: OK\n");
  return 0;
}
