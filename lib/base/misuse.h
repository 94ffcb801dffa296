// base/misuse: the kinds of heap misuse magslab reports, and their one table
// of messages. platform::misuse() prints
//   magslab: <message> 0x<address>[ (<what is known about the block>)]
// and aborts; every detector above calls it with one of these kinds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace magslab {

enum class Misuse : uint8_t {
  kInvalidFree,        // free of a pointer magslab did not hand out (or not its start)
  kDoubleFree,         // free of a block that is already free
  kInvalidRealloc,     // realloc of such a pointer
  kInvalidUsableSize,  // malloc_usable_size of such a pointer
  kWrongSizedFree,     // free_sized / sized delete with a size the block cannot have
  // Check mode only (kCheckMode, lib/api/check.cc):
  kOverflow,        // bytes past the requested size changed (the canary in the slack)
  kWriteAfterFree,  // a freed block's fill pattern changed while it sat in quarantine
};

inline const char* misuse_message(Misuse k) {
  switch (k) {
    case Misuse::kInvalidFree:
      return "invalid free of";
    case Misuse::kDoubleFree:
      return "double free of";
    case Misuse::kInvalidRealloc:
      return "invalid realloc of";
    case Misuse::kInvalidUsableSize:
      return "invalid pointer passed to usable_size:";
    case Misuse::kWrongSizedFree:
      return "free_sized with a wrong size of";
    case Misuse::kOverflow:
      return "overflow past the requested size of";
    case Misuse::kWriteAfterFree:
      return "write after free of";
  }
  return "misuse of";
}

inline constexpr size_t kUnknownRequest = ~size_t{0};

// What is known about the block the address points into, for the message.
struct BlockInfo {
  // kZero: check mode's zero-size blocks (api/check.cc).
  enum Kind : uint8_t { kUnknown, kSmall, kLarge, kHuge, kZero } kind = kUnknown;
  unsigned cls = 0;                    // kSmall: the size class
  size_t size = 0;                     // the block's usable size (0: not known)
  const char* note = nullptr;          // e.g. "already in this thread's magazine"
  size_t requested = kUnknownRequest;  // check mode: the size the program asked for

  static BlockInfo small(unsigned c, size_t object_size, const char* note = nullptr) {
    return BlockInfo{kSmall, c, object_size, note};
  }
  static BlockInfo large(size_t bytes, const char* note = nullptr) {
    return BlockInfo{kLarge, 0, bytes, note};
  }
  static BlockInfo huge(size_t bytes, const char* note = nullptr) {
    return BlockInfo{kHuge, 0, bytes, note};
  }
};

}  // namespace magslab
