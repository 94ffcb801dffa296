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

# The version in the header; 0.x minors are not compatible with each other, so the package
# must refuse another 0.minor (SameMinorVersion), and from 1.0 another major.
version=$(sed -n 's/^#define MAGSLAB_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' \
  "$src_dir/include/magslab/magslab.h" | paste -sd.)
major=${version%%.*}
minor=$(echo "$version" | cut -d. -f2)
if [[ $major == 0 ]]; then other=0.$((minor + 1)); else other=$((major + 1)).0; fi
step "find_package(magslab $other) must fail against $version"
mkdir -p "$tmp/other"
printf 'cmake_minimum_required(VERSION 3.25)\nproject(o NONE)\nfind_package(magslab %s REQUIRED)\n' \
  "$other" >"$tmp/other/CMakeLists.txt"
if cmake -S "$tmp/other" -B "$tmp/other/build" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/other.log" 2>&1; then
  echo "test_install: find_package(magslab $other) accepted version $version" >&2
  exit 1
fi
grep -q "magslabConfig.cmake, version: $version" "$tmp/other.log" ||
  { cat "$tmp/other.log"; echo "test_install: not refused for its version" >&2; exit 1; }
if [[ $major == 0 && $minor -gt 0 ]]; then
  sed -i "s/magslab $other/magslab 0.$((minor - 1))/" "$tmp/other/CMakeLists.txt"
  if cmake -S "$tmp/other" -B "$tmp/other/build2" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null 2>&1; then
    echo "test_install: find_package(magslab 0.$((minor - 1))) accepted version $version" >&2
    exit 1
  fi
fi

# What every consumer project is configured with (the C++ one adds its compiler and flags).
consumer_args=("${generator[@]}" -DMAGSLAB_EXPECT_VERSION="$major.$minor"
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE="$build_type" -DCMAKE_C_COMPILER="$cc"
  -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags")
step "configuring consumer with find_package(magslab $major.$minor)"
cmake -S "$src_dir/tests/consumer" -B "$tmp/consumer-build" "${consumer_args[@]}" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$cxxflags"
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
step "running consumer_check (magslab::check)"
readelf -d "$tmp/consumer-build/consumer_check" | grep -q 'NEEDED.*libmagslab-check-api\.so' ||
  { echo "test_install: consumer_check does not need libmagslab-check-api.so" >&2; exit 1; }
"$tmp/consumer-build/consumer_check"
if [[ "$cflags $ldflags" != *-fsanitize=* ]]; then
  step "running consumer_override_check (magslab::override_check)"
  readelf -d "$tmp/consumer-build/consumer_override_check" | grep -q 'NEEDED.*libmagslab-check\.so' ||
    { echo "test_install: consumer_override_check does not need libmagslab-check.so" >&2; exit 1; }
  "$tmp/consumer-build/consumer_override_check"
fi

step "configuring a C-only consumer (project LANGUAGES C): every target a C program links"
cmake -S "$src_dir/tests/consumer_c" -B "$tmp/consumer-c-build" "${consumer_args[@]}"
cmake --build "$tmp/consumer-c-build"
for exe in "$tmp"/consumer-c-build/consumer_c_*; do
  step "running $(basename "$exe")"
  "$exe"
done

step "building consumer with pkg-config ($pcfile)"
pc_dir=$(dirname "$pcfile")
# Word splitting of the flag variables and of pkg-config's output is intended.
# shellcheck disable=SC2046,SC2086
"$cc" $cflags -o "$tmp/consumer_pkgconfig" "$src_dir/tests/consumer/consumer.c" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs magslab) $ldflags
step "running consumer_pkgconfig"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer_pkgconfig"

step "building consumer (C) against libmagslab.a with the C compiler and pkg-config --static"
# No C++ runtime: the static library needs none (README).
# shellcheck disable=SC2046,SC2086
"$cc" $cflags -o "$tmp/consumer_c_pkgconfig_static" "$src_dir/tests/consumer/consumer.c" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags magslab) "$libdir/libmagslab.a" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --static --libs-only-other magslab) $ldflags
if readelf -d "$tmp/consumer_c_pkgconfig_static" | grep -q 'NEEDED.*\(libstdc++\|libmagslab\)'; then
  echo "test_install: the C program linked with libmagslab.a needs libstdc++ or libmagslab.so" >&2
  exit 1
fi
"$tmp/consumer_c_pkgconfig_static"

step "building consumer_cxx with pkg-config"
# shellcheck disable=SC2046,SC2086
"$cxx" -std=c++20 $cxxflags -o "$tmp/consumer_cxx_pkgconfig" "$src_dir/tests/consumer/consumer_cxx.cc" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs magslab) -pthread $ldflags
step "running consumer_cxx_pkgconfig"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer_cxx_pkgconfig"
# Sanitizer builds replace malloc themselves: the override is not tested there (docs/override.md).
if [[ "$cflags $ldflags" == *-fsanitize=* ]]; then
  step "OK (magslab-override.pc not built against: sanitizer build)"
  exit 0
fi
step "building consumer with pkg-config magslab-override"
[[ -f "$pc_dir/magslab-override.pc" ]] || { echo "test_install: magslab-override.pc not installed" >&2; exit 1; }
# shellcheck disable=SC2046,SC2086
"$cc" $cflags -o "$tmp/consumer_override" "$src_dir/tests/consumer/consumer.c" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs magslab-override) $ldflags
readelf -d "$tmp/consumer_override" | grep -q 'NEEDED.*libmagslab-override\.so' ||
  { echo "test_install: consumer_override does not need libmagslab-override.so" >&2; exit 1; }
step "running consumer_override"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer_override"

step "OK"
