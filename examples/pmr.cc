// pmr.cc: the std::pmr resources — magslab::pmr::resource() (the heap),
// magslab::pmr::ArenaResource (monotonic: release() drops everything at once)
// and magslab::pmr::PoolResource (node sizes in per-thread magazines, shared by
// threads; destruction frees everything it handed out).
//
// Build: c++ -std=c++20 pmr.cc -lmagslab -pthread
#include <magslab/magslab.hpp>

#include <cstdio>
#include <map>
#include <memory_resource>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

int main() {
  // The heap as a memory_resource.
  std::pmr::vector<std::pmr::string> names(magslab::pmr::resource());
  names.emplace_back("magazine");
  names.emplace_back("depot");

  // A monotonic arena per batch of work.
  magslab::pmr::ArenaResource scratch;
  long sum = 0;
  for (int batch = 0; batch < 3; ++batch) {
    {
      std::pmr::unordered_map<int, int> counts(&scratch);
      for (int i = 0; i < 10000; ++i) ++counts[i % 97];
      sum += static_cast<long>(counts.size());
    }
    scratch.release();  // all of the batch's memory at once
  }

  // A pool shared by threads, each with its own map.
  magslab::pmr::PoolResource pool;
  std::vector<std::thread> ts;
  std::vector<size_t> sizes(4);
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&pool, &sizes, t] {
      std::pmr::map<int, std::pmr::string> m(&pool);
      for (int i = 0; i < 5000; ++i) m.emplace(i, std::pmr::string("value", &pool));
      for (int i = 0; i < 5000; i += 2) m.erase(i);
      sizes[t] = m.size();
    });
  for (auto& th : ts) th.join();
  std::printf("names %zu, batch keys %ld, map sizes %zu %zu %zu %zu\n", names.size(), sum, sizes[0],
              sizes[1], sizes[2], sizes[3]);
  return names.size() == 2 && sum == 3 * 97 && sizes[0] == 2500 && sizes[3] == 2500 ? 0 : 1;
}
