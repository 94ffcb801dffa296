#!/usr/bin/env bash
# Runs a test program once on glibc and once on magslab and requires the same
# stdout transcript and exit status 0 from both.
#
#   compare.sh preload <override.so> <program> [args...]
#       baseline: <program> --expect=glibc            (no LD_PRELOAD)
#       magslab:  LD_PRELOAD=<override.so> <program> --expect=magslab
#   compare.sh linked <baseline-program> <linked-program> [args...]
#       baseline: <baseline-program> --expect=glibc
#       magslab:  <linked-program> --expect=magslab   (linked to the override)
#
# Both runs set MAGSLAB_SHOW_STATS=1. Proof that magslab was in use: the
# programs check dlsym(RTLD_DEFAULT, "magslab_malloc") against --expect, and
# "magslab: stats" must appear on stderr in the magslab run only, with a
# nonzero "peak in use".
set -uo pipefail

die() {
  echo "compare.sh: FAIL: $*" >&2
  exit 1
}

[[ $# -ge 3 ]] || die "usage: compare.sh preload <so> <prog> [args] | linked <base> <linked> [args]"
mode=$1
case "$mode" in
  preload)
    so=$2 base=$3 test=$3
    [[ -f "$so" ]] || die "override library not found: $so"
    preload=$so
    ;;
  linked)
    base=$2 test=$3 preload=""
    ;;
  *) die "unknown mode '$mode'" ;;
esac
shift 3
# Absolute paths: the runs happen in a scratch directory.
abs() { [[ -e "$1" ]] && realpath "$1" || echo "$1"; }
base=$(abs "$base") test=$(abs "$test")
[[ -z "$preload" ]] || preload=$(abs "$preload")

work=$(mktemp -d "${TMPDIR:-/tmp}/magslab-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || die "cannot enter $work"

t0=$(date +%s.%N)
env -u LD_PRELOAD MAGSLAB_SHOW_STATS=1 "$base" --expect=glibc "$@" >base.out 2>base.err
base_rc=$?
t1=$(date +%s.%N)
if [[ -n "$preload" ]]; then
  env LD_PRELOAD="$preload" MAGSLAB_SHOW_STATS=1 "$test" --expect=magslab "$@" >test.out 2>test.err
else
  env -u LD_PRELOAD MAGSLAB_SHOW_STATS=1 "$test" --expect=magslab "$@" >test.out 2>test.err
fi
test_rc=$?
t2=$(date +%s.%N)
awk -v n="$(basename "$test")" -v a="$t0" -v b="$t1" -v c="$t2" -v r1="$base_rc" -v r2="$test_rc" \
  'BEGIN { printf "compare.sh: %s: glibc run %.2fs (rc %d), magslab run %.2fs (rc %d)\n", n, b - a, r1, c - b, r2 }'

show() {
  echo "---- $1 (last 40 lines) ----" >&2
  tail -n 40 "$1" >&2
}

fail=0
if [[ $base_rc -ne 0 ]]; then
  show base.out; show base.err
  echo "compare.sh: FAIL: the glibc run exited with status $base_rc" >&2
  fail=1
fi
if [[ $test_rc -ne 0 ]]; then
  show test.out; grep -v '^  [0-9]' test.err | tail -n 40 >&2
  echo "compare.sh: FAIL: the magslab run exited with status $test_rc" >&2
  fail=1
fi
if ! cmp -s base.out test.out; then
  echo "---- transcript diff (glibc vs magslab) ----" >&2
  diff base.out test.out | head -n 60 >&2
  echo "compare.sh: FAIL: transcripts differ" >&2
  fail=1
fi
if grep -q '^magslab: stats' base.err; then
  echo "compare.sh: FAIL: the glibc run printed magslab stats (LD_PRELOAD leaked into it?)" >&2
  fail=1
fi
if ! grep -q '^magslab: stats' test.err; then
  show test.err
  echo "compare.sh: FAIL: no 'magslab: stats' on stderr of the magslab run: not preloaded/linked?" >&2
  fail=1
elif ! grep -Eq '^  peak in use +[1-9][0-9]* B' test.err; then
  echo "compare.sh: FAIL: magslab stats report no allocation (peak in use 0)" >&2
  fail=1
fi
[[ $fail -eq 0 ]] || exit 1
echo "compare.sh: PASS: $(wc -l <test.out) transcript lines identical; magslab in use" \
     "($(grep -c '^magslab: stats' test.err) stats report(s))"
