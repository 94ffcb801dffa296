#!/bin/bash
# Instructions per malloc(16)+free pair, measured deterministically with
# callgrind. For every allocator and mode the measured function
# (measure_<mode>_<allocator>, noinline, in bench/fastpath.cc) is collected
# alone via --toggle-collect, at two iteration counts N1 and N2; the result is
#   (Ir(N2) - Ir(N1)) / (N2 - N1)
# which cancels the fixed costs (call overhead, warm-up effects, loop set-up).
#
# Usage: bench/callgrind.sh [N1 [N2]]   (defaults 100000 200000)
# Modes: pairs, batch (the headline loops) and pairs-touch, batch-touch
#        (the same, with the program writing the block's first word before free).
# Env:   ALLOCATORS="magslab mimalloc ..."  KEEP=1 (keep the callgrind.out files)
# Prints a Markdown table. Run bench/build.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

N1=${1:-100000}
N2=${2:-200000}
ALLOCATORS=${ALLOCATORS:-"magslab mimalloc jemalloc jemalloc-std tbb glibc"}
MODES="pairs batch pairs-touch batch-touch"
OUT=$(mktemp -d /tmp/magslab-callgrind.XXXXXX)

binary() {
  case $1 in
    mimalloc) echo bench/fastpath_mi ;;
    jemalloc | jemalloc-std) echo bench/fastpath_je ;;
    *) echo bench/fastpath ;;
  esac
}

# Total collected Ir of one run.
ir() { # allocator mode iterations
  local a=$1 m=$2 n=$3 f="$OUT/callgrind.$1.$2.$3"
  valgrind --tool=callgrind --callgrind-out-file="$f" \
    --toggle-collect="measure_${m//-/_}_${a//-/_}" \
    "$(binary "$a")" "$a" "$m" "$n" >/dev/null 2>"$f.log" || {
    echo "valgrind failed for $a $m $n, see $f.log" >&2
    exit 1
  }
  # "totals:" (or, in older formats, "summary:") holds the collected Ir.
  local t
  t=$(awk '/^totals:/ {t=$2} /^summary:/ {s=$2} END {print (t != "" ? t : s)}' "$f")
  [ -n "$t" ] || { echo "no totals in $f" >&2; exit 1; }
  echo "$t"
}

declare -A R
for a in $ALLOCATORS; do
  for m in $MODES; do
    i1=$(ir "$a" "$m" "$N1")
    i2=$(ir "$a" "$m" "$N2")
    R[$a.$m]=$(awk -v a="$i1" -v b="$i2" -v n1="$N1" -v n2="$N2" \
      'BEGIN {printf "%.1f", (b - a) / (n2 - n1)}')
    echo "$a $m: Ir($N1)=$i1 Ir($N2)=$i2 -> ${R[$a.$m]}/pair" >&2
  done
done

echo "Instructions (Ir) per malloc(16)+free pair, measured loop included:"
echo
echo "| allocator | pairs | batch (1000) | pairs-touch | batch-touch (1000) |"
echo "|---|---:|---:|---:|---:|"
for a in $ALLOCATORS; do
  echo "| $a | ${R[$a.pairs]} | ${R[$a.batch]} | ${R[$a.pairs-touch]} | ${R[$a.batch-touch]} |"
done
echo
echo "callgrind $(valgrind --version | sed 's/valgrind-//'), N1=$N1, N2=$N2; Ir counted inside measure_<mode>_<allocator> only (loop overhead included)."

if [ "${KEEP:-0}" = 1 ]; then echo "callgrind files kept in $OUT" >&2; else rm -rf "$OUT"; fi
