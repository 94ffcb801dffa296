#!/usr/bin/env bash
# Installs the Debian 12 packages magslab needs to build, test and benchmark,
# if any are missing. Safe to run repeatedly; does nothing when all are present.
set -euo pipefail

packages=(
  cmake
  g++
  clang
  clang-format
  ninja-build
  pkg-config
  libgtest-dev
  # property tests (tests/property*_test.cc): RapidCheck and its gtest glue
  librapidcheck-dev
  # libFuzzer + ASan/UBSan runtimes for the clang-built fuzzer (tests/fuzz/)
  libclang-rt-14-dev
  libbenchmark-dev
  libmimalloc-dev
  libtbb-dev
  libjemalloc-dev
  valgrind
  # benchmarks (bench/run): tcmalloc as a peer, gnuplot for the plots
  libgoogle-perftools-dev
  gnuplot-nox
  python3
  # real programs run under LD_PRELOAD by the override tests (tests/override/)
  # and by bench/run's real-program cells (bench/real/: python3, g++, sqlite3)
  git
  sqlite3
  coreutils
  # GNU time: wall time and peak RSS of bench/run's real programs (/usr/bin/time)
  time
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "deps: missing packages: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "deps: not running as root; install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
echo "deps: installed ${missing[*]}"
