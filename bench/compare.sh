#!/bin/bash
# Multithreaded throughput comparison (bench/throughput.cc).
#
# Usage: bench/compare.sh [seconds]      (default 1 s per run)
# Env:   ROUNDS (default 5), THREADS (default "2 16"),
#        WORKLOADS (default "random prodcons"),
#        ALLOCATORS (default "magslab mimalloc tbb jemalloc-std glibc")
#
# For each workload x thread count, the allocators run interleaved
# (A B C D E, A B C D E, ...) ROUNDS times, so slow drifts of the machine hit
# all of them alike; the table shows the median ops/s and its ratio to
# mimalloc's and to TBB's median. jemalloc-std is jemalloc through its standard
# malloc/free (bench/throughput_je links -ljemalloc, so those are jemalloc's);
# its mallocx/dallocx API is "jemalloc". A run whose checksums fail makes the
# cell FAIL and the script exit 1. Run bench/build.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-1}
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-"2 16"}
WORKLOADS=${WORKLOADS:-"random prodcons"}
ALLOCATORS=${ALLOCATORS:-"magslab mimalloc tbb jemalloc-std glibc"}

declare -A RUNS
failed=0
for w in $WORKLOADS; do
  for t in $THREADS; do
    for r in $(seq "$ROUNDS"); do
      for a in $ALLOCATORS; do
        if line=$(bench/throughput "$a" "$w" "$t" "$SECONDS_PER_RUN"); then
          v=$(echo "$line" | awk '$1 == "RESULT" {print $7}')
        else
          echo "FAILED: $a $w $t: $line" >&2
          v=FAIL
          failed=1
        fi
        RUNS[$w.$t.$a]="${RUNS[$w.$t.$a]:-} $v"
        echo "round $r: $a $w $t -> $v" >&2
      done
    done
  done
done

median() { # values... (FAIL poisons the cell); plain POSIX awk (Debian: mawk)
  printf '%s\n' "$@" | sort -g | awk '
    /FAIL/ {bad = 1} {v[NR] = $1}
    END {
      if (bad) { print "FAIL"; exit }
      n = NR
      print (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
    }'
}

ratio() { # a b
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "FAIL" || b == "FAIL" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'
}

declare -A MED
for w in $WORKLOADS; do
  for t in $THREADS; do
    for a in $ALLOCATORS; do
      # shellcheck disable=SC2086
      MED[$w.$t.$a]=$(median ${RUNS[$w.$t.$a]})
    done
  done
done

echo "| workload | threads | allocator | median ops/s | vs mimalloc | vs TBB | runs (Mops/s) |"
echo "|---|---:|---|---:|---:|---:|---|"
for w in $WORKLOADS; do
  for t in $THREADS; do
    for a in $ALLOCATORS; do
      m=${MED[$w.$t.$a]}
      # shellcheck disable=SC2086
      runs=$(printf '%s\n' ${RUNS[$w.$t.$a]} |
        awk '{printf "%s%s", (NR > 1 ? " " : ""), ($1 == "FAIL" ? "FAIL" : sprintf("%.2f", $1 / 1e6))}')
      if [ "$m" = FAIL ]; then shown=FAIL; else shown=$(awk -v m="$m" 'BEGIN {printf "%.0f", m}'); fi
      echo "| $w | $t | $a | $shown | $(ratio "$m" "${MED[$w.$t.mimalloc]:-}") | $(ratio "$m" "${MED[$w.$t.tbb]:-}") | $runs |"
    done
  done
done
echo
echo "$ROUNDS interleaved rounds of ${SECONDS_PER_RUN} s per cell; ops = one free + one malloc (random) or one block produced, checked and freed (prodcons)."
exit $failed
