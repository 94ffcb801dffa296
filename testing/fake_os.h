// testing/fake_os.h: a fake OS behind magslab's platform seam
// (platform::set_ops_for_testing) for fault injection. It forwards every call
// to the real OS and counts it, unless told to refuse: map() always (OOM),
// remap() when it would grow a mapping, or map/remap/decommit at random at a
// given rate (the stress harness's fault mode). A refused map or remap
// returns nullptr and sets errno to ENOMEM, as the kernel does, a refused decommit false (magslab
// then zero-fills the pages instead). Never allocates; callable from any
// thread. One fake exists per process (the seam is a plain function table).
//
// Needs lib/ on the include path only in fake_os.cc; users link
// magslab_testing_fake_os.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mstest::fake_os {

struct Counts {
  uint64_t maps = 0, unmaps = 0, decommits = 0, remaps = 0;  // calls seen
  uint64_t refused_maps = 0, refused_remaps = 0, refused_decommits = 0;
};

// Installs the fake (forwarding everything) / puts the real OS back. Both
// clear the counters and every refusal.
void install();
void uninstall();

void refuse_maps(bool on);
// Refuse every map until the next unmap (an address-space limit that the
// allocator's own cached mappings fill: giving one back makes room).
void refuse_maps_until_unmap(bool on);
// Refuse the next n maps (whichever threads make them).
void refuse_next_maps(uint64_t n);
// Refuse every map of more than `bytes` (an address-space limit with that
// much left: an over-map for alignment is refused, a mapping of the size
// itself is not). SIZE_MAX: none.
void refuse_maps_over(size_t bytes);
// Place every map (not map_at) at half of `alignment` (a power of two) past
// an aligned address, with nothing mapped in the half below it: never aligned
// to it, as the kernel may place one. 0: where the OS puts it.
void misplace_maps(size_t alignment);
void refuse_remap_growth(bool on);
// Refuse every remap: growth, shrink and move alike. A refused move to a
// fixed address unmaps that address range first, as the kernel's does.
void refuse_remaps(bool on);
// After that unmapping, map one page at the start of the range, as another
// thread's mmap might in that moment, its first word kSquatterMark;
// squatter() is its address (nullptr: none yet). The page is the test's to
// unmap.
void squat_on_refused_moves(bool on);
// The squatter maps the whole target range instead of its first page (as a
// huge block of the same size, mapped by another thread, might).
void squat_whole_target(bool on);
inline constexpr uint64_t kSquatterMark = 0x5175a77e5175a77eull;
// Refuse moves as the kernel's map count check does, before it unmaps the
// target (which then stays mapped, the caller's).
void refuse_moves_early(bool on);
// The target of the last refused remap (nullptr: not a move, or none yet).
void* refused_target();
void* squatter();
// Refuse this fraction of map, remap and decommit calls (0: none); each
// thread draws from its own stream seeded from `seed`.
void set_fault_rate(double rate, uint64_t seed = 1);
// Stop refusing anything (the counters stay).
void refuse_nothing();

Counts counts();

// Installs the fake for a scope; the real OS comes back on every exit path
// (an assertion returning early from a test included).
class Guard {
 public:
  Guard() { install(); }
  ~Guard() { uninstall(); }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
};

// A test clock behind platform::set_clock_for_testing, for the same scope.
// It starts at start_ns, or later: never before the last reading of an
// earlier fake clock in this process, nor before the real monotonic clock.
class ClockGuard {
 public:
  explicit ClockGuard(uint64_t start_ns = uint64_t{1} << 40);
  ~ClockGuard();
  void advance(uint64_t ns);
  uint64_t now() const;
  ClockGuard(const ClockGuard&) = delete;
  ClockGuard& operator=(const ClockGuard&) = delete;
};

}  // namespace mstest::fake_os
