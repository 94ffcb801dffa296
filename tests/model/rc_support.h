// tests/model/rc_support.h: RapidCheck generators of operation sequences for
// the heap model (heap_model.h), and a runner that checks a property inside a
// GoogleTest test with a per-build number of cases.
#pragma once

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "heap_model.h"

namespace magslab_model {

// One operation. Sizes are mostly small: ~60% <= 256 B, ~20% <= 4 KiB, ~10%
// <= 64 KiB, ~6% large (page runs), ~4% huge (mappings of their own). Every
// field shrinks towards 0 (malloc, tiny sizes, alignment 1, the first block).
inline rc::Gen<Op> gen_op(bool with_handoff) {
  rc::Gen<unsigned> kind =
      with_handoff ? rc::gen::weightedElement<unsigned>({{20, unsigned(Kind::Malloc)},
                                                         {6, unsigned(Kind::Calloc)},
                                                         {14, unsigned(Kind::Realloc)},
                                                         {6, unsigned(Kind::AlignedAlloc)},
                                                         {4, unsigned(Kind::PosixMemalign)},
                                                         {14, unsigned(Kind::Free)},
                                                         {6, unsigned(Kind::FreeSized)},
                                                         {3, unsigned(Kind::UsableSize)},
                                                         {4, unsigned(Kind::Reuse)},
                                                         {8, unsigned(Kind::Give)},
                                                         {8, unsigned(Kind::Take)}})
                   : rc::gen::weightedElement<unsigned>({{20, unsigned(Kind::Malloc)},
                                                         {6, unsigned(Kind::Calloc)},
                                                         {16, unsigned(Kind::Realloc)},
                                                         {7, unsigned(Kind::AlignedAlloc)},
                                                         {5, unsigned(Kind::PosixMemalign)},
                                                         {16, unsigned(Kind::Free)},
                                                         {8, unsigned(Kind::FreeSized)},
                                                         {4, unsigned(Kind::UsableSize)},
                                                         {6, unsigned(Kind::Reuse)}});
  rc::Gen<unsigned> tier = rc::gen::weightedElement<unsigned>(
      {{30, 0}, {15, 1}, {15, 2}, {12, 3}, {8, 4}, {10, 5}, {6, 6}, {4, 7}});
  rc::Gen<uint32_t> align_sel = rc::gen::weightedOneOf<uint32_t>(
      {{4, rc::gen::inRange<uint32_t>(0, 17)}, {1, rc::gen::inRange<uint32_t>(17, kNumAlignSel)}});
  return rc::gen::map(
      rc::gen::tuple(kind, tier, rc::gen::inRange<uint32_t>(0, 1u << 24), align_sel,
                     rc::gen::inRange<uint32_t>(0, 1u << 16),
                     rc::gen::inRange<uint32_t>(0, 1u << 16)),
      [](const std::tuple<unsigned, unsigned, uint32_t, uint32_t, uint32_t, uint32_t>& t) {
        return make_op(std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t),
                       std::get<4>(t), std::get<5>(t));
      });
}

// Checks `testable` as RapidCheck property in the current GoogleTest test.
// RC_PARAMS (e.g. "seed=123" or "max_success=1000") is honoured; max_success
// and max_size default to the values given here, chosen per build.
template <typename Testable>
void check_property(Testable&& testable, int max_success, int max_size) {
  using namespace rc::detail;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  TestMetadata metadata;
  metadata.id = std::string(info->test_suite_name()) + "/" + info->name();
  metadata.description = info->name();
  TestParams params = configuration().testParams;
  const char* env = std::getenv("RC_PARAMS");
  if (env == nullptr || std::strstr(env, "max_success") == nullptr) params.maxSuccess = max_success;
  if (env == nullptr || std::strstr(env, "max_size") == nullptr) params.maxSize = max_size;
  const auto result = checkProperty(toProperty(std::forward<Testable>(testable)), metadata, params);
  std::ostringstream ss;
  printResultMessage(result, ss);
  if (result.template is<SuccessResult>()) {
    std::cout << ss.str() << std::endl;
  } else {
    FAIL() << ss.str() << "\n(reproduce: RC_PARAMS=\"seed=" << params.seed
           << "\"; max_success=" << params.maxSuccess << ")";
  }
}

}  // namespace magslab_model
