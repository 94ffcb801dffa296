#!/usr/bin/env bash
# Builds and tests magslab under each CMake preset in turn:
#   release  - every test (unit + mt + install_consumer)
#   debug    - -O0 with magslab's invariant checks compiled in, every test
#   tsan     - ThreadSanitizer build of what the tests labelled `mt` run (the
#              build preset's target magslab_mt_tests), and those tests
#   asan     - AddressSanitizer + UBSan build, every test
# Choose stages with MAGSLAB_TEST_PRESETS (default: "release debug tsan asan").
# Stops at the first failing stage with a non-zero exit status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

presets=${MAGSLAB_TEST_PRESETS:-release debug tsan asan}
jobs=${MAGSLAB_JOBS:-2}

banner() {
  echo
  echo "=================================================================="
  echo "== $*"
  echo "=================================================================="
}

banner "deps"
scripts/deps.sh

passed=()
current=""
on_exit() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo
    echo "test.sh: FAILED in stage '${current:-setup}' (passed: ${passed[*]:-none})" >&2
  fi
}
trap on_exit EXIT

for preset in $presets; do
  case "$preset" in
    release|debug|tsan|asan) ;;
    *) echo "test.sh: unknown preset '$preset' (expected release, debug, tsan or asan)" >&2; exit 2 ;;
  esac
  current=$preset

  banner "$preset: configure"
  cmake --preset "$preset"

  banner "$preset: build"
  cmake --build --preset "$preset" -j "$jobs"

  banner "$preset: test"
  # The test presets select the tests (tsan: label mt) and set sanitizer options.
  ctest --preset "$preset" -j "$jobs"

  passed+=("$preset")
done

current=""
echo
echo "test.sh: ALL PASSED (${passed[*]})"
