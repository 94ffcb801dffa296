// testing/no_decay: include in a test file whose assertions need exact cache
// contents (depot, empty slabs, dirty pages): decay passes (lib/small/decay.h)
// would otherwise give cached memory back at any moment, from the background
// thread or a slow path. Decay itself is tested in tests/decay_test.cc.
#pragma once
#include "small/decay.h"

namespace mstest {
inline const bool kDecayPaused = (magslab::decay::pause(true), true);
}  // namespace mstest
