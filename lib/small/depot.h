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

// NUMA (platform/numa.h): the depot is kept per node pool, an array of what
// a NUMA-unaware depot is, indexed by node (node 0 alone on one node).
// Invariant: a full magazine in node n's depot holds only objects of node n's
// slabs. push_full keeps it by looking where the objects live, not where the
// caller runs: a thread that frees another node's objects sends them home.

// A full (non-empty) magazine of node `node`'s depot, or nullptr.
Magazine* pop_full(unsigned cls, unsigned node = 0);
// Take m (count > 0) into the depot of the node its objects belong to. false
// if that depot already holds its limit for the class, or (several nodes) if
// m mixes nodes' objects; the caller then flushes m to the slabs, which send
// each object to its own node's slab.
bool push_full(unsigned cls, Magazine* m);
// An empty magazine: from node `node`'s depot, else another node's, else
// newly made. nullptr when out of memory. Empty magazines hold nothing: any
// node's will do (an emptier pushes to its own node, a taker may be on another).
Magazine* get_empty(unsigned cls, unsigned node = 0);
void push_empty(unsigned cls, Magazine* m, unsigned node = 0);

// Objects held in full magazines of the depot, all nodes (exact at quiescence).
size_t cached_objects(unsigned cls);
// Of those, in node `node`'s depot.
size_t cached_objects_on(unsigned cls, unsigned node);
// Flush every full magazine of every class and node to the slabs; returns
// objects moved.
size_t drain();
// magslab_trim_all(): give back the pages that only empty magazines in the
// depots occupy (runs of them back to back in the metadata arena). Those
// with a page given back become hollow: off the depot, get_empty() makes them
// whole again before it makes new ones. Returns bytes decommitted.
size_t hollow_empty();
// hollow_empty() holds a pass lock of its own for its whole pass (the sort,
// the madvise calls), which get_empty() never takes, and the hollow lists'
// lock only to take spare nodes and to splice what it made hollow: a thread
// that wants an empty magazine meanwhile gets a new or a hollow one without
// waiting for a madvise (until stop 54 it waited for the whole pass).
// fork(): both, the pass lock first (taken inside the heap's, before the
// metadata arena's: hollow_empty() allocates list nodes under the pass lock).
void lock_for_fork();
void unlock_after_fork();
// Decay (small/decay.h), once per tick: per node and class, the fewest full
// magazines the depot held since the last call were not needed by anyone
// during that time (Bonwick & Adams' working set); half of them (at least
// one) go back to the slabs. Returns objects moved; *pending is set if full
// magazines remain.
size_t decay(bool* pending);
// Decay, once per tick: when no thread took an empty magazine from any
// depot since the last call, and 16 pages or more of them came since the
// last hollowing, hollow_empty(): the metadata a spike of threads made goes
// back within a pass or two after the spike, as its objects do. Returns
// bytes decommitted. Under decay's pass lock (one call at a time, none
// during magslab_trim_all).
size_t decay_empty();

}  // namespace depot
}  // namespace magslab
