#!/usr/bin/env bash
# Checks that every C and C++ source of magslab is formatted as .clang-format
# says (clang-format 14, Debian's clang-format package). Prints the files that
# are not and exits 1; `clang-format -i <files>` fixes them.
#   cmake/check_format.sh <source dir>
set -euo pipefail
src=${1:?source dir}
cf=$(command -v clang-format-14 || command -v clang-format || true)
if [[ -z "$cf" ]]; then
  echo "check_format: clang-format not found (Debian: clang-format)" >&2
  exit 1
fi
cd "$src"
bad=0
while IFS= read -r -d '' f; do
  if ! "$cf" --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f"
    bad=$((bad + 1))
  fi
done < <(find lib include tests stress bench testing examples -type f \
           \( -name '*.h' -o -name '*.hpp' -o -name '*.cc' -o -name '*.c' \) -not -path 'tests/fuzz/corpus/*' -print0)
echo "check_format: $bad file(s) not formatted"
[[ $bad -eq 0 ]]
