// The debug preset's invariant checks (MAGSLAB_CHECK, lib/platform/check.h;
// issue #13 section 4). In every build: the condition is evaluated exactly
// when the checks are compiled in. In the debug preset (kDebugChecks): a
// broken slab equation or page-heap count is caught at the next operation
// that touches it, with one line naming the invariant.
#include <gtest/gtest.h>

#include "base/config.h"
#include "chunks/chunk_map.h"
#include "magslab/magslab.h"
#include "platform/check.h"
#include "small/slab.h"

namespace {

int g_evaluated = 0;
[[maybe_unused]] bool evaluate() {  // unused where MAGSLAB_CHECK compiles to nothing
  ++g_evaluated;
  return true;
}

TEST(DebugChecks, ConditionEvaluatedOnlyWhenCompiledIn) {
  g_evaluated = 0;
  MAGSLAB_CHECK(evaluate(), "never fails");
  EXPECT_EQ(g_evaluated, magslab::kDebugChecks ? 1 : 0);
}

// A slab whose free count disagrees with its bitmap.
void break_slab_equation() {
  void* keep = magslab_malloc(96);  // keeps the slab in use
  void* p = magslab_malloc(96);
  magslab::Slab* s = magslab::pagemap::lookup_slab(reinterpret_cast<uintptr_t>(p));
  if (s == nullptr) std::abort();
  s->nfree += 1;    // the bitmap still says what it said
  magslab_free(p);  // into this thread's magazine
  magslab_trim();   // the magazine goes back to the slab: checked there
  magslab_free(keep);
}

// A chunk whose free-page count disagrees with the heap's total.
void break_page_heap_count() {
  void* big = magslab_aligned_alloc(8192, 200 << 10);  // a page run (a class would be cached)
  magslab::ChunkMeta* c = magslab::pagemap::lookup(reinterpret_cast<uintptr_t>(big)).chunk();
  if (c == nullptr) std::abort();
  c->free_pages -= 1;
  magslab_free(big);  // the run goes back: counts checked
}

TEST(DebugChecksDeathTest, BrokenSlabEquationIsReported) {
  if (!magslab::kDebugChecks)
    GTEST_SKIP() << "invariant checks are compiled in by the debug preset only";
  testing::GTEST_FLAG(death_test_style) = "threadsafe";
  EXPECT_DEATH(break_slab_equation(),
               "^magslab: invariant broken at [^\n]*slab\\.cc:[0-9]+: slab: nfree differs from its "
               "free bitmap\n");
}

TEST(DebugChecksDeathTest, BrokenPageHeapCountIsReported) {
  if (!magslab::kDebugChecks)
    GTEST_SKIP() << "invariant checks are compiled in by the debug preset only";
  testing::GTEST_FLAG(death_test_style) = "threadsafe";
  EXPECT_DEATH(break_page_heap_count(),
               "^magslab: invariant broken at [^\n]*page_heap\\.cc:[0-9]+: page heap: free pages "
               "of the chunks != total\n");
}

}  // namespace
