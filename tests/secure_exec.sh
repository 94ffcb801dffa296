#!/usr/bin/env bash
# secure_exec.sh PROGRAM: PROGRAM (tests/secure_exec_main.c, magslab linked in)
# copied setuid root and run as nobody must ignore MAGSLAB_* variables: no
# stats_file written with root's rights, nothing printed by verbose or
# show_stats. The same copy run by root (no secure execution) does write the
# file: the options work, and the difference is AT_SECURE. Exit 77 (skipped)
# where setuid cannot be exercised: not root, no setpriv, a nosuid /tmp.
set -u
prog=$1
[[ $(id -u) -eq 0 ]] || { echo "skipped: needs root to make a setuid program"; exit 77; }
command -v setpriv >/dev/null || { echo "skipped: no setpriv"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
mkdir "$dir/private" && chmod 700 "$dir/private"  # root may write here, nobody may not
cp "$prog" "$dir/prog" && chown root:root "$dir/prog" && chmod 4755 "$dir/prog"
opts="show_stats=text,verbose=1,stats_file=$dir/private/stats"

# Control: root, not secure: the file is written.
out=$(MAGSLAB_OPTIONS=$opts "$dir/prog" 2>&1)
if ! grep -q '^at_secure=0$' <<<"$out" || [[ ! -s $dir/private/stats ]]; then
  echo "control run (root) did not write the stats file:"; echo "$out"; exit 1
fi
rm -f "$dir/private/stats"

# Secure: setuid root, run by nobody.
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups env MAGSLAB_OPTIONS="$opts" \
      MAGSLAB_STATS_FILE="$dir/private/stats2" MAGSLAB_VERBOSE=1 "$dir/prog" 2>&1)
rc=$?
if ! grep -q '^at_secure=1$' <<<"$out"; then
  echo "skipped: the setuid copy did not run in secure mode here (nosuid mount?):"; echo "$out"
  exit 77
fi
if [[ $rc -ne 0 || -e $dir/private/stats || -e $dir/private/stats2 ]] || grep -q magslab <<<"$out"; then
  echo "FAIL: MAGSLAB_* honoured under secure execution (rc $rc):"; echo "$out"
  ls -l "$dir/private"
  exit 1
fi
echo "ok: MAGSLAB_* ignored under secure execution"
