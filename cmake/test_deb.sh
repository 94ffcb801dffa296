#!/usr/bin/env bash
# Usage: cmake/test_deb.sh <source dir> <build dir>
#
# Builds the Debian packages of the build tree with `cpack -G DEB` into a temporary
# directory and checks them with dpkg-deb (CTest `debian_packages`):
#   - libmagslab<soversion>: Package, Version, Section libs, Architecture, a Depends on
#     libc6 (from dpkg-shlibdeps), a shlibs file and the ldconfig trigger; exactly the four
#     shared libraries (release and check mode) and their soname links, nothing for development;
#   - libmagslab-dev: Section libdevel, Depends on exactly that runtime version; the header,
#     the .so links, libmagslab.a, the override objects, the CMake package and both
#     pkg-config files;
#   - magslab-tools: Section devel, a Depends on libc6 and none on libmagslab; exactly
#     usr/bin/magslab-stress, which runs from the unpacked tree;
# then unpacks the library packages and builds the consumer against the unpacked tree with pkg-config
# (magslab and magslab-override) and runs it.
set -euo pipefail
src_dir=$(cd "$1" && pwd)
build_dir=$(cd "$2" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/magslab-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_deb: $*" >&2; exit 1; }

ver=$(sed -n 's/^#define MAGSLAB_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' \
  "$src_dir/include/magslab/magslab.h" | paste -sd.)
major=${ver%%.*}
minor=$(echo "$ver" | cut -d. -f2)
if [[ $major == 0 ]]; then so=0.$minor; else so=$major; fi
arch=$(dpkg --print-architecture)
rt=libmagslab$so

(cd "$tmp" && cpack -G DEB --config "$build_dir/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1) ||
  { cat "$tmp/cpack.log"; fail "cpack failed"; }
rt_deb=$tmp/out/${rt}_${ver}_$arch.deb
dev_deb=$tmp/out/libmagslab-dev_${ver}_$arch.deb
tools_deb=$tmp/out/magslab-tools_${ver}_$arch.deb
[[ -f $rt_deb && -f $dev_deb && -f $tools_deb ]] ||
  { ls "$tmp/out"; fail "expected $rt_deb, $dev_deb and $tools_deb"; }

field() { dpkg-deb -f "$1" "$2"; }
expect_field() {  # deb field regex
  local v
  v=$(field "$1" "$2")
  [[ $v =~ $3 ]] || fail "$(basename "$1"): $2 is '$v', expected /$3/"
}
expect_field "$rt_deb" Package "^$rt\$"
expect_field "$rt_deb" Version "^$ver\$"
expect_field "$rt_deb" Architecture "^$arch\$"
expect_field "$rt_deb" Section '^libs$'
expect_field "$rt_deb" Depends '(^|, )libc6 \(>= [0-9.]+\)'
expect_field "$dev_deb" Package '^libmagslab-dev$'
expect_field "$dev_deb" Version "^$ver\$"
expect_field "$dev_deb" Section '^libdevel$'
expect_field "$dev_deb" Depends "(^|, )$rt \\(= $ver\\)"
expect_field "$tools_deb" Package '^magslab-tools$'
expect_field "$tools_deb" Version "^$ver\$"
expect_field "$tools_deb" Section '^devel$'
expect_field "$tools_deb" Depends '(^|, )libc6 \(>= [0-9.]+\)'
if [[ $(field "$tools_deb" Depends) == *libmagslab* ]]; then
  fail "magslab-tools depends on libmagslab: $(field "$tools_deb" Depends)"
fi
dpkg-deb -I "$rt_deb" shlibs | grep -qx "libmagslab $so $rt (= $ver)" ||
  fail "shlibs: $(dpkg-deb -I "$rt_deb" shlibs)"
dpkg-deb -I "$rt_deb" triggers | grep -q 'activate-noawait ldconfig' || fail "no ldconfig trigger"

# Contents: file names only, sorted (libdir may be lib or lib/<multiarch>).
list() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./||' | grep -v '/$' | sort; }
list "$rt_deb" >"$tmp/rt.txt"
list "$dev_deb" >"$tmp/dev.txt"
libdir=$(dirname "$(grep -m1 "/libmagslab.so.$ver\$" "$tmp/rt.txt")")
[[ $libdir == usr/lib* ]] || fail "runtime libdir '$libdir'"
sort >"$tmp/rt.want" <<EOT
$libdir/libmagslab-check-api.so.$so
$libdir/libmagslab-check-api.so.$ver
$libdir/libmagslab-check.so.$so
$libdir/libmagslab-check.so.$ver
$libdir/libmagslab-override.so.$so
$libdir/libmagslab-override.so.$ver
$libdir/libmagslab.so.$so
$libdir/libmagslab.so.$ver
EOT
grep -v '^usr/share/doc/' "$tmp/rt.txt" | diff -u "$tmp/rt.want" - || fail "runtime contents"
for f in usr/include/magslab/magslab.h "$libdir/libmagslab.so" "$libdir/libmagslab-override.so" \
         "$libdir/libmagslab.a" "$libdir/cmake/magslab/magslabConfig.cmake" \
         "$libdir/cmake/magslab/magslabConfigVersion.cmake" \
         "$libdir/cmake/magslab/magslabTargets.cmake" \
         "$libdir/pkgconfig/magslab.pc" "$libdir/pkgconfig/magslab-override.pc"; do
  grep -qx "$f" "$tmp/dev.txt" || fail "libmagslab-dev lacks $f"
done
grep -q "^$libdir/magslab/override-objects/.*malloc.cc.o\$" "$tmp/dev.txt" ||
  fail "libmagslab-dev lacks the override objects"
if grep -q "\.so\.$so\$\|\.so\.$ver\$" "$tmp/dev.txt"; then fail "shared libraries in libmagslab-dev"; fi
if grep -q '^usr/include\|\.a$\|\.pc$' "$tmp/rt.txt"; then fail "development files in $rt"; fi
list "$tools_deb" | grep -v '^usr/share/doc/' | diff -u <(echo usr/bin/magslab-stress) - ||
  fail "magslab-tools contents"
if grep -q magslab-stress "$tmp/rt.txt" "$tmp/dev.txt"; then fail "magslab-stress in a library package"; fi

# Unpack both and build against them, as an installed system would (pkg-config files are
# relocatable: their prefix is found from their own place).
root=$tmp/root
dpkg-deb -x "$rt_deb" "$root"
dpkg-deb -x "$dev_deb" "$root"
export PKG_CONFIG_PATH=$root/$libdir/pkgconfig
for pc in magslab magslab-override; do
  # shellcheck disable=SC2046
  cc -o "$tmp/consumer-$pc" "$src_dir/tests/consumer/consumer.c" $(pkg-config --cflags --libs $pc)
  LD_LIBRARY_PATH=$root/$libdir "$tmp/consumer-$pc" >/dev/null || fail "consumer ($pc) failed"
  readelf -d "$tmp/consumer-$pc" | grep -q "NEEDED.*lib$pc.so.$so" ||
    fail "consumer ($pc) does not need lib$pc.so.$so"
done
# The harness from its package, with no library path: a short run of one workload.
tools_root=$tmp/tools
dpkg-deb -x "$tools_deb" "$tools_root"
"$tools_root/usr/bin/magslab-stress" --workload mixed --threads 2 --seconds 1 --quiet \
  >"$tmp/stress.log" 2>&1 || { cat "$tmp/stress.log"; fail "magslab-stress from magslab-tools failed"; }
echo "test_deb: OK ($(basename "$rt_deb"), $(basename "$dev_deb"), $(basename "$tools_deb"))"
