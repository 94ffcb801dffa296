/* Under secure execution (a setuid or setgid program run by another user:
 * AT_SECURE), magslab reads no MAGSLAB_* variable: they would let the caller
 * make the program write a file of its choosing with its privileges
 * (stats_file) or print its heap's addresses (verbose, show_stats). Run by
 * tests/secure_exec.sh, which makes a setuid-root copy of this program. */
#include <stdio.h>
#include <sys/auxv.h>

#include "magslab/magslab.h"

int main(void) {
  printf("at_secure=%lu\n", getauxval(AT_SECURE));
  fflush(stdout);
  void* p = magslab_malloc(100);
  magslab_free(p);
  return 0;
}
