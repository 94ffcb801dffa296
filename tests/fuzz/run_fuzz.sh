#!/usr/bin/env bash
# Runs the libFuzzer target on a fresh copy of the seed corpus (never in the
# source tree): run_fuzz.sh FUZZER CORPUS_DIR WORK_DIR [SECONDS]
# Fails (non-zero) if the fuzzer finds a crash; the reproducer is left in
# WORK_DIR/artifacts/. MAGSLAB_FUZZ_SECONDS overrides SECONDS.
set -euo pipefail
fuzzer=$1
corpus=$2
work=$3
seconds=${MAGSLAB_FUZZ_SECONDS:-${4:-60}}

rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp "$corpus"/* "$work/corpus/"
exec "$fuzzer" "$work/corpus" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
  -artifact_prefix="$work/artifacts/" -print_final_stats=1
