#!/usr/bin/env bash
# Builds magslab (release preset) and runs the multithreaded example program.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

banner() {
  echo
  echo "=================================================================="
  echo "== $*"
  echo "=================================================================="
}

banner "deps"
scripts/deps.sh

banner "release: configure"
cmake --preset release

banner "release: build"
cmake --build --preset release -j "${MAGSLAB_JOBS:-2}"

banner "threads_demo: C API from several threads"
build/release/threads_demo

# Further steps (a stress-harness run, then the benchmark comparison against
# mimalloc, TBB, jemalloc and glibc) are added here by the stress and benchmark work.

echo
echo "main.sh: done"
