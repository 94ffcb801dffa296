/* Preloaded before a test binary: process_vm_readv refused as a seccomp
 * profile or a sandbox may refuse it (EPERM), for the code that asks the
 * kernel whether an address is readable (platform::probe_readable). */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/uio.h>

ssize_t process_vm_readv(pid_t pid, const struct iovec* local, unsigned long liovcnt,
                         const struct iovec* remote, unsigned long riovcnt, unsigned long flags) {
  (void)pid, (void)local, (void)liovcnt, (void)remote, (void)riovcnt, (void)flags;
  errno = EPERM;
  return -1;
}
