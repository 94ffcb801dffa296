#!/usr/bin/env bash
# Usage: cmake/test_install.sh <source dir> <build dir>
#
# Installs the build tree into a temporary prefix, then builds and runs a small
# consumer project against it twice: via find_package(magslab) (shared and static
# targets) and via pkg-config. Run by the CTest test `install_consumer`.
#
# Optional environment (set by CTest from the configured build):
#   MAGSLAB_CC, MAGSLAB_CXX       compilers to use (default cc / c++)
#   MAGSLAB_CFLAGS, MAGSLAB_CXXFLAGS, MAGSLAB_LDFLAGS
#                                 extra flags, e.g. sanitizer flags, so that a
#                                 sanitized libmagslab links
#   MAGSLAB_BUILD_TYPE            build type for the consumer project
#   MAGSLAB_KEEP_TMP=1            keep the temporary directory for inspection
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 <source dir> <build dir>" >&2
  exit 2
fi
src_dir=$(cd "$1" && pwd)
build_dir=$(cd "$2" && pwd)

cc=${MAGSLAB_CC:-cc}
cxx=${MAGSLAB_CXX:-c++}
cflags=${MAGSLAB_CFLAGS:-}
cxxflags=${MAGSLAB_CXXFLAGS:-}
ldflags=${MAGSLAB_LDFLAGS:-}
build_type=${MAGSLAB_BUILD_TYPE:-Release}
[[ -n "$build_type" ]] || build_type=Release

tmp=$(mktemp -d "${TMPDIR:-/tmp}/magslab-install.XXXXXX")
cleanup() {
  if [[ "${MAGSLAB_KEEP_TMP:-0}" == 1 ]]; then
    echo "test_install: keeping $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

prefix=$tmp/prefix
step() { echo "== test_install: $*"; }

step "installing $build_dir into $prefix"
cmake --install "$build_dir" --prefix "$prefix"

[[ -f "$prefix/include/magslab/magslab.h" ]] ||
  { echo "test_install: magslab.h not installed" >&2; exit 1; }
[[ -f "$prefix/include/magslab/magslab.hpp" ]] ||
  { echo "test_install: magslab.hpp not installed" >&2; exit 1; }
config=$(find "$prefix" -name magslabConfig.cmake -print -quit)
pcfile=$(find "$prefix" -name magslab.pc -print -quit)
[[ -n "$config" ]] || { echo "test_install: magslabConfig.cmake not installed" >&2; exit 1; }
[[ -n "$pcfile" ]] || { echo "test_install: magslab.pc not installed" >&2; exit 1; }
libdir=$(dirname "$(find "$prefix" -name 'libmagslab.so' -print -quit)")
[[ -f "$libdir/libmagslab.a" ]] || { echo "test_install: libmagslab.a not installed" >&2; exit 1; }

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

step "configuring consumer with find_package(magslab)"
cmake -S "$src_dir/tests/consumer" -B "$tmp/consumer-build" "${generator[@]}" \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE="$build_type" \
  -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_C_FLAGS="$cflags" \
  -DCMAKE_CXX_FLAGS="$cxxflags" \
  -DCMAKE_EXE_LINKER_FLAGS="$ldflags"
step "building consumer"
cmake --build "$tmp/consumer-build"

step "running consumer_shared"
"$tmp/consumer-build/consumer_shared"
step "running consumer_static"
"$tmp/consumer-build/consumer_static"
step "running consumer_cxx_shared"
"$tmp/consumer-build/consumer_cxx_shared"
step "running consumer_cxx_static"
"$tmp/consumer-build/consumer_cxx_static"

step "building consumer with pkg-config ($pcfile)"
pc_dir=$(dirname "$pcfile")
# Word splitting of the flag variables and of pkg-config's output is intended.
# shellcheck disable=SC2046,SC2086
"$cc" $cflags -o "$tmp/consumer_pkgconfig" "$src_dir/tests/consumer/consumer.c" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs magslab) $ldflags
step "running consumer_pkgconfig"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer_pkgconfig"

step "building consumer_cxx with pkg-config"
# shellcheck disable=SC2046,SC2086
"$cxx" -std=c++20 $cxxflags -o "$tmp/consumer_cxx_pkgconfig" "$src_dir/tests/consumer/consumer_cxx.cc" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs magslab) -pthread $ldflags
step "running consumer_cxx_pkgconfig"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer_cxx_pkgconfig"

step "OK"
