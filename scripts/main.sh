#!/usr/bin/env bash
# deps -> build (release preset) -> demo -> stress smoke -> quick benchmarks with
# instruction counts (bench/run --quick --callgrind, docs/benchmarks.md).
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

banner "benchmarks: bench/run --quick --callgrind (macro + micro vs mimalloc, TBB, jemalloc, tcmalloc, glibc, and instructions per malloc(16)+free pair; docs/benchmarks.md)"
bench/run --quick --callgrind

# The full benchmark run (all thread counts, 5 repeats): bench/run (docs/benchmarks.md).

echo
echo "main.sh: done"
