/* Preloaded before libmagslab-check.so by the check_fork_zero test
 * (tests/check_fork_zero_main.c): check mode's zero-size range — a 256 MiB
 * PROT_NONE reservation — takes 200 ms, as if the thread making it were
 * preempted there. Every other mmap goes straight to libc's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  static void* (*real)(void*, size_t, int, int, int, off_t);
  if (real == NULL) real = (void* (*)(void*, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
  if (len == (size_t)256 << 20 && prot == PROT_NONE) usleep(200000);
  return real(addr, len, prot, flags, fd, off);
}
