// libFuzzer target (issue #12): the fuzz input is decoded into a sequence of
// operations, 8 bytes each (magslab_model::decode_ops), and run by the same
// interpreter as the property tests (tests/model/heap_model.h) against its
// shadow model, one thread, with every check on: no overlap, alignment,
// usable_size, contents, calloc zeroing, EINVAL, strict reuse, and the live
// counters of magslab_stats after every operation and at the end. Any
// violation prints the failing operation and aborts (a crash for libFuzzer);
// so does any magslab abort, as only valid operations are issued.
// Built by CMakeLists.txt with clang++ -fsanitize=fuzzer,address,undefined;
// see docs/fuzzing.md.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "magslab/magslab.h"
#include "model/heap_model.h"

namespace {

constexpr size_t kMaxOps = 1024;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "heap_fuzz: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace magslab_model;
  static uint64_t seed_base = 1;
  std::vector<Op> ops = decode_ops(data, std::min(size, kMaxOps * kBytesPerOp));

  struct magslab_stats before;
  magslab_stats(&before);
  IntervalSet intervals;
  Config cfg;
  cfg.strict_reuse = true;
  cfg.stats_every_op = true;
  cfg.max_live_bytes = size_t{32} << 20;
  cfg.max_live_blocks = 512;
  Interpreter m(intervals, nullptr, cfg, seed_base);
  seed_base += uint64_t{1} << 24;
  if (!m.run(ops) || !m.free_all()) die(m.error().c_str());

  struct magslab_stats after;
  magslab_stats(&after);
  if (after.live_objects != before.live_objects || after.live_bytes != before.live_bytes)
    die("live_objects/live_bytes not back to their values from before the sequence");
  return 0;
}
