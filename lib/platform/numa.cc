// platform/numa: topology from /sys, getcpu, mbind — and the test seam over them.
#include "platform/numa.h"

#include <fcntl.h>
#include <linux/mempolicy.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/format.h"
#include "platform/options.h"
#include "platform/platform.h"

namespace magslab::numa {

constinit std::atomic<unsigned> g_nodes{1};

namespace {

// The highest number in a kernel cpulist/nodelist ("0", "0-1", "0,2-3\n"),
// plus one; 1 when unreadable or empty.
unsigned os_node_count() {
  // The system calls themselves: glibc's open, read and close are
  // cancellation points (platform.cc, write_fd).
  int fd = static_cast<int>(
      syscall(SYS_openat, AT_FDCWD, "/sys/devices/system/node/online", O_RDONLY | O_CLOEXEC));
  if (fd < 0) return 1;  // no sysfs (a container without it): one node
  char buf[256];
  ssize_t n = syscall(SYS_read, fd, buf, sizeof buf - 1);
  syscall(SYS_close, fd);
  if (n <= 0) return 1;
  unsigned highest = 0, cur = 0;
  bool any = false;
  for (ssize_t i = 0; i < n; ++i) {
    char c = buf[i];
    if (c >= '0' && c <= '9') {
      cur = cur * 10 + static_cast<unsigned>(c - '0');
      if (cur > 4096) return 1;  // nonsense: do not trust it
      any = true;
    } else {
      if (any && cur > highest) highest = cur;
      cur = 0;
    }
  }
  if (any && cur > highest) highest = cur;
  return highest + 1;
}

unsigned os_cpu_node() {
  unsigned cpu = 0, node = 0;
  // glibc's getcpu goes through the vDSO: no system call.
  if (getcpu(&cpu, &node) != 0) return 0;
  return node;
}

bool os_bind(void* addr, size_t size, unsigned node) {
  unsigned long mask = 1ul << node;  // node < kMaxNodes <= 64
  // MPOL_PREFERRED, not MPOL_BIND: a full node spills to another one instead
  // of failing the fault (SIGBUS) or waking the OOM killer. maxnode counts the
  // mask's bits (the kernel reads maxnode - 1 of them).
  return syscall(SYS_mbind, addr, size, MPOL_PREFERRED, &mask, sizeof mask * 8 + 1, 0) == 0;
}

constexpr NumaOps kOsOps{os_node_count, os_cpu_node, os_bind};

// acquire/release: a test installs its ops before the calls that must see them.
std::atomic<const NumaOps*> g_ops{&kOsOps};

const NumaOps& ops() { return *g_ops.load(std::memory_order_acquire); }

enum : uint64_t { kOff = 0, kOn = 1, kAuto = 2 };  // MAGSLAB_NUMA (opt::kNuma choices)

// Raise g_nodes to the topology's count (capped), as the option allows.
// Returns the machine's node count.
unsigned latch() {
  unsigned machine = ops().node_count();
  if (opt::get(opt::kNuma) == kOff) return machine;
  unsigned want = machine < kMaxNodes ? machine : kMaxNodes;
  if (want < 1) want = 1;
  // relaxed: see g_nodes; the max is kept by the CAS loop (never decreases).
  unsigned cur = g_nodes.load(std::memory_order_relaxed);
  while (cur < want && !g_nodes.compare_exchange_weak(cur, want, std::memory_order_relaxed)) {
  }
  return machine;
}

}  // namespace

const NumaOps& os_ops() { return kOsOps; }

const NumaOps* set_ops_for_testing(const NumaOps* o) {
  const NumaOps* old = g_ops.exchange(o != nullptr ? o : &kOsOps, std::memory_order_acq_rel);
  latch();
  return old;
}

void init() {
  unsigned machine = latch();
  if (opt::get(opt::kNuma) == kOn && machine <= 1) {
    LineBuf l;
    l.str("magslab: numa=on, but this machine has one NUMA node: one pool").end();
    platform::write_stderr(l.data(), l.size());
  }
}

unsigned current_node() {
  unsigned n = nodes();
  if (n == 1) return 0;
  unsigned node = ops().cpu_node();
  return node < n ? node : node % n;
}

bool bind(void* addr, size_t size, unsigned node) {
  if (nodes() == 1) return true;
  return ops().bind(addr, size, node);
}

}  // namespace magslab::numa
