/* testing/decay_thread: whether magslab's decay thread ("magslab-decay") runs
 * in this process, for the C test programs that need it started
 * (tests/pthread_exit_main.c, tests/decay_refused_wait_main.c). C. */
#pragma once
#include <dirent.h>
#include <stdio.h>
#include <string.h>

/* Whether a thread of this process is named magslab-decay. */
static inline int decay_thread_runs(void) {
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return 0;
  int found = 0;
  struct dirent* e;
  while (!found && (e = readdir(d)) != NULL) {
    char path[300], name[64] = "";
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE* f = fopen(path, "r");
    if (f == NULL) continue;
    if (fgets(name, sizeof name, f) != NULL) found = strncmp(name, "magslab-decay", 13) == 0;
    fclose(f);
  }
  closedir(d);
  return found;
}
