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

banner "stress: magslab-stress --smoke (every workload, every byte verified; docs/stress.md)"
build/release/stress/magslab-stress --smoke --allocator magslab

banner "peers: build the measurement programs (bench/build.sh)"
bench/build.sh

banner "fast path: instructions per malloc(16)+free pair (callgrind)"
ALLOCATORS="magslab mimalloc jemalloc-std tbb glibc" bench/callgrind.sh

banner "benchmarks: bench/run --quick (macro + micro vs mimalloc, TBB, jemalloc, tcmalloc, glibc; docs/benchmarks.md)"
bench/run --quick

# The full benchmark run (all thread counts, 5 repeats): bench/run (docs/benchmarks.md).

echo
echo "main.sh: done"
