// small/decay: the decay pass and the background thread that runs it.
#include "small/decay.h"

#include <atomic>
#include <cerrno>

#include "base/lock.h"
#include "chunks/decay_event.h"
#include "chunks/page_heap.h"
#include "platform/options.h"
#include "platform/platform.h"
#include "small/depot.h"
#include "small/slab.h"
#include "small/thread_cache.h"

namespace magslab::decay {
namespace {

enum : uint32_t { kNone, kStarting, kRunning, kDisabled };
// relaxed/acq_rel as noted at each use; kStarting is claimed by one CAS.
constinit std::atomic<uint32_t> g_state{kNone};
// relaxed: an optional extra; a pass that misses it just does less.
constinit std::atomic<bool (*)(uint64_t)> g_hook{nullptr};
// When the next slow-path pass is due. relaxed: claimed with a CAS, so at most
// one slow path runs a given pass; passes themselves lock what they touch.
constinit std::atomic<uint64_t> g_next_tick{0};
// One pass at a time (the background thread and slow paths, trim).
Lock g_pass_lock;
// Threads counted as using magslab (note_user): each counts itself once, and
// the second starts the background thread. relaxed: a count; the start is
// decided by on_multithreaded's compare-exchange.
constinit std::atomic<uint32_t> g_users{0};
constinit thread_local bool t_counted MAGSLAB_TLS_MODEL = false;
// Never changed: the background thread waits on it for one tick.
const uint32_t g_tick_word = 0;

void* run(void*) {
  for (;;) {
    if (tick(platform::now_ns())) {
      // A refused wait returns at once: without the sleep, the thread ran
      // passes back to back for good — a CPU's worth in an idle process (a
      // seccomp filter refusing timed futex waits: 0.99 s of CPU in 3 s
      // idle; stop 52's bug hunt).
      if (!platform::wait_on(&g_tick_word, 0, kTickNs)) platform::sleep_for(kTickNs);
      continue;
    }
    // Nothing left: sleep until something is cached. Announce it first, then
    // look once more (decay_event.h: the caching side fences, or caches with a
    // seq_cst RMW, then loads).
#if MAGSLAB_TSAN
    // ThreadSanitizer does not model fences (and gcc warns of one): the
    // cachers' variants are RMWs of g_parked, and this exchange reads the last
    // of them before it, so what that cacher cached is seen below.
    decay_event::g_parked.exchange(1, std::memory_order_seq_cst);
#else
    decay_event::g_parked.store(1, std::memory_order_seq_cst);
    // seq_cst fence: the look below then sees what a cacher published with a
    // seq_cst RMW before its load of g_parked (note_after_seq_cst_rmw).
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
    if (tick(platform::now_ns())) {
      decay_event::g_parked.store(0, std::memory_order_relaxed);  // relaxed: only ours
      continue;
    }
    // A bounded sleep all the same: a wake-up lost to a fork() in the parent
    // costs at most this much delay.
    // Refused (see above): a pass a tick from now, as while there is work.
    if (!platform::wait_on(reinterpret_cast<const uint32_t*>(&decay_event::g_parked), 1,
                           uint64_t{10} * 1000 * 1000 * 1000))
      platform::sleep_for(kTickNs);
    decay_event::g_parked.store(0, std::memory_order_relaxed);  // relaxed: as above
  }
  return nullptr;
}

}  // namespace

namespace {

// A pass; g_pass_lock held.
bool pass_locked(uint64_t now) {
  if (decay_event::paused()) return true;
  bool pending = false;
  // Threads' stashes first: what they give up decays in the depot from the next pass.
  if (cache::decay_stashes(now)) pending = true;
  // Caches of threads gone without their exit destructor: objects to the depot.
  if (cache::reap_exited()) pending = true;
  depot::decay(&pending);
  depot::decay_empty();
  uint64_t aged = now > heap::dirty_decay_ns() ? now - heap::dirty_decay_ns() : 0;
  slab::decay(now > kTickNs ? now - kTickNs : 0, aged, &pending);
  heap::purge_aged(aged);
  {
    LockGuard h(heap::g_lock);
    if (heap::totals_locked().dirty_pages != 0) pending = true;
  }
  if (auto hook = g_hook.load(std::memory_order_relaxed)) pending = hook(now) || pending;
  return pending;
}

}  // namespace

bool tick(uint64_t now) {
  LockGuard g(g_pass_lock);
  return pass_locked(now);
}

void maybe_tick() {
  // acquire: pairs with the release store that marks the thread running.
  if (g_state.load(std::memory_order_acquire) == kRunning) return;
  uint64_t now = platform::now_ns();
  uint64_t due = g_next_tick.load(std::memory_order_relaxed);
  if (now < due) return;
  if (!g_next_tick.compare_exchange_strong(due, now + kTickNs, std::memory_order_relaxed)) return;
  // Held: a magslab_trim, magslab_trim_all or magslab_stats in another
  // thread (NoPassScope), for as long as its walk and madvise calls take —
  // or a pass. This one is skipped, not waited for: the next is a tick away
  // (stop 54's bug hunt: a malloc waited for a whole trim_all).
  if (!g_pass_lock.try_lock()) return;
  pass_locked(now);
  g_pass_lock.unlock();
}

void set_hook(bool (*hook)(uint64_t)) { g_hook.store(hook, std::memory_order_relaxed); }

// relaxed: set by a test before the thread it concerns exists.
constinit std::atomic<void (*)()> g_start_hook{nullptr};
void set_start_hook_for_testing(void (*hook)()) {
  g_start_hook.store(hook, std::memory_order_relaxed);
}

void on_multithreaded() {
  uint32_t s = g_state.load(std::memory_order_relaxed);  // relaxed: the CAS decides
  if (s != kNone) return;
  if (!g_state.compare_exchange_strong(s, kStarting, std::memory_order_relaxed)) return;
  if (opt::get(opt::kBackgroundThread) == 0) {  // MAGSLAB_BACKGROUND_THREAD=0
    // A magslab_option_set(..., 1) meanwhile may have found kStarting and
    // left the start to this call (option_turned_on): look at the option once
    // more. acq_rel read-modify-writes of g_state on both sides (not a store
    // here, not a failing compare-exchange there): whichever comes second
    // reads the first's, so either the setter sees kDisabled, or this sees
    // the option the setter stored before its RMW.
    g_state.exchange(kDisabled, std::memory_order_acq_rel);
    if (opt::get(opt::kBackgroundThread) == 0) return;
    s = kDisabled;
    if (!g_state.compare_exchange_strong(s, kStarting, std::memory_order_relaxed)) return;
  }
  if (auto hook = g_start_hook.load(std::memory_order_relaxed)) hook();
  // errno kept: this runs inside the first malloc or free of a thread, and
  // pthread_create's refusal is no answer to either.
  const int saved = errno;
  bool ok = platform::start_thread("magslab-decay", run, nullptr);
  errno = saved;
  // release: a slow path that sees kRunning stops running passes itself.
  // A start the OS refused (no memory for its stack under RLIMIT_AS, EAGAIN
  // at a thread limit) is tried again by the next thread that makes a cache:
  // the refusal may be transient, and kDisabled would keep an idle process's
  // cached memory for good (a bug hunt, stop 48; DecayFork.ADecayThreadTheOsRefusedOnce...).
  g_state.store(ok ? kRunning : kNone, std::memory_order_release);
}

void note_user(bool second) {
  if (!t_counted) {
    t_counted = true;
    // relaxed: see g_users.
    if (g_users.fetch_add(1, std::memory_order_relaxed) != 0) second = true;
  }
  if (second) on_multithreaded();
}

void on_use_outside_classes() {
  // relaxed: a hint; once the thread runs (or the option kept it off) nothing
  // is counted, and on_multithreaded's compare-exchange decides the start.
  if (g_state.load(std::memory_order_relaxed) != kNone) return;
  note_user(false);
}

bool option_turned_on() {
  // acq_rel, and always a write: pairs with on_multithreaded's exchange (the
  // option was stored before this).
  uint32_t s = g_state.fetch_add(0, std::memory_order_acq_rel);
  if (s != kDisabled) return false;
  // relaxed: as on_multithreaded's claim (the CAS decides; nothing is published).
  return g_state.compare_exchange_strong(s, kNone, std::memory_order_relaxed);
}

void pause(bool paused) {
  decay_event::g_paused.store(paused, std::memory_order_relaxed);  // relaxed: see decay_event.h
  LockGuard g(g_pass_lock);  // a pass that started before returns first
}

bool background_running() { return g_state.load(std::memory_order_acquire) == kRunning; }

NoPassScope::NoPassScope() { g_pass_lock.lock(); }
NoPassScope::~NoPassScope() { g_pass_lock.unlock(); }

void lock_for_fork() { g_pass_lock.lock_for_fork(); }
void unlock_after_fork_parent() { g_pass_lock.unlock_after_fork(); }

void reset_after_fork_child() {
  // The decay thread, or the thread that was starting it, is not in the child:
  // its next second thread starts one. (Until stop 33 only kRunning was reset:
  // a child forked mid-start kept kStarting, and no decay thread, for good.)
  // kDisabled stays (the option; a refused start leaves kNone since stop 48).
  // relaxed: the child has one thread.
  uint32_t s = g_state.load(std::memory_order_relaxed);
  if (s == kRunning || s == kStarting) g_state.store(kNone, std::memory_order_relaxed);
  g_next_tick.store(0, std::memory_order_relaxed);
  g_users.store(t_counted ? 1 : 0, std::memory_order_relaxed);  // the child's one thread
  decay_event::g_parked.store(0, std::memory_order_relaxed);
  g_pass_lock.unlock_after_fork();
}

}  // namespace magslab::decay
