// Check mode's leak report comes after every library's destructors (ctest
// check_leak_report_after_library_destructors, with libmagslab-check.so
// preloaded and MAGSLAB_LEAK_REPORT=1): the library this program links
// (tests/check_leak_dtor_lib.c) frees in its destructor the block its
// constructor allocated. The dynamic loader ran magslab's destructor before
// that library's, and the report named the block as a leak ("4321 B in 1 block
// ... still live at exit"; found by a bug-hunt helper, stop 39, with a C++
// library's static std::vector<std::string> too). No stdio here: its buffers
// are never freed: "ready" (the library's block was there) goes out with write().
#include <unistd.h>

int check_leak_dtor_lib_ready(void);

int main(void) {
  if (!check_leak_dtor_lib_ready()) return 1;
  return write(1, "library ready\n", 14) == 14 ? 0 : 1;
}
