// api/new_entry: the allocation behind C++'s operator new (override/new_delete.cc).
#pragma once
#include <cstddef>

namespace magslab::api {

// magslab_malloc(n), except that a failure ends in fail(n) (the new_handler
// loop, which returns a block or does not return) instead of nullptr. So the
// operator is one jump here and its fast path is magslab_malloc's, with no
// frame of its own to keep n for a retry (14 instructions per call before).
void* malloc_or(size_t n, void* (*fail)(size_t));

}  // namespace magslab::api
