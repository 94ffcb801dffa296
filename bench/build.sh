#!/bin/sh
# Builds the measurement programs in bench/ with plain g++ (the CMake
# integration comes later). Needs build/release/libmagslab.a:
#   cmake --preset release && cmake --build --preset release -j2
#
# Debian's libmimalloc.so.2 and libjemalloc.so.2 export unprefixed malloc/free,
# so linking them makes them the process malloc. Hence three binaries per
# program: <prog> (magslab, tbb, glibc), <prog>_mi (mimalloc), <prog>_je
# (jemalloc). <prog> re-executes the sibling when given mimalloc/jemalloc.
set -eu
cd "$(dirname "$0")/.."

LIB=build/release/libmagslab.a
[ -f "$LIB" ] || { echo "missing $LIB; build the release preset first" >&2; exit 1; }

CXX=${CXX:-g++}
FLAGS="-std=c++20 -O2 -g -Wall -Wextra -Iinclude -pthread"

# FLAGS is a list of words: split on purpose.
# shellcheck disable=SC2086
for prog in fastpath throughput; do
  $CXX $FLAGS -DBENCH_WITH_MAGSLAB -DBENCH_WITH_TBB -DBENCH_WITH_GLIBC \
    -o bench/$prog bench/$prog.cc "$LIB" -ltbbmalloc
  $CXX $FLAGS -DBENCH_WITH_MIMALLOC -DBENCH_SELF_SUFFIX='"_mi"' \
    -o bench/${prog}_mi bench/$prog.cc -lmimalloc
  $CXX $FLAGS -DBENCH_WITH_JEMALLOC -DBENCH_SELF_SUFFIX='"_je"' \
    -o bench/${prog}_je bench/$prog.cc -ljemalloc
done
echo "built: bench/fastpath{,_mi,_je} bench/throughput{,_mi,_je}"
