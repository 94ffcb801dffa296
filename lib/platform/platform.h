// platform/platform: the only layer that makes system calls (mmap, munmap, madvise,
// mremap, write, getrandom, abort). Everything above calls these functions.
// Tests replace the OS through PlatformOps (the seam) to inject failures.
#pragma once
#include <pthread.h>

#include <cstddef>
#include <cstdint>

#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>  // glibc 2.32 and later
#define MAGSLAB_HAVE_SINGLE_THREADED 1
#else
#define MAGSLAB_HAVE_SINGLE_THREADED 0
#endif

#include "base/misuse.h"

namespace magslab::platform {

// The replaceable part: raw memory operations. Each returns nullptr/false on
// failure and never allocates.
struct PlatformOps {
  // Anonymous read-write mapping of `size` bytes (a multiple of the page size),
  // committed lazily by the kernel but counted against its overcommit limit, so
  // an impossible request fails here (as glibc's malloc does) instead of the
  // program being OOM-killed later. nullptr when the OS refuses.
  void* (*map)(size_t size);
  void (*unmap)(void* addr, size_t size);
  // Give pages back (their contents become zero); the range stays mapped.
  bool (*decommit)(void* addr, size_t size);
  // mremap: grow/shrink/move without copying. new_addr == nullptr: in place only.
  // Otherwise move to exactly new_addr (which must be a reserved range).
  void* (*remap)(void* old_addr, size_t old_size, size_t new_size, void* new_addr);
  // As map(), at exactly addr (MAP_FIXED_NOREPLACE): nullptr when anything is
  // mapped in [addr, addr + size) or the OS refuses. map_aligned's fallback.
  void* (*map_at)(void* addr, size_t size);
};

// The real OS.
const PlatformOps& os_ops();
// Install `ops` (tests only); pass nullptr to go back to the OS. Returns the old one.
const PlatformOps* set_ops_for_testing(const PlatformOps* ops);

void* map(size_t size);
// A sparse mapping (MAP_NORESERVE, not counted against overcommit) for metadata
// address space of which only a small part is ever touched: page-map leaves.
// Not part of the test seam; neither is unmap_sparse, which gives one back.
void* map_sparse(size_t size);
void unmap_sparse(void* addr, size_t size);
// A mapping of `size` bytes aligned to `alignment` (a power of two >= page size).
// Over-mapped and trimmed; where the OS refuses the over-map (an address-space
// or data limit, strict overcommit), a mapping of exactly `size` bytes at an
// aligned address, if there is one to be had.
void* map_aligned(size_t size, size_t alignment);
void unmap(void* addr, size_t size);
// munmap, with no fallback: false (errno kept) if the OS refuses, and the
// range stays mapped as it was. Not part of the test seam.
bool unmap_whole(void* addr, size_t size);
bool decommit(void* addr, size_t size);
// mprotect: read-write, or no access at all (check mode's quarantine of large
// blocks). Not part of the test seam. false if the OS refuses; errno kept.
bool protect(void* addr, size_t size, bool accessible);
// Whether every page of [addr, addr + size) is mapped (msync(MS_ASYNC): no
// side effect on anonymous memory). Not part of the test seam.
bool fully_mapped(void* addr, size_t size);

// A robust mutex a thread holds for as long as it owns something that its
// exit destructor gives back (a heap thread cache, an object-cache table).
// A thread whose first call comes in the last round of pthread key
// destructors arms its key after glibc passed it, and glibc runs no further
// round: the destructor never runs. The kernel marks the mutex of a thread
// that ends holding it (the robust list, walked at thread exit), so
// owner_gone() from another thread finds EOWNERDEAD — a compare-exchange in
// user space, EBUSY for a live owner — and whoever finds it gives the thing
// back as the destructor would have. One that cannot be made robust is never
// found gone.
struct ThreadAlive {
  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  bool ready = false;  // the mutex is initialised as a robust one
  bool held = false;   // its thread locked it (hold) and has not released it

  // The calling thread takes it; made robust at the first hold (`fresh`:
  // again, for a fork child's thread, which the parent's holder is not).
  void hold(bool fresh = false);
  // The holder lets go (its exit destructor ran).
  void release();
  // Whether the holder ended without releasing it; if so the mutex is made
  // consistent and unlocked (held no more), ready for the next holder.
  bool owner_gone();
};

// Thread cancellation off for the guard's scope (pthread_setcancelstate), the
// state before restored after. No magslab function is a cancellation point
// (POSIX allows none for malloc and free): its own file calls and getrandom
// are the system calls themselves (platform.cc, write_fd), and this guard
// covers what it calls that is one — msync (fully_mapped), the constructors
// and destructors of object caches, the caller's stdio that malloc_info
// writes a statistics snapshot with (api/report.h). A thread with a
// cancel pending was cancelled there, and, built without exceptions, magslab
// ran no destructor on the way out: its locks stayed held (fork(), every
// cache call and the next dlopen() hung; stop 41's bug hunt), its mappings
// leaked. With the guard, a pending cancel is acted on at the thread's next
// cancellation point after magslab returns.
class NoCancel {
 public:
  NoCancel();
  ~NoCancel();
  NoCancel(const NoCancel&) = delete;
  NoCancel& operator=(const NoCancel&) = delete;

 private:
  int old_ = 0;
};
// Whether the byte at addr can be read, as far as the kernel says
// (process_vm_readv on this process): kNo only for a definite EFAULT (an
// unmapped or PROT_NONE page); kUnknown where the call itself is refused
// (seccomp, some sandboxes: EPERM, ENOSYS), so that no caller acts on a guess.
enum class Readable { kYes, kNo, kUnknown };
Readable probe_readable(const void* addr);
// Copy n bytes at addr into out if the process may read them all (not
// unmapped, not PROT_NONE), without a fault: process_vm_readv on itself. For
// cold paths that must look at memory a bad pointer names. Not part of the
// test seam.
bool read_if_readable(const void* addr, void* out, size_t n);
// Address space nobody may read or write (PROT_NONE, not counted against
// overcommit): check mode's zero-size blocks. nullptr if the OS refuses.
void* reserve_inaccessible(size_t size);
// dladdr: the file and (if exported) the symbol containing pc, and pc's offset
// from the symbol (or from the file's load address). false if none.
bool describe_address(const void* pc, const char** file, const char** symbol, uintptr_t* offset);
// Whether the code at pc is in an object that is never unmapped before exit:
// the program itself (or a static one), or a shared library linked -z
// nodelete (DF_1_NODELETE: magslab's own are). false for libmagslab.a linked
// into a plugin the program may dlclose().
bool never_unloaded(const void* pc);
void* remap(void* old_addr, size_t old_size, size_t new_size, void* new_addr);

size_t page_size();
// Monotonic time in nanoseconds (CLOCK_MONOTONIC_COARSE: a vDSO read, no
// system call), for ageing caches. Tests may replace the clock.
uint64_t now_ns();
// Install `clock` (tests only); nullptr goes back to the OS clock.
void set_clock_for_testing(uint64_t (*clock)());
uint64_t random_u64();

// true: the calling thread is the only thread of the process (glibc's
// __libc_single_threaded, which pthread_create clears in the creating thread
// before the new thread exists; a process that had threads stays false for
// good, its fork children too, as of glibc 2.36; false where the C library
// does not say). While it is true no other thread can start
// until the caller itself creates one, so code that reads it true at its start
// may use plain loads and stores where other threads would need
// read-modify-writes; a thread created afterwards sees those stores
// (pthread_create orders them). magslab's own decay thread is such a thread:
// none runs while this is true. A thread made with clone() directly (or in
// another link namespace, dlmopen) is not counted, as for glibc's own
// pthread_mutex_lock and malloc, which skip their locked instructions on the
// same flag (magslab's Lock, a pthread mutex, already relied on it).
inline bool single_threaded() {
#if MAGSLAB_HAVE_SINGLE_THREADED
  return __libc_single_threaded != 0;
#else
  return false;
#endif
}

// Sleep while *word == expected, at most timeout_ns (0: no limit), or until
// wake(word). May return early (spurious wake-up, signal): callers re-check.
// false: the OS refused the wait (a seccomp filter, a kernel without
// futexes) and it returned at once without sleeping, or claimed that the word
// had changed while it still holds `expected` (a filter's EAGAIN). errno kept.
bool wait_on(const uint32_t* word, uint32_t expected, uint64_t timeout_ns);
// Sleep ns nanoseconds (CLOCK_MONOTONIC), signals or not. errno kept.
void sleep_for(uint64_t ns);
// Wake every thread waiting on word.
void wake(const uint32_t* word);
// Start a detached thread named `name` running fn(arg), with every signal
// blocked (the program's signals never land on it), that never ends and does
// not keep the process alive: when the program's last thread ends, the
// process exits as without it. false if the OS refuses.
bool start_thread(const char* name, void* (*fn)(void*), void* arg);
// In a fork child (api/fork.cc): the threads start_thread made are not there.
void reset_after_fork_child();
void write_stderr(const char* s, size_t n);
// All n bytes (retrying short writes and EINTR); 0, or the errno of the failure.
int write_fd(int fd, const char* s, size_t n);
// open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644): an fd, or -1.
int open_for_writing(const char* path);
void close_fd(int fd);
// A close-on-exec duplicate of stderr (>= 100, clear of the fds programs use),
// or -1: for a report written at exit, after the program may have closed fd 2.
int dup_stderr();
// Which open file fd refers to (its device and inode); {0, 0} when fd is not open.
struct FileId {
  uint64_t dev = 0, ino = 0;
  bool operator==(const FileId&) const = default;
};
FileId file_id(int fd);

// One line "magslab: <what> 0x<addr><detail>\n" on stderr, then abort().
// Never allocates: the heap may be the thing that is broken.
[[noreturn]] void fatal(const char* what, const void* addr, const char* detail = nullptr);
[[noreturn]] void fatal_msg(const char* msg);

// Heap misuse (base/misuse.h): one line on stderr, then abort().
//   magslab: <message> 0x<addr>                      nothing known about it
//   magslab: <message> 0x<addr> (class 7, 64 B)       a small block
//   magslab: <message> 0x<addr> (large block, 8192 B) / (huge block, … B)
// and "; <note>" inside the parentheses when info.note is set.
[[noreturn]] void misuse(Misuse kind, const void* addr, const BlockInfo& info = BlockInfo{});

}  // namespace magslab::platform
