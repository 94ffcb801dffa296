// bench/real/big.cc: a large translation unit for bench/run --real, compiled
// (g++ -std=c++20 -O1 -c) under every allocator: many standard headers, and
// REAL_INSTANCES (default 2) distinct instantiations of a function template
// that uses the standard containers, algorithms, <regex>, <variant>,
// <functional>, <sstream> and <ranges> on its own record type, so the compiler
// parses, instantiates and optimises a lot of templates. Its object file must
// be the same under every allocator. (It also builds and runs: main prints a
// checksum.)
#include <algorithm>
#include <any>
#include <array>
#include <bitset>
#include <chrono>
#include <complex>
#include <deque>
#include <filesystem>
#include <forward_list>
#include <fstream>
#include <functional>
#include <future>
#include <iomanip>
#include <iostream>
#include <list>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <queue>
#include <random>
#include <ranges>
#include <regex>
#include <set>
#include <shared_mutex>
#include <span>
#include <sstream>
#include <stack>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <valarray>
#include <variant>
#include <vector>

#ifndef REAL_INSTANCES
#define REAL_INSTANCES 2
#endif

namespace real {

template <int N>
struct Rec {
  int id = 0;
  double score = 0;
  std::string name;
  std::vector<int> values;
  auto operator<=>(const Rec&) const = default;
};

template <int N>
using Cell = std::variant<int, double, std::string, Rec<N>>;

template <int N>
std::string describe(const Cell<N>& c) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return v;
        } else if constexpr (std::is_same_v<T, Rec<N>>) {
          return v.name + "#" + std::to_string(v.id);
        } else {
          return std::to_string(v);
        }
      },
      c);
}

template <int N>
uint64_t work(uint64_t seed) {
  std::mt19937_64 rng(seed + N);
  std::map<std::string, Rec<N>> by_name;
  std::unordered_map<int, std::vector<Rec<N>>> by_bucket;
  std::set<Rec<N>> ordered;
  std::deque<Cell<N>> cells;
  std::list<std::pair<int, std::string>> log;
  for (int i = 0; i < 64 + N; ++i) {
    Rec<N> r;
    r.id = i;
    r.score = std::uniform_real_distribution<double>(0, 1)(rng);
    r.name = "rec" + std::to_string(N) + "_" + std::to_string(rng() % 1000);
    r.values.resize(rng() % 16);
    std::iota(r.values.begin(), r.values.end(), i);
    by_name[r.name] = r;
    by_bucket[i % 7].push_back(r);
    ordered.insert(r);
    cells.emplace_back(r);
    cells.emplace_back(static_cast<int>(i * N));
    cells.emplace_back(r.name);
    log.emplace_back(i, r.name);
  }
  std::vector<Rec<N>> all(ordered.begin(), ordered.end());
  std::sort(all.begin(), all.end(),
            [](const Rec<N>& a, const Rec<N>& b) { return a.score < b.score; });
  std::stable_sort(all.begin(), all.end(),
                   [](const Rec<N>& a, const Rec<N>& b) { return a.name < b.name; });
  auto evens = all | std::views::filter([](const Rec<N>& r) { return r.id % 2 == 0; }) |
               std::views::transform([](const Rec<N>& r) { return r.id; });
  uint64_t sum = 0;
  for (int v : evens) sum += static_cast<uint64_t>(v);
  std::ostringstream os;
  for (const auto& c : cells) os << describe<N>(c) << ';';
  const std::string text = os.str();
  static const std::regex re("rec([0-9]+)_([0-9]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it)
    sum += std::stoul((*it)[2].str());
  std::function<uint64_t(uint64_t)> f = [&](uint64_t x) { return x * 31 + by_name.size(); };
  for (const auto& [k, v] : by_bucket) sum = f(sum + static_cast<uint64_t>(k) + v.size());
  std::priority_queue<std::pair<double, int>> pq;
  for (const auto& r : all) pq.emplace(r.score, r.id);
  while (pq.size() > 8) pq.pop();
  std::unordered_set<std::string> names;
  for (const auto& [i, s] : log) names.insert(s.substr(0, s.size() / 2 + i % 3));
  std::optional<Rec<N>> best;
  for (const auto& r : all)
    if (!best || r.score > best->score) best = r;
  return sum + names.size() + pq.top().second + (best ? best->values.size() : 0);
}

template <size_t... I>
uint64_t all_work(uint64_t seed, std::index_sequence<I...>) {
  return (work<static_cast<int>(I)>(seed) + ...);
}

}  // namespace real

int main() {
  std::cout << real::all_work(42, std::make_index_sequence<REAL_INSTANCES>{}) << '\n';
  return 0;
}
