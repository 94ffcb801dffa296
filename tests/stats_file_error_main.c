/* The exit report's own error — a stats_file that cannot be opened — goes to
 * the duplicate of stderr taken when the library loads, like the report
 * itself. A program that closes stderr and opens a file of its own at fd 2 (a
 * daemon's log) found the line "magslab: cannot open stats_file ..." at the
 * end of that file (stop 42's bug hunt): until then the duplicate was taken
 * only for show_stats without a stats_file, and the line went to fd 2.
 * Usage: stats_file_error_main FILE — writes "user data\n" to FILE at fd 2,
 * exits. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "magslab/magslab.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  void* p = magslab_malloc(100); /* the library is loaded and in use */
  magslab_free(p);
  close(2);
  int f = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (f != 2) return 3;
  const char data[] = "user data\n";
  if (write(2, data, strlen(data)) != (ssize_t)strlen(data)) return 4;
  return 0; /* fd 2 stays open: the line at exit would land there */
}
