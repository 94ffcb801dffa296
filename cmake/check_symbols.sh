#!/usr/bin/env bash
# Usage: cmake/check_symbols.sh <magslab.h> <libmagslab.so> <libmagslab-override.so>
#
# CTest `exported_symbols` (issue #17, docs/design.md "Versions and symbols"):
#   - libmagslab.so exports exactly the functions magslab.h declares MAGSLAB_API and the
#     variables magslab.hpp declares MAGSLAB_API (ObjectCache's inline fast paths read them);
#   - libmagslab-override.so exports those, the C library's allocation functions and
#     the C++ operators new and delete, and nothing else;
#   - both sonames carry 0.MINOR while the major version is 0 (MAJOR from 1.0 on).
set -euo pipefail
header=$1 lib=$2 override=$3
fail() { echo "check_symbols: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

grep -o 'MAGSLAB_API [^(]*[^a-z0-9_]magslab_[a-z0-9_]*(' "$header" |
  sed 's/.*\(magslab_[a-z0-9_]*\)(/\1/' | sort -u >"$tmp/api"
[[ $(wc -l <"$tmp/api") -ge 15 ]] || fail "too few API functions parsed from $header"
hpp=${header%.h}.hpp
grep -o 'MAGSLAB_API [^(;]*[^a-z0-9_]magslab_[a-z0-9_]*;' "$hpp" |
  sed 's/.*\(magslab_[a-z0-9_]*\);/\1/' >"$tmp/vars"
[[ $(wc -l <"$tmp/vars") -ge 2 ]] || fail "no exported variables parsed from $hpp"
sort -u "$tmp/api" "$tmp/vars" -o "$tmp/api"
exports() { nm -D --defined-only "$1" | awk '{print $3}' | sed 's/@.*//' | sort -u; }

exports "$lib" >"$tmp/lib"
diff -u "$tmp/api" "$tmp/lib" || fail "libmagslab.so exports differ from the API (- API, + exported)"

exports "$override" >"$tmp/ovr"
for f in malloc free cfree calloc realloc reallocarray aligned_alloc posix_memalign memalign valloc \
         pvalloc malloc_usable_size free_sized free_aligned_sized malloc_trim malloc_stats \
         malloc_info mallinfo2 mallinfo mallopt __libc_malloc __libc_free __libc_calloc \
         __libc_realloc __libc_memalign __libc_valloc __libc_pvalloc _Znwm _Znam _ZdlPv _ZdaPv \
         _ZdlPvm _ZnwmSt11align_val_t _ZdlPvmSt11align_val_t; do
  grep -qx "$f" "$tmp/ovr" || fail "libmagslab-override.so does not export $f"
done
comm -23 "$tmp/api" "$tmp/ovr" | grep . && fail "libmagslab-override.so lacks API functions above"
extra=$(grep -v -x -f "$tmp/api" "$tmp/ovr" | grep -v -E '^(_Zn[wa]|_Zd[la])' |
  grep -v -x -E 'malloc|free|cfree|calloc|realloc|reallocarray|aligned_alloc|posix_memalign|memalign|valloc|pvalloc|malloc_usable_size|free_sized|free_aligned_sized|malloc_trim|malloc_stats|malloc_info|mallinfo2|mallinfo|mallopt|__libc_(malloc|free|calloc|realloc|memalign|valloc|pvalloc)' || true)
[[ -z $extra ]] || fail "libmagslab-override.so exports more: $extra"

ver=$(sed -n 's/^#define MAGSLAB_VERSION_\(MAJOR\|MINOR\) \([0-9]*\)$/\2/p' "$header" | paste -sd.)
if [[ ${ver%%.*} == 0 ]]; then so=$ver; else so=${ver%%.*}; fi
for l in "$lib" "$override"; do
  name=$(basename "$l")
  name=${name%%.so*}.so.$so
  readelf -d "$l" | grep -q "SONAME.*\[$name\]" || fail "$l: soname is not $name"
done
echo "check_symbols: OK ($(wc -l <"$tmp/api") API functions and variables; sonames .so.$so)"
