// stress/faults.cc: fault mode (--fault-rate P). A fake OS installed through
// magslab's test seam (magslab::platform::set_ops_for_testing) refuses a
// random fraction P of map and remap calls (nullptr, as the kernel's ENOMEM)
// and of decommit calls (false; magslab then zero-fills the pages instead);
// everything else goes to the real OS. Never allocates.
#include <atomic>
#include <cstdint>

#include "harness.h"
#include "platform/platform.h"

namespace stress {

namespace {

namespace platform = magslab::platform;

// A call is refused when its random 32-bit draw is below this; 0: never.
std::atomic<uint64_t> g_threshold{0};
std::atomic<uint64_t> g_map{0}, g_remap{0}, g_decommit{0}, g_calls{0};

// Per-thread stream: the allocator calls the seam from any thread.
constinit thread_local uint64_t t_state = 0;

bool refuse() {
  g_calls.fetch_add(1, std::memory_order_relaxed);
  uint64_t th = g_threshold.load(std::memory_order_relaxed);
  if (th == 0) return false;
  if (t_state == 0) t_state = mix64(g.opt.seed ^ reinterpret_cast<uintptr_t>(&t_state)) | 1;
  t_state += 0x9e3779b97f4a7c15ULL;
  return (mix64(t_state) >> 32) < th;
}

void* fake_map(size_t size) {
  if (refuse()) {
    g_map.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  return platform::os_ops().map(size);
}
void fake_unmap(void* a, size_t n) { platform::os_ops().unmap(a, n); }
bool fake_decommit(void* a, size_t n) {
  if (refuse()) {
    g_decommit.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return platform::os_ops().decommit(a, n);
}
void* fake_remap(void* a, size_t o, size_t n, void* to) {
  if (refuse()) {
    g_remap.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  return platform::os_ops().remap(a, o, n, to);
}
const platform::PlatformOps kFaultOps{fake_map, fake_unmap, fake_decommit, fake_remap};

}  // namespace

void faults_set_rate(double rate) {
  double th = rate * 4294967296.0;
  if (th < 0) th = 0;
  if (th > 4294967296.0) th = 4294967296.0;
  g_threshold.store(static_cast<uint64_t>(th), std::memory_order_relaxed);
}

void faults_install(double rate) {
  faults_set_rate(rate);
  platform::set_ops_for_testing(&kFaultOps);
}

void faults_uninstall() {
  faults_set_rate(0);
  platform::set_ops_for_testing(nullptr);
}

FaultCounts faults_counts() {
  return FaultCounts{g_map.load(), g_remap.load(), g_decommit.load(), g_calls.load()};
}

}  // namespace stress
