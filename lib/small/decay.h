// small/decay: memory that nobody uses goes back to the OS by itself, gradually
// instead of at a cliff. A decay pass, run every kTickNs, gives back:
//  * the depot's surplus: half of the full magazines no thread needed since the
//    last pass (depot::decay, Bonwick & Adams' working-set reaping), and,
//    when no thread took an empty magazine since the last pass, the pages
//    of the empty ones (depot::decay_empty);
//  * each class's cached empty slab, once it has sat there for a pass;
//  * dirty page runs untouched for dirty_decay_ns() (heap::purge_aged);
//  * pages of Slab records all unused for dirty_decay_ns() (slab::decay);
//  * through a hook, the layer above's caches (large: the huge-mapping cache).
// So a workload that swings within half a second never refaults, and an idle
// process is back near its pre-burst RSS about a second after a burst.
//
// Who runs the passes: once a second thread uses magslab (makes a thread
// cache, or frees a block outside the size classes or gets one of fresh
// memory), a background thread
// ("magslab-decay"; MAGSLAB_BACKGROUND_THREAD=0 disables it) runs one pass per
// tick while anything is cached, and sleeps without a timeout when nothing is
// (decay_event.h wakes it). A single-threaded program never gets a thread
// (it may unshare() or count its threads): its own slow paths run the passes
// when one is due (maybe_tick), so it decays while it runs but not while idle.
#pragma once
#include <cstddef>
#include <cstdint>

namespace magslab::decay {

inline constexpr uint64_t kTickNs = 100'000'000;  // 100 ms

// One pass at time `now` (platform::now_ns()). true: something cached remains
// that a later pass may give back.
bool tick(uint64_t now);
// A pass if one is due and the background thread does not run (slow paths);
// none if another thread holds the pass lock (a pass, a trim or a stats
// call: NoPassScope): a slow path never waits for one (stop 54).
void maybe_tick();

// The layer above adds its caches to every pass: hook(now) returns true when
// something remains. Set once, before the second thread starts (api layer).
void set_hook(bool (*hook)(uint64_t now));

// A second thread uses magslab (note_user; a cache was registered while
// another one exists: the process is multithreaded), or the option allows a
// start it kept off: start the background thread if not yet done.
void on_multithreaded();
// thread_cache: the calling thread registered a cache; `second`: while
// another was registered (on_multithreaded). Either way it counts as a thread
// that uses magslab: a second one starts the background thread. Every cache's
// thread counts, so that a fork child, whose count starts from its one
// thread's mark, counts a forking thread with a cache (stop 54's bug hunt:
// one whose cache came second did not, and a child's thread that used only
// huge blocks then counted as the first: no decay thread).
void note_user(bool second);
// api: the calling thread frees a huge block or a page run (no thread cache
// needed) in a process that has had a second thread (platform::single_threaded
// false), or gets one of fresh memory (in any process: a single thread's
// first such block is fresh, and it may go on later with only reused ones,
// stop 54's bug hunt). A thread that only uses such
// blocks makes no cache: counted here,
// so that a second thread of that kind, or beside one with a cache, starts the
// background thread (before stop 53 none started, and the huge cache and park
// slots such threads filled stayed mapped while the process idled).
void on_use_outside_classes();
// magslab_option_set("background_thread", 1): a start the option kept off
// may happen now. true: it had kept one off — the process has had a second
// thread — and the caller may start the thread at once (on_multithreaded);
// else the next thread's first call does.
bool option_turned_on();
// Whether the background thread runs (tests, stats).
bool background_running();
// Tests: hook() runs in the thread that starts the background thread, after it
// claimed the start and before it creates the thread (a fork() there is a fork
// in the middle of the start). nullptr: none.
void set_start_hook_for_testing(void (*hook)());
// While one exists, no pass runs (one in progress finishes first): a pass moves
// objects from the depot to the slabs in two steps, and magslab_stats, which
// adds both up, must not see them in between ("exact when no thread allocates
// or frees" holds with the decay thread running).
class NoPassScope {
 public:
  NoPassScope();
  ~NoPassScope();
  NoPassScope(const NoPassScope&) = delete;
  NoPassScope& operator=(const NoPassScope&) = delete;
};

// Stop (true) or resume decay: no pass runs and nothing is purged by age while
// stopped (the dirty-page bound still holds). Returns after a pass in progress
// has finished. For tests that assert exact cache contents.
void pause(bool paused);
// fork(): the pass lock is held across fork() (taken first: a pass takes the
// class, page-heap and huge locks inside it). The child has no decay thread;
// the next second thread there starts one.
void lock_for_fork();
void unlock_after_fork_parent();
void reset_after_fork_child();

}  // namespace magslab::decay
