// Check mode's leak report names the program's call of every operator new
// form (ctest check_leak_report_names_operator_new_callers, with
// libmagslab-check.so preloaded and MAGSLAB_LEAK_REPORT=1). Each function
// below leaks one block of its own size from its own call; until stop 33 the
// nothrow and aligned forms were reported at an address inside magslab's
// operators (their calls into the library were not jumps), and two program
// sites of one form were merged into one line.
#include <new>

#define LEAK_SITE(name, expr)                 \
  extern "C" [[gnu::noinline]] void* name() { \
    void* p = expr;                           \
    asm volatile("" ::: "memory");            \
    return p;                                 \
  }

LEAK_SITE(leak_new, ::operator new(1600))
LEAK_SITE(leak_new_array, ::operator new[](1700))
LEAK_SITE(leak_nothrow_new, ::operator new(1000, std::nothrow))
LEAK_SITE(leak_nothrow_new_array, ::operator new[](1100, std::nothrow))
LEAK_SITE(leak_aligned_new, ::operator new (1200, std::align_val_t{64}))
LEAK_SITE(leak_aligned_new_array, ::operator new[](1300, std::align_val_t{64}))
LEAK_SITE(leak_aligned_nothrow_new, ::operator new (1400, std::align_val_t{64}, std::nothrow))
LEAK_SITE(leak_aligned_nothrow_new_array,
          ::operator new[](1500, std::align_val_t{64}, std::nothrow))

int main() {
  void* volatile keep[] = {leak_new(),
                           leak_new_array(),
                           leak_nothrow_new(),
                           leak_nothrow_new_array(),
                           leak_aligned_new(),
                           leak_aligned_new_array(),
                           leak_aligned_nothrow_new(),
                           leak_aligned_nothrow_new_array()};
  (void)keep;
  return 0;
}
