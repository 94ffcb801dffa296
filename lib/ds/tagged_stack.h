// ds/tagged_stack: the one Treiber stack of magslab, with a versioned head
// (pointer + 64-bit tag swapped together by one 128-bit CAS, lock cmpxchg16b).
// Used by the depot (full and empty magazines) and to recycle metadata nodes.
//
// Invariants:
//  - head = (top, tag); tag increases by one on every successful push and pop,
//    so a (top, tag) pair is never current twice: a CAS whose expected value was
//    read before the stack changed always fails. A 64-bit tag does not wrap in
//    the life of a process (2^64 operations), unlike a 16-bit tag in the high
//    pointer bits, which wraps after 65,536 operations — few enough for a thread
//    preempted between its read and its CAS on an oversubscribed machine.
//  - Nodes live in magslab's metadata arena, which is never unmapped
//    (type-stable memory): reading node->next of a node that another thread has
//    already popped reads valid memory, and the tag makes the CAS reject it.
//    (Its page may have been decommitted since — magslab_trim_all gives back
//    the pages of empty magazines it took off every stack, depot.cc
//    hollow_empty — and the read then returns 0: as stale as any other value.)
//  - node->next is a std::atomic read relaxed: the stale read above is then a
//    defined (atomic) read, not a data race, and TSan agrees.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/config.h"

#if MAGSLAB_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#if !defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
#error "magslab needs the 16-byte compare-and-swap (cmpxchg16b): compile with -mcx16"
#endif

namespace magslab {

struct StackLink {
  std::atomic<StackLink*> next{nullptr};
};
static_assert(std::atomic<StackLink*>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// kTagged = false exists only for the ABA test (it must then fail); magslab itself
// uses TaggedStack = TaggedStackT<true>. A template (not a macro) keeps the two
// variants distinct types, so a test build cannot swap the library's copy.
template <bool kTagged>
class TaggedStackT {
 public:
  constexpr TaggedStackT() = default;
  TaggedStackT(const TaggedStackT&) = delete;
  TaggedStackT& operator=(const TaggedStackT&) = delete;

  void push(StackLink* node) {
    for (;;) {
      Pair old = read_head();
      // relaxed: the CAS below (a full barrier) publishes this store with the node.
      node->next.store(old.top, std::memory_order_relaxed);
      if (cas(old, Pair{node, old.tag + kTagStep})) return;
    }
  }

  StackLink* pop() { return pop_with_hook(nullptr, nullptr); }

  // pop(), calling hook(arg) between reading top->next and the CAS: the window
  // in which ABA happens. Tests use it to replay the ABA interleaving exactly.
  StackLink* pop_with_hook(void (*hook)(void*), void* arg) {
    for (;;) {
      Pair old = read_head();
      if (old.top == nullptr) return nullptr;
      // relaxed: old.top may already be popped and reused; the memory stays
      // mapped (type-stable) and the CAS fails if the head moved, so a stale
      // value is read harmlessly and never used.
      StackLink* next = old.top->next.load(std::memory_order_relaxed);
      if (hook != nullptr) hook(arg);
      if (cas(old, Pair{next, old.tag + kTagStep})) return old.top;
    }
  }

  bool empty() const {
    // relaxed: a hint only (callers re-check through pop()).
    return __atomic_load_n(&half(head_)[0], __ATOMIC_RELAXED) == 0;
  }

 private:
  static constexpr uint64_t kTagStep = kTagged ? 1 : 0;

  struct Pair {
    StackLink* top;
    uint64_t tag;
  };

  using u64_alias = uint64_t __attribute__((may_alias));
  static u64_alias* half(const unsigned __int128& w) {
    return reinterpret_cast<u64_alias*>(const_cast<unsigned __int128*>(&w));
  }

  // The two halves are read with two 64-bit atomic loads: tag first, then top.
  // A torn pair (top from a later state) is harmless: the 128-bit CAS compares
  // both halves, and the tag never repeats, so it fails and we retry.
  Pair read_head() const {
    // acquire: pairs with the CAS that installed this tag; we then read top->next.
    uint64_t tag = __atomic_load_n(&half(head_)[1], __ATOMIC_ACQUIRE);
    // acquire: the node's fields, written before the push CAS, are visible.
    uint64_t top = __atomic_load_n(&half(head_)[0], __ATOMIC_ACQUIRE);
    return Pair{reinterpret_cast<StackLink*>(top), tag};
  }

  bool cas(Pair expected, Pair desired) {
    auto pack = [](Pair p) {
      return (static_cast<unsigned __int128>(p.tag) << 64) | reinterpret_cast<uintptr_t>(p.top);
    };
#if MAGSLAB_TSAN
    // ThreadSanitizer's runtime does every 16-byte atomic under one global mutex
    // that it does not take across fork(): a child forked while another thread
    // held it hung at its first depot operation. So the same instruction as
    // below in inline assembly, which TSan does not see, and its ordering told
    // to TSan by hand: release on both halves before (the loads in read_head()
    // acquire them), acquire after (a pop then reads what the pusher wrote).
    __tsan_release(&half(head_)[0]);
    __tsan_release(&half(head_)[1]);
    unsigned __int128 want = pack(expected);
    unsigned __int128 put = pack(desired);
    auto lo = static_cast<uint64_t>(want);
    auto hi = static_cast<uint64_t>(want >> 64);
    bool ok;
    __asm__ __volatile__("lock cmpxchg16b %1"
                         : "=@ccz"(ok), "+m"(head_), "+a"(lo), "+d"(hi)
                         : "b"(static_cast<uint64_t>(put)), "c"(static_cast<uint64_t>(put >> 64))
                         : "memory");
    __tsan_acquire(&half(head_)[0]);
    __tsan_acquire(&half(head_)[1]);
    return ok;
#else
    // __sync CAS: sequentially consistent (lock cmpxchg16b is a full barrier on
    // x86, there is no weaker form); g++ inlines it with -mcx16, unlike
    // std::atomic<__int128>, which calls libatomic.
    return __sync_bool_compare_and_swap(&head_, pack(expected), pack(desired));
#endif
  }

  // Low half: top of stack; high half: tag.
  alignas(16) unsigned __int128 head_ = 0;
};

using TaggedStack = TaggedStackT<true>;

}  // namespace magslab
