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

banner "throughput: magslab vs mimalloc, TBB, jemalloc, glibc (median of ${MAGSLAB_ROUNDS:-3} rounds, 2 and 16 threads)"
ROUNDS=${MAGSLAB_ROUNDS:-3} bench/compare.sh "${MAGSLAB_BENCH_SECONDS:-0.5}"

# The full benchmark suite (Google Benchmark, macro workloads, plots) is added
# here by the benchmark work. (The stress-harness run is above, before the benchmarks.)

echo
echo "main.sh: done"
