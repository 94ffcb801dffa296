// allocator.cc: standard containers on magslab::allocator<T> — a stateless
// allocator over the magslab heap (per-thread magazines), over-aligned types
// honoured.
//
// Build: c++ -std=c++20 allocator.cc -lmagslab
#include <magslab/magslab.hpp>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

struct alignas(64) CacheLine {
  uint64_t counter[8];
};

int main() {
  std::map<std::string, int, std::less<>, magslab::allocator<std::pair<const std::string, int>>>
      ages{{"ada", 36}, {"alan", 41}, {"grace", 85}};
  ages["edsger"] = 72;
  for (const auto& [name, age] : ages) std::printf("%s %d\n", name.c_str(), age);

  std::vector<CacheLine, magslab::allocator<CacheLine>> lines(100);
  bool aligned = reinterpret_cast<uintptr_t>(lines.data()) % 64 == 0;
  std::printf("64-byte aligned: %s\n", aligned ? "yes" : "no");
  return aligned && ages.size() == 4 && ages.at("grace") == 85 ? 0 : 1;
}
