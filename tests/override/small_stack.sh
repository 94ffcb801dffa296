#!/usr/bin/env bash
# small_stack.sh LIB PROGRAM: PROGRAM (small_stack.c) under LD_PRELOAD=LIB with the exit report
# and check mode's leak report on; passes if it exits 0, printed OK, and the report (proof that
# LIB was in use) came out, and the leak report too when LIB is check mode's.
set -u
lib=$1 prog=$2
err=$(mktemp)
trap 'rm -f "$err"' EXIT
out=$(MAGSLAB_SHOW_STATS=text MAGSLAB_LEAK_REPORT=1 LD_PRELOAD=$lib "$prog" 2>"$err")
rc=$?
leaks=ok
if [[ "$(basename "$lib")" == *check* ]] && ! grep -q '^magslab: leak report: ' "$err"; then leaks=missing; fi
if [[ $rc -ne 0 || "$out" != "OK" || $leaks != ok ]] || ! grep -q '^magslab: stats (version' "$err"; then
  echo "FAIL: exit status $rc, stdout '$out'; stderr:"
  head -c 2000 "$err"
  exit 1
fi
echo "OK: exit status 0 and the exit report(s), every call on a 16 KiB stack"
