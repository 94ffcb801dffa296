// Override test: 16 threads new/delete objects of mixed sizes and hand them to
// each other; every receiver verifies the contents before deleting.
//
// Each thread makes kPerThread objects with a per-thread deterministic random
// sequence and sends each to another thread's mailbox; the transcript (totals
// and order-independent checksums) is the same on any allocator and any
// interleaving. Usage: mt_new_delete --expect=glibc|magslab
#include <dlfcn.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "testing/pattern.h"
#include "testing/rng.h"

namespace {

constexpr int kThreads = 16;
constexpr int kPerThread = 40000;

using mstest::Rng;  // testing/rng.h

// The byte pattern of testing/pattern.h, keyed by the message.
std::uint64_t key_of(std::uint32_t producer, std::uint32_t seq) {
  return mstest::mix64((std::uint64_t{producer} << 32) | seq);
}

struct alignas(64) Aligned64 {
  std::uint64_t words[8];
};

// One object in flight. Its payload is one of several kinds so that every
// operator form crosses threads: new[]/delete[] of bytes, aligned arrays,
// std::string, std::vector.
struct Msg {
  std::uint32_t producer;
  std::uint32_t seq;
  std::uint32_t size;
  std::uint32_t kind;
  unsigned char* bytes = nullptr;
  Aligned64* aligned = nullptr;
  std::string str;
  std::vector<std::uint32_t> vec;
  ~Msg() {
    delete[] bytes;
    delete[] aligned;
  }
};

std::size_t pick_size(Rng& r) {
  std::uint64_t x = r.next();
  switch (x % 16) {
    case 0:
      return 1 + (x >> 8) % 65536;  // up to 64 KiB
    case 1:
      return (x >> 8) % 8 == 0 ? 1 + (x >> 16) % (512 << 10) : 1 + (x >> 8) % 4096;
    default:
      return 1 + (x >> 8) % 256;  // mostly small
  }
}

Msg* make(std::uint32_t producer, std::uint32_t seq, Rng& r) {
  auto* m = new Msg;
  m->producer = producer;
  m->seq = seq;
  m->size = static_cast<std::uint32_t>(pick_size(r));
  m->kind = static_cast<std::uint32_t>(r.next() % 4);
  switch (m->kind) {
    case 0:
      m->bytes = new unsigned char[m->size];
      mstest::fill_pattern(m->bytes, m->size, key_of(producer, seq));
      break;
    case 1: {
      std::size_t n = m->size / 64 + 1;
      m->aligned = new Aligned64[n];
      for (std::size_t i = 0; i < n; ++i)
        for (int w = 0; w < 8; ++w) m->aligned[i].words[w] = producer * 1000003ull + seq + i + w;
      break;
    }
    case 2:
      m->str.resize(m->size);
      mstest::fill_pattern(m->str.data(), m->size, key_of(producer, seq));
      break;
    default:
      m->vec.resize(m->size / 4 + 1);
      for (std::size_t i = 0; i < m->vec.size(); ++i)
        m->vec[i] = producer ^ (seq * 2654435761u) ^ i;
      break;
  }
  return m;
}

bool check(const Msg* m) {
  switch (m->kind) {
    case 0:
      return mstest::check_pattern(m->bytes, m->size, key_of(m->producer, m->seq)) ==
             mstest::kNoMismatch;
    case 1: {
      if ((reinterpret_cast<std::uintptr_t>(m->aligned) & 63) != 0) return false;
      std::size_t n = m->size / 64 + 1;
      for (std::size_t i = 0; i < n; ++i)
        for (int w = 0; w < 8; ++w)
          if (m->aligned[i].words[w] != m->producer * 1000003ull + m->seq + i + w) return false;
      return true;
    }
    case 2:
      if (m->str.size() != m->size) return false;
      return mstest::check_pattern(m->str.data(), m->size, key_of(m->producer, m->seq)) ==
             mstest::kNoMismatch;
    default:
      for (std::size_t i = 0; i < m->vec.size(); ++i)
        if (m->vec[i] != (m->producer ^ (m->seq * 2654435761u) ^ i)) return false;
      return true;
  }
}

struct Mailbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Msg*> items;
  int open_senders = kThreads;
};

Mailbox g_box[kThreads];
std::atomic<std::uint64_t> g_received{0}, g_bad{0}, g_sum_seq{0}, g_sum_size{0};
std::atomic<std::uint64_t> g_kinds[4];

void drain(int self, std::vector<Msg*>& batch) {
  for (Msg* m : batch) {
    if (!check(m)) g_bad.fetch_add(1);
    g_sum_seq.fetch_add(m->seq * 16ull + m->producer, std::memory_order_relaxed);
    g_sum_size.fetch_add(m->size, std::memory_order_relaxed);
    g_kinds[m->kind].fetch_add(1, std::memory_order_relaxed);
    delete m;
  }
  g_received.fetch_add(batch.size());
  batch.clear();
  (void)self;
}

void worker(int self) {
  Rng r{0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(self + 1)};
  std::vector<Msg*> outgoing[kThreads];
  std::vector<Msg*> incoming;
  for (int seq = 0; seq < kPerThread; ++seq) {
    int dest = static_cast<int>(r.next() % kThreads);
    outgoing[dest].push_back(
        make(static_cast<std::uint32_t>(self), static_cast<std::uint32_t>(seq), r));
    if (outgoing[dest].size() >= 64) {
      Mailbox& b = g_box[dest];
      {
        std::lock_guard<std::mutex> g(b.mu);
        b.items.insert(b.items.end(), outgoing[dest].begin(), outgoing[dest].end());
      }
      b.cv.notify_one();
      outgoing[dest].clear();
    }
    if (seq % 128 == 0) {  // receive what others sent meanwhile
      Mailbox& mine = g_box[self];
      {
        std::lock_guard<std::mutex> g(mine.mu);
        incoming.swap(mine.items);
      }
      drain(self, incoming);
    }
  }
  for (int d = 0; d < kThreads; ++d) {
    Mailbox& b = g_box[d];
    {
      std::lock_guard<std::mutex> g(b.mu);
      b.items.insert(b.items.end(), outgoing[d].begin(), outgoing[d].end());
      --b.open_senders;
    }
    b.cv.notify_one();
  }
  Mailbox& mine = g_box[self];
  for (;;) {
    bool last;
    {
      std::unique_lock<std::mutex> g(mine.mu);
      mine.cv.wait(g, [&] { return !mine.items.empty() || mine.open_senders == 0; });
      incoming.swap(mine.items);
      last = mine.open_senders == 0;
    }
    drain(self, incoming);
    if (last) {
      std::lock_guard<std::mutex> g(mine.mu);
      if (mine.items.empty()) break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* expect = nullptr;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--expect=", 9) == 0) expect = argv[i] + 9;
  bool magslab = dlsym(RTLD_DEFAULT, "magslab_malloc") != nullptr;
  if (!expect || magslab != (std::strcmp(expect, "magslab") == 0)) {
    std::fprintf(stderr, "mt_new_delete: expected %s but magslab_malloc is %s\n",
                 expect ? expect : "(no --expect)", magslab ? "present" : "absent");
    return 3;
  }

  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) ts.emplace_back(worker, t);
  for (auto& t : ts) t.join();

  // Expected sums, recomputed from the same per-thread sequences.
  std::uint64_t exp_seq = 0, exp_size = 0;
  for (int t = 0; t < kThreads; ++t) {
    Rng r{0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(t + 1)};
    for (int seq = 0; seq < kPerThread; ++seq) {
      r.next();  // dest
      exp_seq += seq * 16ull + static_cast<std::uint64_t>(t);
      exp_size += pick_size(r);
      r.next();  // kind
    }
  }
  std::printf("threads %d, objects %llu (expected %llu), corrupt %llu\n", kThreads,
              static_cast<unsigned long long>(g_received.load()),
              static_cast<unsigned long long>(kThreads) * kPerThread,
              static_cast<unsigned long long>(g_bad.load()));
  std::printf("checksum seq %llu (expected %llu), bytes %llu (expected %llu)\n",
              static_cast<unsigned long long>(g_sum_seq.load()),
              static_cast<unsigned long long>(exp_seq),
              static_cast<unsigned long long>(g_sum_size.load()),
              static_cast<unsigned long long>(exp_size));
  std::printf("kinds: bytes %llu, aligned %llu, string %llu, vector %llu\n",
              static_cast<unsigned long long>(g_kinds[0].load()),
              static_cast<unsigned long long>(g_kinds[1].load()),
              static_cast<unsigned long long>(g_kinds[2].load()),
              static_cast<unsigned long long>(g_kinds[3].load()));
  bool ok = g_received.load() == static_cast<std::uint64_t>(kThreads) * kPerThread &&
            g_bad.load() == 0 && g_sum_seq.load() == exp_seq && g_sum_size.load() == exp_size;
  std::printf("%s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
