#!/usr/bin/env bash
# A read after free, under memcheck with the library preloaded from paths of 40 to 84
# characters: memcheck must name the program's own block (size 100), and report nothing else. At load the override's
# runtime lookups fail in a C program and glibc allocates each message with the library's path
# in it; where one of those blocks was freed and landed in the class of 100 bytes, memcheck named
# it (size 99 or 110) instead of the program's (a Debug CI run, stop 39). Every length class of
# the messages is met by one of these paths (steps of 4 bytes, classes 16 wide).
# Usage: memcheck_paths.sh VALGRIND LIBRARY PROGRAM
set -u
valgrind=$1 lib=$(realpath "$2") prog=$3
dir=$(mktemp -d /tmp/mcp.XXXXXX) || exit 1  # 15 characters, whatever TMPDIR says
trap 'rm -rf "$dir"' EXIT
failed=0
for len in $(seq 40 4 84); do
  pad=$((len - ${#dir} - 1))
  name=$(head -c "$pad" /dev/zero | tr '\0' x)
  ln -s "$lib" "$dir/$name"
  out=$(env LD_PRELOAD="$dir/$name" "$valgrind" --soname-synonyms=somalloc=nouserintercepts \
    "$prog" use-after-free 2>&1)
  if grep -q "cannot be preloaded" <<<"$out"; then
    echo "path of $len characters: the library was not loaded:"
    echo "$out"
    failed=1
  elif grep -q "is 50 bytes inside a block of size 100 free'd" <<<"$out" &&
    grep -q "ERROR SUMMARY: 1 errors from 1 contexts" <<<"$out"; then
    echo "path of $len characters: ok"
  else
    echo "path of $len characters: memcheck named another block, or reported more:"
    grep -E "Invalid|inside a block|ERROR SUMMARY" <<<"$out"
    failed=1
  fi
  rm -f "$dir/$name"
done
[ "$failed" = 0 ] && echo "all paths ok"
exit "$failed"
