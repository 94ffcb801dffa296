/* The exit report of show_stats goes to a duplicate of stderr taken when the
 * library loads (fd 100 or above). A program that closes every fd above 2 (a
 * daemon) and then opens a file of its own at that number must not find the
 * report in its file (review, stop 31): it goes to stderr instead.
 * Usage: stats_fd_main FILE — writes "user data\n" to FILE at fd 100, exits. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "magslab/magslab.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  void* p = magslab_malloc(100); /* the library is loaded and in use */
  magslab_free(p);
  for (int fd = 3; fd < 1024; ++fd) close(fd);
  int f = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (f < 0 || (f != 100 && dup2(f, 100) != 100)) return 3;
  if (f != 100) close(f);
  const char data[] = "user data\n";
  if (write(100, data, strlen(data)) != (ssize_t)strlen(data)) return 4;
  return 0; /* fd 100 stays open: the report at exit would land there */
}
