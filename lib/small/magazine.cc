// small/magazine: the shared definitions of magazine.h.
#include "small/magazine.h"

namespace magslab {

Magazine g_empty_magazine;
std::atomic<uint64_t> g_free_key{0};

}  // namespace magslab
