/* A correct LD_PRELOAD shim: every call goes straight to glibc. The harness
 * must pass with it (exit 0): proof that the shim machinery is not the bug. */
#include "shim_common.h"
