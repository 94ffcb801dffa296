// small/depot: per size class, a lock-free stack of full magazines and one of empty
// magazines (Bonwick & Adams 2001). Threads trade whole magazines here; no
// thread ever blocks another. Magazines live in the metadata arena (type-stable).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "ds/tagged_stack.h"
#include "small/magazine.h"
#include "small/size_classes.h"

namespace magslab {

namespace depot {

// A full (non-empty) magazine, or nullptr.
Magazine* pop_full(unsigned cls);
// Take m (count > 0). false if the depot already holds its limit for the class;
// the caller then flushes m to the slabs.
bool push_full(unsigned cls, Magazine* m);
// An empty magazine: from the depot, else newly made. nullptr when out of memory.
Magazine* get_empty(unsigned cls);
void push_empty(unsigned cls, Magazine* m);

// Objects held in full magazines of the depot (exact at quiescence).
size_t cached_objects(unsigned cls);
// Flush every full magazine of every class to the slabs; returns objects moved.
size_t drain();
// Decay (small/decay.h), once per tick: per class, the fewest full magazines
// the depot held since the last call were not needed by anyone during that
// time (Bonwick & Adams' working set); half of them (at least one) go back to
// the slabs. Returns objects moved; *pending is set if full magazines remain.
size_t decay(bool* pending);

}  // namespace depot
}  // namespace magslab
