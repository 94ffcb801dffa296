/* show_stats keeps a duplicate of stderr for its exit report (fd 100 or
 * above). A forked child that closes fds 0, 1 and 2 (a daemon) must not hold
 * the caller's stderr through that duplicate (review, stop 32): a shell
 * reading the program's output through a pipe got end-of-file only when the
 * daemon exited, and then found the daemon's report in it.
 * Exit 0: the child holds no fd on the parent's stderr after closing 0-2;
 * 1: it does; 2: setup failed. Run with MAGSLAB_OPTIONS=show_stats=text. */
#define _DEFAULT_SOURCE /* dirfd */
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "magslab/magslab.h"

int main(void) {
  void* p = magslab_malloc(100); /* the library is loaded and in use */
  magslab_free(p);
  struct stat err;
  if (fstat(2, &err) != 0) return 2;
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) {
    close(0);
    close(1);
    close(2);
    DIR* d = opendir("/proc/self/fd");
    if (d == NULL) _exit(2);
    int held = 0;
    for (struct dirent* e; (e = readdir(d)) != NULL;) {
      if (e->d_name[0] == '.') continue;
      int fd = atoi(e->d_name);
      struct stat st;
      if (fd != dirfd(d) && fstat(fd, &st) == 0 && st.st_dev == err.st_dev &&
          st.st_ino == err.st_ino)
        held = 1;
    }
    closedir(d);
    _exit(held);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 2;
  return WEXITSTATUS(status);
}
