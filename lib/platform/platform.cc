// platform/platform: system calls and the test seam over them.
#include "platform/platform.h"
#include "platform/valgrind.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "base/config.h"
#include "base/format.h"
#include "platform/check.h"

namespace magslab::platform {
namespace {

void* os_map(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void os_unmap(void* addr, size_t size) {
  const int saved = errno;
  if (munmap(addr, size) == 0) return;
  // ENOMEM: the range is part of a larger mapping (the kernel merges adjacent
  // anonymous ones), the unmap would split it, and the process is at
  // vm.max_map_count — a correct program's own mappings can get it there.
  // Until stop 39 this aborted, in malloc (trimming an over-mapped chunk) and
  // in free (a huge block). madvise never splits a mapping: the pages go back
  // all the same and the range stays mapped, unused (address space lost, not
  // memory; tests/map_count_test.cc). Anything else is magslab's own bug.
  if (errno != ENOMEM || madvise(addr, size, MADV_DONTNEED) != 0) fatal("munmap failed for", addr);
  errno = saved;
}

bool os_decommit(void* addr, size_t size) {
  // MADV_DONTNEED rather than MADV_FREE: RSS drops at once (observable, and what
  // the trim tests assert), and the pages read back as zero, which calloc uses.
  // errno kept, as in protect(): free() may decommit.
  const int saved = errno;
  const bool ok = madvise(addr, size, MADV_DONTNEED) == 0;
  errno = saved;
  return ok;
}

void* os_remap(void* old_addr, size_t old_size, size_t new_size, void* new_addr) {
  void* p = new_addr == nullptr
                ? mremap(old_addr, old_size, new_size, 0)
                : mremap(old_addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, new_addr);
  return p == MAP_FAILED ? nullptr : p;
}

void* os_map_at(void* addr, size_t size) {
  void* p = mmap(addr, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (p == addr) return p;
  // A kernel before 4.17 takes the flag for a hint and may map elsewhere.
  os_unmap(p, size);
  errno = EEXIST;
  return nullptr;
}

constexpr PlatformOps kOsOps{os_map, os_unmap, os_decommit, os_remap, os_map_at};

// acquire/release: a test installs its ops before the calls that must see them.
std::atomic<const PlatformOps*> g_ops{&kOsOps};

const PlatformOps& ops() { return *g_ops.load(std::memory_order_acquire); }

}  // namespace

const PlatformOps& os_ops() { return kOsOps; }

const PlatformOps* set_ops_for_testing(const PlatformOps* o) {
  return g_ops.exchange(o != nullptr ? o : &kOsOps, std::memory_order_acq_rel);
}

void* map(size_t size) { return ops().map(size); }

void* map_sparse(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
void unmap_sparse(void* addr, size_t size) { munmap(addr, size); }
void unmap(void* addr, size_t size) { ops().unmap(addr, size); }
bool unmap_whole(void* addr, size_t size) {
  const int saved = errno;
  const bool ok = munmap(addr, size) == 0;
  errno = saved;
  return ok;
}
bool decommit(void* addr, size_t size) { return ops().decommit(addr, size); }

bool protect(void* addr, size_t size, bool accessible) {
  // errno kept: the callers answer a refusal themselves (check mode's free
  // keeps such a block in quarantine or out of it), and free() must leave
  // errno alone (until stop 47 the ENOMEM of a refusal at vm.max_map_count
  // came out of a check-mode free; tests/check_map_count_test.cc).
  const int saved = errno;
  const bool ok = mprotect(addr, size, accessible ? PROT_READ | PROT_WRITE : PROT_NONE) == 0;
  errno = saved;
  return ok;
}

void ThreadAlive::hold(bool fresh) {
  if (!ready || fresh) {
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0) return;
    ready = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0 &&
            pthread_mutex_init(&mutex, &a) == 0;
    pthread_mutexattr_destroy(&a);
  }
  held = ready && pthread_mutex_lock(&mutex) == 0;
}

void ThreadAlive::release() {
  if (held) pthread_mutex_unlock(&mutex);
  held = false;
}

bool ThreadAlive::owner_gone() {
  if (!held) return false;
  const int r = pthread_mutex_trylock(&mutex);
  if (r == 0) pthread_mutex_unlock(&mutex);  // not held: cannot happen; never found gone
  if (r != EOWNERDEAD) return false;
  pthread_mutex_consistent(&mutex);
  pthread_mutex_unlock(&mutex);
  held = false;
  return true;
}

NoCancel::NoCancel() { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old_); }
NoCancel::~NoCancel() { pthread_setcancelstate(old_, nullptr); }

bool fully_mapped(void* addr, size_t size) {
  const NoCancel no_cancel;  // msync is a cancellation point
  const int saved = errno;   // ENOMEM for a hole: an answer, not an error to report
  const bool mapped = msync(addr, size, MS_ASYNC) == 0;
  errno = saved;
  return mapped;
}

namespace {
// n bytes at addr into out by process_vm_readv on this process, errno kept:
// kNo for the kernel's EFAULT (unmapped or PROT_NONE), kUnknown when the call
// itself is refused (seccomp, sandboxes).
Readable read_self(const void* addr, void* out, size_t n) {
  const int saved = errno;
  errno = 0;  // a short read sets none: then neither EFAULT nor refused
  iovec local{out, n};
  iovec remote{const_cast<void*>(addr), n};
  const ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
  const Readable r = got == static_cast<ssize_t>(n) ? Readable::kYes
                     : errno == EFAULT              ? Readable::kNo
                                                    : Readable::kUnknown;
  errno = saved;
  return r;
}
}  // namespace

bool read_if_readable(const void* addr, void* out, size_t n) {
  return read_self(addr, out, n) == Readable::kYes;
}

Readable probe_readable(const void* addr) {
  unsigned char byte;
  return read_self(addr, &byte, 1);
}

void* reserve_inaccessible(size_t size) {
  void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

bool describe_address(const void* pc, const char** file, const char** symbol, uintptr_t* offset) {
  Dl_info info{};
  if (dladdr(pc, &info) == 0) return false;
  *file = info.dli_fname;
  *symbol = info.dli_sname;
  auto base =
      reinterpret_cast<uintptr_t>(info.dli_sname != nullptr ? info.dli_saddr : info.dli_fbase);
  *offset = reinterpret_cast<uintptr_t>(pc) - base;
  return true;
}
namespace {
struct Unloadable {
  uintptr_t pc;
  // The program's headers as the kernel (or ld.so run as a command) gave
  // them; 0 if there is no such entry: then the first object visited.
  uintptr_t program_phdr = getauxval(AT_PHDR);
  int visited = 0;
  bool never = true;  // not found in any object: keep the safe answer of a static program
};
// dl_iterate_phdr's visitor: the object whose loaded segments hold pc is
// never unloaded if it is the program or was linked -z nodelete
// (DF_1_NODELETE in its DT_FLAGS_1). Stops there (returns 1). The program is
// known by its headers, not as the first object visited: dl_iterate_phdr
// lists the caller's namespace, and in one that dlmopen() made the first is
// the object it loaded — a plugin with libmagslab.a took itself for the
// program there, was not pinned, and its decay thread crashed after the
// dlclose (stop 53's bug hunt, ctest static_plugin_dlmopened_decay_thread).
int find_unloadable(dl_phdr_info* info, size_t, void* data) {
  auto* u = static_cast<Unloadable*>(data);
  const bool program = u->program_phdr != 0
                           ? reinterpret_cast<uintptr_t>(info->dlpi_phdr) == u->program_phdr
                           : u->visited == 0;
  ++u->visited;
  bool holds = false;
  for (int i = 0; i < info->dlpi_phnum && !holds; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    holds = ph.p_type == PT_LOAD && u->pc >= lo && u->pc - lo < ph.p_memsz;
  }
  if (!holds) return 0;
  u->never = program;
  for (int i = 0; i < info->dlpi_phnum && !u->never; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_DYNAMIC) continue;
    for (auto* d = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + ph.p_vaddr);
         d->d_tag != DT_NULL; ++d)
      if (d->d_tag == DT_FLAGS_1 && (d->d_un.d_val & DF_1_NODELETE) != 0) u->never = true;
  }
  return 1;
}
}  // namespace

bool never_unloaded(const void* pc) {
  Unloadable u{reinterpret_cast<uintptr_t>(pc)};
  dl_iterate_phdr(find_unloadable, &u);
  return u.never;
}

void* remap(void* old_addr, size_t old_size, size_t new_size, void* new_addr) {
  return ops().remap(old_addr, old_size, new_size, new_addr);
}

namespace {
// The over-map refused: the address space (RLIMIT_AS), the data limit
// (RLIMIT_DATA) or the commit limit (strict overcommit) may still hold `size`
// bytes, not `size` + `alignment` less a page. Until stop 54 the request
// failed there: under `ulimit -v` a malloc of 6 MiB (a mapping of 8 MiB,
// over-mapped 12 MiB less a page) got ENOMEM with 11.8 MiB of the limit left,
// and whether a program ran under a limit depended on where ASLR put its
// mappings (one that straddles a 1 GiB line needs a second page-map leaf,
// 4 MiB more: tests/small_limits_main.c failed 1-3 runs in 100 at 40-42 MiB).
// A mapping of exactly `size` is kept if the kernel placed it aligned (as it
// does right below an aligned mapping that ends aligned, a chunk's or a huge
// block's, top-down); otherwise it is given back and asked for at the aligned
// address below it (the gap the kernel placed it in goes on downwards, top-down),
// then above it (bottom-up layouts). Another thread may take that range
// meanwhile: then nullptr, and the caller's retry (heap::or_after_reclaim)
// tries again. Address space is never held beyond `size` bytes here.
void* map_exactly_aligned(size_t size, size_t alignment) {
  auto* raw = static_cast<char*>(map(size));
  if (raw == nullptr) return nullptr;
  const auto a = reinterpret_cast<uintptr_t>(raw);
  if ((a & (alignment - 1)) == 0) return raw;
  unmap(raw, size);
  const uintptr_t down = a & ~(alignment - 1);
  const uintptr_t up = down + alignment;
  for (uintptr_t at : {down, up}) {
    if (at == 0 || at + size < at) continue;
    if (void* p = ops().map_at(reinterpret_cast<void*>(at), size)) return p;
  }
  errno = ENOMEM;  // as the refused over-map (map_at's EEXIST is no answer for malloc)
  return nullptr;
}
}  // namespace

void* map_aligned(size_t size, size_t alignment) {
  if (alignment <= kPageSize) return map(size);
  // Over-map by the alignment less a page, then cut off the misaligned head
  // and the tail. Less a page: the range then holds one aligned start, not two
  // when the kernel places it aligned, so a mapping of whole alignments placed
  // next to another one (top-down right below it, bottom-up right above) keeps
  // the part that touches it, and the kernel merges the two. Over-mapped by
  // the whole alignment, each chunk and huge block kept the lower start and
  // left a hole above it: one mapping each, and NULL at vm.max_map_count with
  // 65,000 huge blocks live (stop 51's bug hunt).
  size_t total = size + alignment - kPageSize;
  if (total < size) return nullptr;
  const int saved = errno;
  auto* raw = static_cast<char*>(map(total));
  if (raw == nullptr) {
    void* p = map_exactly_aligned(size, alignment);
    if (p != nullptr) errno = saved;  // the refused over-map's ENOMEM is no answer
    return p;
  }
  uintptr_t start = align_up(reinterpret_cast<uintptr_t>(raw), alignment);
  size_t head = start - reinterpret_cast<uintptr_t>(raw);
  size_t tail = total - head - size;
  if (head != 0) unmap(raw, head);
  if (tail != 0) unmap(reinterpret_cast<char*>(start + size), tail);
  return reinterpret_cast<void*>(start);
}

size_t page_size() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

namespace {
uint64_t os_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}
// acquire/release: as g_ops.
std::atomic<uint64_t (*)()> g_clock{os_now_ns};
}  // namespace

uint64_t now_ns() { return g_clock.load(std::memory_order_acquire)(); }

void set_clock_for_testing(uint64_t (*clock)()) {
  g_clock.store(clock != nullptr ? clock : os_now_ns, std::memory_order_release);
}

uint64_t random_u64() {
  uint64_t v = 0;
  // errno kept: a refusal (EAGAIN before the entropy pool is ready; ENOSYS or
  // EPERM under a seccomp filter) is answered below, and the caller succeeds:
  // the process's first magslab_cache_create left ENOSYS behind a cache it
  // returned (stop 52's bug hunt).
  const int saved = errno;
  // The system call itself, not glibc's getrandom(), which is a cancellation
  // point: a thread cancelled in it left magslab_cache_create with the object
  // caches' lock held, and a process's first magslab_malloc (which makes the
  // keys) as a cancellation point (stop 41's bug hunt).
  if (syscall(SYS_getrandom, &v, sizeof v, GRND_NONBLOCK) != static_cast<long>(sizeof v)) {
    // No entropy yet (very early boot): mix the clock with ASLR'd addresses.
    v = __builtin_ia32_rdtsc() ^ reinterpret_cast<uintptr_t>(&v) ^
        (reinterpret_cast<uintptr_t>(&random_u64) << 17);
  }
  errno = saved;
  return v | 1;  // never zero: zero is "no key yet"
}

namespace {
timespec timespec_of(uint64_t ns) {
  return {static_cast<time_t>(ns / 1000000000u), static_cast<long>(ns % 1000000000u)};
}
}  // namespace

bool wait_on(const uint32_t* word, uint32_t expected, uint64_t timeout_ns) {
  timespec ts = timespec_of(timeout_ns);
  const int saved = errno;
  // Private futex: the word is in this process's memory only.
  const long r = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected,
                         timeout_ns != 0 ? &ts : nullptr, nullptr, 0);
  // Woken, the time up, a signal: the kernel waited as asked; EAGAIN: the
  // word no longer `expected`, which it still is if a filter made that up
  // (stop 53: a decay thread then ran passes back to back, as with ENOSYS).
  // Anything else is the call refused (a seccomp filter's ENOSYS or EPERM, a
  // kernel without futexes): it returned at once. relaxed: a second look at
  // the word the kernel compared; a change and back meanwhile costs a sleep.
  const bool waited = r == 0 || errno == ETIMEDOUT || errno == EINTR ||
                      (errno == EAGAIN && __atomic_load_n(word, __ATOMIC_RELAXED) != expected);
  errno = saved;
  return waited;
}

void sleep_for(uint64_t ns) {
  timespec ts = timespec_of(ns);
  const int saved = errno;
  // The system call itself (glibc's is a cancellation point); EINTR: the
  // rest of the time again.
  while (syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, &ts) != 0 && errno == EINTR) {
  }
  errno = saved;
}

void wake(const uint32_t* word) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

namespace {
// glibc's count of the process's threads in a static program: libc.a defines
// it hidden, which a hidden reference reaches in a -static (or -static-pie)
// link; in a dynamic one nothing in the link defines it and the weak
// reference is null (libc.so.6 exports it only as GLIBC_PRIVATE data, which
// dlsym finds below). Referenced in assembly: in a link-time optimised link
// (options_env_preload_lto) the linker resolved the compiler's reference to
// libc.so.6's definition, then refused a hidden reference to it.
unsigned* static_thread_count() {
  unsigned* count;
  asm(".weak __nptl_nthreads\n\t"
      ".hidden __nptl_nthreads\n\t"
      "movq __nptl_nthreads@GOTPCREL(%%rip), %0"
      : "=r"(count));
  return count;
}
}  // namespace

namespace {
// glibc's count of the process's threads (__nptl_nthreads: GLIBC_PRIVATE data
// of libc.so.6): pthread_create adds one, each thread's end takes one, and
// the thread that takes it to 0 — the last to end, main included when it ended
// with pthread_exit() — calls exit(0). Looked up once, at load: dlsym takes
// the loader's lock, which glibc holds while a dlopen()ed library's
// constructors run, so a lookup in start_thread — inside the allocation of a
// thread such a constructor started and waits for — deadlocked (a review,
// stop 40). nullptr where it is not found.
// seq_cst: see take_out_uncounted.
std::atomic<unsigned*> g_thread_count{nullptr};
// Threads start_thread made that are still in that count: made before it was
// looked up (a program's constructor, run before this library's, or the C++
// initialisation of its globals, started a thread that allocates), they are
// taken out once it is found. Until stop 53 such a decay thread counted, and
// so did every decay thread of a -static program (dlsym finds nothing there):
// a program whose main() ended with pthread_exit() stayed for good.
// seq_cst: see take_out_uncounted.
std::atomic<unsigned> g_uncounted{0};

// Takes the threads in g_uncounted out of glibc's count, once it is known.
// start_thread adds to g_uncounted and then reads g_thread_count; the lookup
// stores g_thread_count and then takes g_uncounted: seq_cst on all four, so
// that at least one of the two sees the other's write (a store-buffer
// pattern), and the exchange takes each thread once.
void take_out_uncounted() {
  unsigned* count = g_thread_count.load(std::memory_order_seq_cst);
  if (count == nullptr) return;
  // relaxed on the count: glibc's own updates are atomic RMWs too, and the
  // count orders nothing.
  if (unsigned n = g_uncounted.exchange(0, std::memory_order_seq_cst))
    __atomic_fetch_sub(count, n, __ATOMIC_RELAXED);
}

[[gnu::constructor]] void find_thread_count() {
  void* sym = static_thread_count();
  if (sym == nullptr) {
    sym = dlsym(RTLD_DEFAULT, "__nptl_nthreads");
    if (sym == nullptr && dlerror() != nullptr) (void)dlerror();  // its message goes back
  }
  g_thread_count.store(static_cast<unsigned*>(sym), std::memory_order_seq_cst);
  take_out_uncounted();
}

// libmagslab.a linked into a plugin the program may dlclose() (never_unloaded
// false): the plugin is marked RTLD_NODELETE as it loads, so its code stays
// mapped for what outlives the dlclose — the thread-exit destructors of its
// pthread keys (a thread that used it ends later), its decay thread, blocks
// it handed out that the program frees later. Before stop 42 a worker's exit
// and the decay thread both ran unmapped code (SIGSEGV; a bug hunt). glibc
// does the same for an object that registered C++ thread_local destructors.
// A dlopen of itself with RTLD_NOLOAD from its own constructor, on the
// loading thread, which holds the loader's lock (recursive): a first call
// made later, by a thread a plugin's constructor starts and waits for,
// would wait for that lock for ever (a review found pin_code there
// deadlocked; the lookup above moved here for the same reason in stop 40).
// dlopen through dlsym: a direct reference makes a static link warn.
[[gnu::constructor]] void pin_if_unloadable() {
  const void* pc = reinterpret_cast<const void*>(&pin_if_unloadable);
  if (never_unloaded(pc)) return;
  Dl_info info{};
  if (dladdr(pc, &info) == 0 || info.dli_fname == nullptr) return;
  using Open = void* (*)(const char*, int);
  auto open = reinterpret_cast<Open>(dlsym(RTLD_DEFAULT, "dlopen"));
  // NOLOAD: it is loaded (this code runs in it); NODELETE: dlclose() leaves
  // it mapped. The handle stays open for good as well.
  if (open == nullptr || open(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) == nullptr)
    (void)dlerror();  // its message goes back
}
}  // namespace

bool start_thread(const char* name, void* (*fn)(void*), void* arg) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, size_t{256} << 10);  // no user code; room for sanitizers
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the new thread inherits this mask
  pthread_t t;
  bool ok = pthread_create(&t, &attr, fn, arg) == 0;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (ok) pthread_setname_np(t, name);
  // The thread (it never ends) does not count among the process's: counted, it
  // kept alive for good a process whose main() ended with pthread_exit() once
  // its other threads had ended (a bug hunt, stop 40: atexit handlers never
  // ran, and SIGTERM stayed pending — the thread blocks every signal). A fork
  // child's count starts again at 1, without it. seq_cst: see take_out_uncounted.
  if (ok) {
    g_uncounted.fetch_add(1, std::memory_order_seq_cst);
    take_out_uncounted();
  }
  return ok;
}

void reset_after_fork_child() {
  // The child's one thread is the forking one: a thread still to be taken
  // out of the count is not in it. relaxed: the child has one thread.
  g_uncounted.store(0, std::memory_order_relaxed);
}

void write_stderr(const char* s, size_t n) { write_fd(STDERR_FILENO, s, n); }

int dup_stderr() { return fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 100); }

FileId file_id(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return {};
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

// The file calls below are the system calls themselves (as glibc's own
// *_nocancel functions), not glibc's write, open and close, which are
// cancellation points: a thread with a cancel pending was cancelled in a
// misuse report (no abort: a double free went on unreported, and one of a
// huge block left the huge lock held — the next huge malloc hung), in
// magslab_cache_destroy's live-object warning, and, with a report fd open, in
// fork()'s child handler (the child died inside fork). Stop 41's review.
int write_fd(int fd, const char* s, size_t n) {
  while (n > 0) {
    ssize_t w = syscall(SYS_write, fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    if (w == 0) return EIO;
    s += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

int open_for_writing(const char* path) {
  return static_cast<int>(
      syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
}

void close_fd(int fd) { syscall(SYS_close, fd); }

namespace {
// Write a finished fatal line to stderr and abort.
[[noreturn]] void die(const LineBuf& l) {
  write_stderr(l.data(), l.size());
  abort();
}
}  // namespace

void fatal(const char* what, const void* addr, const char* detail) {
  LineBuf l;
  l.str("magslab: ").str(what).str(" ").hex(reinterpret_cast<uintptr_t>(addr));
  if (detail != nullptr) l.str(detail);
  l.end();
  die(l);
}

void fatal_msg(const char* msg) {
  LineBuf l;
  l.str("magslab: ").str(msg).end();
  die(l);
}

void invariant_failed(const char* file, int line, const char* what) {
  LineBuf l;
  l.str("magslab: invariant broken at ")
      .str(file)
      .str(":")
      .num(static_cast<uint64_t>(line))
      .str(": ")
      .str(what)
      .end();
  die(l);
}

void misuse(Misuse kind, const void* addr, const BlockInfo& info) {
  vg::errors_back_on();  // found inside an entry point, with memcheck's reports off
  LineBuf l;
  l.str("magslab: ").str(misuse_message(kind)).str(" ").hex(reinterpret_cast<uintptr_t>(addr));
  const char* sep = " (";
  switch (info.kind) {
    case BlockInfo::kSmall:
      l.str(" (class ").num(info.cls).str(", ").num(info.size).str(" B");
      sep = "; ";
      break;
    case BlockInfo::kLarge:
    case BlockInfo::kHuge:
      l.str(info.kind == BlockInfo::kLarge ? " (large block" : " (huge block");
      if (info.size != 0) l.str(", ").num(info.size).str(" B");
      sep = "; ";
      break;
    case BlockInfo::kZero:
      l.str(" (zero-size block");
      sep = "; ";
      break;
    case BlockInfo::kUnknown:
      break;
  }
  bool any = info.kind != BlockInfo::kUnknown;
  if (info.requested != kUnknownRequest) {
    l.str(sep).str("requested ").num(info.requested).str(" B");
    sep = "; ";
    any = true;
  }
  if (info.note != nullptr) l.str(sep).str(info.note);
  if (any || info.note != nullptr) l.str(")");
  l.end();
  die(l);
}

}  // namespace magslab::platform
