#!/usr/bin/env bash
# expect_exit.sh CODE SHIM COMMAND...: runs COMMAND with LD_PRELOAD=SHIM and
# passes only if it exits with CODE. For CODE 1 the harness must also have
# printed exactly one "magslab-stress: FAILURE" line (a precise report, not a
# crash).
set -u
want=$1 shim=$2
shift 2
err=$(mktemp)
trap 'rm -f "$err"' EXIT
LD_PRELOAD="$shim" "$@" 2>"$err"
rc=$?
cat "$err" >&2
if [[ $rc -ne $want ]]; then
  echo "expect_exit: exit status $rc, expected $want" >&2
  exit 1
fi
if [[ $want -eq 1 ]]; then
  n=$(grep -c '^magslab-stress: FAILURE ' "$err")
  if [[ $n -ne 1 ]]; then
    echo "expect_exit: $n FAILURE lines, expected exactly 1" >&2
    exit 1
  fi
fi
echo "expect_exit: exit status $rc as expected"
