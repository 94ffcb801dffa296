// A library that allocates in its constructor and frees in its destructor
// (tests/check_leak_dtor_main.c, ctest check_leak_report_after_library_destructors).
#include <stdlib.h>
#include <string.h>

static char* g_table;

__attribute__((constructor)) static void make_table(void) {
  g_table = malloc(4321);
  if (g_table != NULL) memset(g_table, 1, 4321);
}

__attribute__((destructor)) static void drop_table(void) {
  free(g_table);
  g_table = NULL;
}

int check_leak_dtor_lib_ready(void) { return g_table != NULL; }
