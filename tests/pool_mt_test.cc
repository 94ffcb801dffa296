// magslab::pmr::PoolResource, magslab::pmr::resource() and magslab::allocator<T>
// across threads (runs under the tsan preset): node containers on each thread
// over one resource, and nodes allocated on one thread and freed on another,
// verified element by element; the pool's release at the end leaves the heap
// as it was.
#include <gtest/gtest.h>

#include <atomic>
#include <list>
#include <map>
#include <memory_resource>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "magslab/magslab.h"
#include "magslab/magslab.hpp"

namespace {

void churn_map(std::pmr::memory_resource* r, int id) {
  std::pmr::map<int, std::pmr::string> m(r);
  for (int round = 0; round < 5; ++round) {
    for (int k = 0; k < 3000; ++k)
      m.emplace(k, std::pmr::string(std::to_string(k * id).c_str(), r));
    for (int k = 0; k < 3000; k += 2) m.erase(k);
    int expect = 1;
    for (const auto& [k, v] : m) {
      ASSERT_EQ(k, expect);
      ASSERT_EQ(std::string(v), std::to_string(k * id));
      expect += 2;
    }
    m.clear();
  }
  std::pmr::unordered_map<int, int> u(r);
  for (int k = 0; k < 5000; ++k) u[k] = k * id;
  for (int k = 0; k < 5000; ++k) ASSERT_EQ(u.at(k), k * id);
}

// Each thread its own containers over one shared resource.
TEST(PoolMt, SharedResourcePerThreadContainers) {
  // The first cache ever made allocates the id -> cache table, which stays.
  magslab_cache_destroy(magslab_cache_create("warm-up", 8, 8, nullptr, nullptr, nullptr));
  struct magslab_stats before;
  magslab_stats(&before);
  {
    magslab::pmr::PoolResource pool;
    for (std::pmr::memory_resource* r :
         {static_cast<std::pmr::memory_resource*>(&pool), magslab::pmr::resource()}) {
      std::vector<std::thread> ts;
      for (int i = 1; i <= 4; ++i) ts.emplace_back([r, i] { churn_map(r, i); });
      for (auto& t : ts) t.join();
    }
  }
  struct magslab_stats after;
  magslab_stats(&after);
  EXPECT_EQ(after.live_objects, before.live_objects);
}

// Producers build lists of nodes; consumers, other threads, check and destroy
// them: every node is freed by a thread other than the one that allocated it.
TEST(PoolMt, NodesFreedOnAnotherThread) {
  magslab::pmr::PoolResource pool;
  using List = std::pmr::list<std::pmr::string>;
  std::mutex m;
  std::vector<List*> handoff;
  std::atomic<int> producers_done{0};
  constexpr int kProducers = 2;
  constexpr int kListsEach = 300;
  std::atomic<long> checked{0};
  std::vector<std::thread> ts;
  for (int p = 0; p < kProducers; ++p) {
    ts.emplace_back([&, p] {
      for (int l = 0; l < kListsEach; ++l) {
        auto* list = new List(&pool);
        for (int k = 0; k < 50; ++k)
          list->emplace_back(("node " + std::to_string(p) + "/" + std::to_string(l) + "/" +
                              std::to_string(k) + std::string(k, '.'))
                                 .c_str());
        std::lock_guard<std::mutex> g(m);
        handoff.push_back(list);
      }
      producers_done.fetch_add(1);
    });
  }
  for (int c = 0; c < 2; ++c) {
    ts.emplace_back([&] {
      for (;;) {
        List* list = nullptr;
        {
          std::lock_guard<std::mutex> g(m);
          if (!handoff.empty()) {
            list = handoff.back();
            handoff.pop_back();
          }
        }
        if (list == nullptr) {
          if (producers_done.load() == kProducers) {
            std::lock_guard<std::mutex> g(m);
            if (handoff.empty()) return;
          }
          std::this_thread::yield();
          continue;
        }
        int k = 0;
        for (const auto& s : *list) {
          std::string want_suffix = "/" + std::to_string(k) + std::string(k, '.');
          ASSERT_EQ(std::string(s).substr(s.size() - want_suffix.size()), want_suffix);
          ++k;
        }
        ASSERT_EQ(k, 50);
        delete list;
        checked.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(checked.load(), long{kProducers} * kListsEach);
}

// std::map on magslab::allocator on every thread, and maps moved to another
// thread to be checked and destroyed there.
TEST(AllocatorMt, MapsBuiltHereDestroyedThere) {
  using Map = std::map<int, std::string, std::less<int>,
                       magslab::allocator<std::pair<const int, std::string>>>;
  constexpr int kThreads = 4;
  std::vector<Map> built(kThreads);
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) {
    ts.emplace_back([&built, i] {
      Map& m = built[i];
      for (int k = 0; k < 4000; ++k) m.emplace(k, std::to_string(k * (i + 1)) + "-node");
      for (int k = 0; k < 4000; k += 4) m.erase(k);
    });
  }
  for (auto& t : ts) t.join();
  ts.clear();
  // Each map is checked and destroyed by the next thread over.
  for (int i = 0; i < kThreads; ++i) {
    ts.emplace_back([&built, i] {
      Map m = std::move(built[(i + 1) % kThreads]);
      int owner = (i + 1) % kThreads;
      size_t n = 0;
      for (const auto& [k, v] : m) {
        ASSERT_NE(k % 4, 0);
        ASSERT_EQ(v, std::to_string(k * (owner + 1)) + "-node");
        ++n;
      }
      ASSERT_EQ(n, 3000u);
    });
  }
  for (auto& t : ts) t.join();
}

}  // namespace
