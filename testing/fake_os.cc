// testing/fake_os.cc: see fake_os.h.
#include "testing/fake_os.h"

#include <errno.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "platform/platform.h"
#include "testing/rng.h"

namespace mstest::fake_os {

namespace {

namespace platform = magslab::platform;

std::atomic<bool> g_refuse_maps{false}, g_refuse_remap_growth{false}, g_refuse_remaps{false};
std::atomic<bool> g_squat_on_refused_moves{false}, g_squat_whole{false};
std::atomic<void*> g_squatter{nullptr};
std::atomic<bool> g_refuse_moves_early{false};
// refuse_maps_until_unmap: maps are refused while this is set; an unmap clears it.
std::atomic<bool> g_refuse_until_unmap{false};
// refuse_next_maps: how many more maps to refuse.
std::atomic<uint64_t> g_refuse_next{0};
std::atomic<void*> g_refused_target{nullptr};
// refuse_maps_over: maps of more bytes than this are refused.
std::atomic<size_t> g_most_map_bytes{SIZE_MAX};
// misplace_maps: maps start this far (a power of two) past half of it.
std::atomic<size_t> g_misplace{0};
// A call is refused at random when its 32-bit draw is below this; 0: never.
std::atomic<uint64_t> g_threshold{0};
std::atomic<uint64_t> g_seed{1};
std::atomic<uint64_t> g_maps{0}, g_unmaps{0}, g_decommits{0}, g_remaps{0};
std::atomic<uint64_t> g_refused_maps{0}, g_refused_remaps{0}, g_refused_decommits{0};

// Per-thread stream: the allocator calls the seam from any thread.
constinit thread_local uint64_t t_state = 0;

bool random_refusal() {
  uint64_t th = g_threshold.load(std::memory_order_relaxed);
  if (th == 0) return false;
  if (t_state == 0) t_state = mix64(g_seed.load() ^ reinterpret_cast<uintptr_t>(&t_state)) | 1;
  t_state += 0x9e3779b97f4a7c15ULL;
  return (mix64(t_state) >> 32) < th;
}

void bump(std::atomic<uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

// Whether a map of `size` bytes (map or map_at) is refused; counts it.
bool map_refused(size_t size) {
  bump(g_maps);
  uint64_t next = g_refuse_next.load(std::memory_order_relaxed);
  const bool one_of_next =
      next != 0 && g_refuse_next.compare_exchange_strong(next, next - 1, std::memory_order_relaxed);
  if (g_refuse_maps.load(std::memory_order_relaxed) ||
      g_refuse_until_unmap.load(std::memory_order_relaxed) || one_of_next ||
      size > g_most_map_bytes.load(std::memory_order_relaxed) || random_refusal()) {
    bump(g_refused_maps);
    errno = ENOMEM;  // as the kernel's mmap
    return true;
  }
  return false;
}
void* fake_map(size_t size) {
  if (map_refused(size)) return nullptr;
  if (g_misplace.load(std::memory_order_relaxed) != 0) {
    // Over-map by the misplacement and keep the range that starts that far
    // past an address aligned to it, so nothing is mapped right below.
    const size_t off = g_misplace.load(std::memory_order_relaxed);
    auto* raw = static_cast<char*>(platform::os_ops().map(size + 2 * off));
    if (raw == nullptr) return nullptr;
    auto a = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t at = ((a + off - 1) & ~(uintptr_t{off} - 1)) + off / 2;
    if (at != a) platform::os_ops().unmap(raw, at - a);
    const uintptr_t end = a + size + 2 * off;
    if (end != at + size)
      platform::os_ops().unmap(reinterpret_cast<void*>(at + size), end - at - size);
    return reinterpret_cast<void*>(at);
  }
  return platform::os_ops().map(size);
}
void* fake_map_at(void* addr, size_t size) {
  if (map_refused(size)) return nullptr;
  return platform::os_ops().map_at(addr, size);
}
void fake_unmap(void* a, size_t n) {
  bump(g_unmaps);
  g_refuse_until_unmap.store(false, std::memory_order_relaxed);
  platform::os_ops().unmap(a, n);
}
bool fake_decommit(void* a, size_t n) {
  bump(g_decommits);
  if (random_refusal()) {
    bump(g_refused_decommits);
    return false;
  }
  return platform::os_ops().decommit(a, n);
}
void* fake_remap(void* a, size_t o, size_t n, void* to) {
  bump(g_remaps);
  if ((n > o && g_refuse_remap_growth.load(std::memory_order_relaxed)) ||
      g_refuse_remaps.load(std::memory_order_relaxed) || random_refusal()) {
    bump(g_refused_remaps);
    g_refused_target.store(to, std::memory_order_relaxed);
    if (to != nullptr && !g_refuse_moves_early.load(std::memory_order_relaxed)) {
      // A move to a fixed address: the kernel unmaps the target before the
      // checks that can still fail (mremap_to: do_munmap first), so a refused
      // move leaves it unmapped — and another thread may map there at once.
      munmap(to, n);
      if (g_squat_on_refused_moves.load(std::memory_order_relaxed)) {
        const size_t len = g_squat_whole.load(std::memory_order_relaxed) ? n : 4096;
        void* s = mmap(to, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (s != MAP_FAILED) *static_cast<uint64_t*>(s) = kSquatterMark;
        g_squatter.store(s == MAP_FAILED ? nullptr : s, std::memory_order_relaxed);
      }
    }
    errno = ENOMEM;  // as the kernel's mremap
    return nullptr;
  }
  return platform::os_ops().remap(a, o, n, to);
}
const platform::PlatformOps kFakeOps{fake_map, fake_unmap, fake_decommit, fake_remap, fake_map_at};

void reset() {
  refuse_nothing();
  for (auto* c : {&g_maps, &g_unmaps, &g_decommits, &g_remaps, &g_refused_maps, &g_refused_remaps,
                  &g_refused_decommits})
    c->store(0);
}

std::atomic<uint64_t> g_now{0};
uint64_t fake_now() { return g_now.load(); }

}  // namespace

void install() {
  reset();
  platform::set_ops_for_testing(&kFakeOps);
}
void uninstall() {
  refuse_nothing();
  platform::set_ops_for_testing(nullptr);
}

void refuse_maps(bool on) { g_refuse_maps.store(on); }
void refuse_maps_until_unmap(bool on) { g_refuse_until_unmap.store(on); }
void refuse_next_maps(uint64_t n) { g_refuse_next.store(n); }
void refuse_maps_over(size_t bytes) { g_most_map_bytes.store(bytes); }
void misplace_maps(size_t alignment) { g_misplace.store(alignment); }
void refuse_remap_growth(bool on) { g_refuse_remap_growth.store(on); }
void refuse_remaps(bool on) { g_refuse_remaps.store(on); }
void squat_on_refused_moves(bool on) { g_squat_on_refused_moves.store(on); }
void squat_whole_target(bool on) { g_squat_whole.store(on); }
void* squatter() { return g_squatter.load(); }
void refuse_moves_early(bool on) { g_refuse_moves_early.store(on); }
void* refused_target() { return g_refused_target.load(); }
void set_fault_rate(double rate, uint64_t seed) {
  double th = rate * 4294967296.0;
  if (!(th > 0)) th = 0;
  if (th > 4294967296.0) th = 4294967296.0;
  g_seed.store(seed);
  g_threshold.store(static_cast<uint64_t>(th), std::memory_order_relaxed);
}
void refuse_nothing() {
  g_refuse_maps.store(false);
  g_refuse_remap_growth.store(false);
  g_refuse_remaps.store(false);
  g_squat_on_refused_moves.store(false);
  g_squat_whole.store(false);
  g_refuse_moves_early.store(false);
  g_refuse_until_unmap.store(false);
  g_refuse_next.store(0);
  g_most_map_bytes.store(SIZE_MAX);
  g_misplace.store(0);
  g_threshold.store(0);
}

Counts counts() {
  Counts c;
  c.maps = g_maps.load();
  c.unmaps = g_unmaps.load();
  c.decommits = g_decommits.load();
  c.remaps = g_remaps.load();
  c.refused_maps = g_refused_maps.load();
  c.refused_remaps = g_refused_remaps.load();
  c.refused_decommits = g_refused_decommits.load();
  return c;
}

// A monotonic clock never goes back, and magslab keeps what it read (the huge
// cache's stamps and peak windows, decay's): a fake clock starts no earlier
// than the last reading of the fake clock before it, nor than the real one.
// (Two tests of one binary run one after the other in a process when run by
// hand; a second fake clock that started behind the first left the huge
// cache's peak window of the first test in its future, never rolled.)
ClockGuard::ClockGuard(uint64_t start_ns) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t real = uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
  g_now.store(std::max({start_ns, g_now.load(), real}));
  platform::set_clock_for_testing(fake_now);
}
ClockGuard::~ClockGuard() { platform::set_clock_for_testing(nullptr); }
void ClockGuard::advance(uint64_t ns) { g_now.fetch_add(ns); }
uint64_t ClockGuard::now() const { return g_now.load(); }

}  // namespace mstest::fake_os
