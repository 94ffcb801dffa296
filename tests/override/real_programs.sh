#!/usr/bin/env bash
# Runs real programs with libmagslab-override.so preloaded and requires the same
# output as without it.
#
#   real_programs.sh <path-to-libmagslab-override.so> [program...]
#
# programs: python git sort gxx sqlite3 (default: all). Each workload runs twice
# in its own scratch directory, once on glibc and once with
#   LD_PRELOAD=<so> MAGSLAB_SHOW_STATS=1
# set for the program under test (and the processes it starts: git's helpers,
# g++'s cc1plus/as/ld). The outputs (or checksums of them) must be identical,
# and the magslab run must show proof that the preload took effect: a
# "magslab: stats" report with a nonzero "peak in use" on the program's stderr
# (and none in the glibc run).
#
# The tools come from Debian packages (scripts/deps.sh installs them).
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 <libmagslab-override.so> [python|git|sort|gxx|sqlite3 ...]" >&2
  exit 2
fi
SO=$(realpath "$1")
shift
[[ -f "$SO" ]] || { echo "real_programs: no such library: $SO" >&2; exit 2; }
programs=("$@")
[[ ${#programs[@]} -gt 0 ]] || programs=(python git sort gxx sqlite3)

export LC_ALL=C TZ=UTC
unset LD_PRELOAD MAGSLAB_SHOW_STATS MAGSLAB_VERBOSE

TOP=$(mktemp -d "${TMPDIR:-/tmp}/magslab-real.XXXXXX")
trap 'rm -rf "$TOP"' EXIT

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "real_programs: '$tool' is not installed (scripts/deps.sh installs it)" >&2
      exit 1
    }
  done
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# RUN is the prefix for every invocation of the program under test. `env`
# execs the program, so env itself never reaches exit() under the preload.
# ERR collects the program's stderr (the stats reports land there).
set_mode() {
  MODE=$1
  if [[ $MODE == magslab ]]; then
    RUN=(env LD_PRELOAD="$SO" MAGSLAB_SHOW_STATS=1)
  else
    RUN=(env)
  fi
}

# run_workload <name> <function>: runs <function> <dir> in both modes and
# compares what it printed.
run_workload() {
  local name=$1 fn=$2 mode t0 t1
  local failed=0
  for mode in glibc magslab; do
    local dir=$TOP/$name-$mode
    mkdir -p "$dir"
    set_mode "$mode"
    ERR=$dir/stderr.log
    : >"$ERR"
    t0=$(now)
    # errexit inside the subshell: any failing command fails the workload.
    set +e
    (set -e; cd "$dir"; "$fn" "$dir") >"$dir/stdout.log" 2>>"$ERR"
    local rc=$?
    set -e
    if [[ $rc -ne 0 ]]; then
      echo "real_programs: $name: the $mode run failed (status $rc); its stderr (without stats lines):" >&2
      grep -v -e '^magslab: stats' -e '^  ' "$ERR" | tail -n 30 >&2
      failed=1
    fi
    t1=$(now)
    echo "real_programs: $name: $mode run $(elapsed "$t0" "$t1")s," \
         "$(wc -l <"$dir/stdout.log") output lines"
  done
  [[ $failed -eq 0 ]] || return 1

  local base=$TOP/$name-glibc test=$TOP/$name-magslab
  if ! cmp -s "$base/stdout.log" "$test/stdout.log"; then
    echo "real_programs: $name: FAIL: output differs between glibc and magslab:" >&2
    diff "$base/stdout.log" "$test/stdout.log" | head -n 40 >&2
    return 1
  fi
  if grep -q '^magslab: stats' "$base/stderr.log"; then
    echo "real_programs: $name: FAIL: magslab stats in the glibc run" >&2
    return 1
  fi
  local reports peaks
  reports=$(grep -c '^magslab: stats' "$test/stderr.log" || true)
  peaks=$(grep -Ec '^  peak in use +[1-9][0-9]* B' "$test/stderr.log" || true)
  if [[ $reports -eq 0 ]] && compgen -G "$test/ld-debug.*" >/dev/null; then
    # No stats report (the program closed stderr): the dynamic linker's
    # bindings show where the program's malloc/free calls go.
    local bound
    bound=$(cat "$test"/ld-debug.* |
      grep -Ec "binding file ([^ ]*/)?$name \[0\] to [^ ]*libmagslab-override\.so[^ ]* \[0\]: normal symbol .(malloc|free|realloc|calloc)'" || true)
    if [[ $bound -lt 2 ]]; then
      echo "real_programs: $name: FAIL: $name's malloc/free do not bind to the override" \
           "(LD_DEBUG=bindings): the preload did not take effect" >&2
      return 1
    fi
    echo "real_programs: $name: PASS: $(wc -l <"$test/stdout.log") output lines identical;" \
         "ld.so bound $name's malloc/free/realloc/calloc to libmagslab-override.so" \
         "($bound bindings over $(ls "$test"/ld-debug.* | wc -l) runs)"
    echo "---- $name output (magslab run, first 12 lines) ----"
    head -n 12 "$test/stdout.log"
    return 0
  fi
  if [[ $reports -eq 0 || $peaks -eq 0 ]]; then
    echo "real_programs: $name: FAIL: no magslab stats report with nonzero peak" \
         "($reports reports): the preload did not take effect" >&2
    return 1
  fi
  local max_peak
  max_peak=$(awk '/^  peak in use/ { if ($4 > m) m = $4 } END { print m + 0 }' "$test/stderr.log")
  echo "real_programs: $name: PASS: $(wc -l <"$test/stdout.log") output lines identical;" \
       "magslab stats from $reports process(es), largest peak in use $max_peak B"
  echo "---- $name output (magslab run, first 12 lines) ----"
  head -n 12 "$test/stdout.log"
}

# ---------------------------------------------------------------------------
# python3: threads building dicts, lists and strings; a deterministic checksum.
# Run with Python's own small-object allocator and with PYTHONMALLOC=malloc
# (every object through malloc).

python_bin() {
  if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3; fi
}

workload_python() {
  local py
  py=$(python_bin)
  cat >work.py <<'EOF'
import hashlib
import sys
import threading

N_THREADS = 8
ROUNDS = 12000
results = [None] * N_THREADS

def work(i):
    d = {}
    lst = []
    text = []
    for j in range(ROUNDS):
        k = "k%d-%d" % (i, j)
        d[k] = [j, str(j * (i + 1)), k * 3, {"x": j % 17, "y": (j * 31) % 101}]
        lst.append((k[::-1], (j * j) % 1009))
        text.append("%s=%d;" % (k, j % 97))
        if j % 5 == 0:
            d.pop("k%d-%d" % (i, j // 2), None)
        if j % 1000 == 999:
            text = ["".join(text)]
    h = hashlib.sha256()
    for k in sorted(d):
        h.update(k.encode())
        h.update(repr(d[k]).encode())
    lst.sort()
    h.update(repr(lst[:5000]).encode())
    h.update("".join(text).encode())
    results[i] = (len(d), len(lst), h.hexdigest())

threads = [threading.Thread(target=work, args=(i,)) for i in range(N_THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
total = hashlib.sha256()
for i, (nd, nl, hx) in enumerate(results):
    print("thread %d: dict %d list %d sha256 %s" % (i, nd, nl, hx))
    total.update(hx.encode())
print("combined", total.hexdigest())
EOF
  echo "== default allocator (pymalloc over malloc)"
  "${RUN[@]}" "$py" -I work.py 2>>"$ERR"
  echo "== PYTHONMALLOC=malloc"
  "${RUN[@]}" PYTHONMALLOC=malloc "$py" -I work.py 2>>"$ERR"
}

# ---------------------------------------------------------------------------
# git: init, add, commit (fixed author and dates), gc, log, fsck, clone on a
# small generated repository.

workload_git() {
  local dir=$1
  export HOME=$dir/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_AUTHOR_NAME="Magslab Test" GIT_AUTHOR_EMAIL="test@magslab.invalid"
  export GIT_COMMITTER_NAME="Magslab Test" GIT_COMMITTER_EMAIL="test@magslab.invalid"
  mkdir -p "$HOME"
  local git=("${RUN[@]}" git -c gc.auto=0 -c gc.autoDetach=false -c core.fsync=none)
  "${git[@]}" init -q -b main repo 2>>"$ERR"
  local c d f
  for c in 1 2 3 4 5 6; do
    export GIT_AUTHOR_DATE="2024-01-0${c}T12:00:00Z" GIT_COMMITTER_DATE="2024-01-0${c}T12:00:00Z"
    # Generated content (not under the preload): 40 files per commit in 8
    # directories, some rewritten, some appended to.
    awk -v c="$c" 'BEGIN {
      for (f = 0; f < 40; f++) {
        dir = "repo/src/d" (f % 8); system("mkdir -p " dir)
        name = dir "/file" ((f * 7 + c * 3) % 120) ".txt"
        for (l = 0; l < 200; l++) printf "commit %d file %d line %d %s\n", c, f, l, (l * c * 31 + f) % 9973 >> name
        close(name)
      }
    }'
    "${git[@]}" -C repo add -A 2>>"$ERR"
    "${git[@]}" -C repo commit -q -m "commit $c" -m "generated content round $c" 2>>"$ERR"
    if [[ $c -eq 3 ]]; then
      "${git[@]}" -C repo rm -q -r src/d7 2>>"$ERR"
      "${git[@]}" -C repo commit -q -m "remove d7" 2>>"$ERR"
    fi
  done
  "${git[@]}" -C repo gc --quiet 2>>"$ERR"
  echo "== rev-parse"
  "${git[@]}" -C repo rev-parse HEAD HEAD~3 'HEAD^{tree}' 2>>"$ERR"
  echo "== log"
  "${git[@]}" -C repo log --stat --format='%H %an <%ae> %ad%n%s%n%b' --date=iso-strict 2>>"$ERR"
  echo "== count-objects (after gc)"
  "${git[@]}" -C repo count-objects -v 2>>"$ERR" | grep -E '^(count|in-pack|packs|prune-packable|garbage):'
  echo "== fsck"
  "${git[@]}" -C repo fsck --strict --no-progress --no-dangling 2>>"$ERR"
  echo "fsck ok"
  echo "== diff, archive, clone"
  "${git[@]}" -C repo diff --shortstat HEAD~4 HEAD 2>>"$ERR"
  "${git[@]}" -C repo archive --format=tar HEAD 2>>"$ERR" | sha256sum
  "${git[@]}" clone -q --no-local repo clone 2>>"$ERR"
  "${git[@]}" -C clone log --oneline 2>>"$ERR"
  "${git[@]}" -C clone ls-files 2>>"$ERR" | sha256sum
}

# ---------------------------------------------------------------------------
# sort: tens of MB of generated text, sorted several ways; output checksums.

workload_sort() {
  local dir=$1
  local data=$TOP/sort-input.txt
  if [[ ! -f $data ]]; then
    # ~26 MB, generated once (not under the preload) and shared by both runs.
    awk 'BEGIN {
      srand(12345)
      for (i = 0; i < 1000000; i++)
        printf "%08x %d %s\n", int(rand() * 4294967296), int(rand() * 1000000), substr("the quick brown fox jumps over the lazy dog", i % 23 + 1, i % 17 + 1)
    }' >"$data"
  fi
  # sort closes stderr at exit (gnulib close_stdout), so magslab's exit-time
  # stats report cannot be written; the proof for sort is the dynamic linker's
  # record that sort's malloc binds to the override (LD_DEBUG=bindings).
  local sort=("${RUN[@]}" sort)
  if [[ $MODE == magslab ]]; then
    sort=("${RUN[@]}" LD_DEBUG=bindings LD_DEBUG_OUTPUT="$dir/ld-debug" sort)
  fi
  echo "input: $(wc -l <"$data") lines, $(wc -c <"$data") bytes"
  echo "sort (C locale, 2 threads, 16M buffer, temp files):"
  "${sort[@]}" -S 16M --parallel=2 -T . "$data" 2>>"$ERR" | sha256sum
  echo "sort -k2,2n -k1,1r:"
  "${sort[@]}" -k2,2n -k1,1r -S 64M "$data" 2>>"$ERR" | sha256sum
  echo "sort -u -k3 (C.UTF-8 collation):"
  LC_ALL=C.UTF-8 "${sort[@]}" -u -k3 "$data" 2>>"$ERR" | sha256sum
  echo "sort -s -k3,3 | uniq -c | sort -rn:"
  "${sort[@]}" -s -k3,3 "$data" 2>>"$ERR" | cut -d' ' -f3 | uniq -c | "${sort[@]}" -rn 2>>"$ERR" | sha256sum
}

# ---------------------------------------------------------------------------
# g++: compile a small C++ program (templates, containers, regex, iostreams),
# compare the object file, then run the produced program.

workload_gxx() {
  cat >prog.cc <<'EOF'
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <regex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

template <typename T>
struct Tree {
  T value;
  std::unique_ptr<Tree> left, right;
  explicit Tree(T v) : value(v) {}
  void insert(T v) {
    auto& slot = v < value ? left : right;
    if (slot) slot->insert(v); else slot = std::make_unique<Tree>(v);
  }
  template <typename F> void walk(F&& f) const {
    if (left) left->walk(f);
    f(value);
    if (right) right->walk(f);
  }
};

int main() {
  Tree<long> t(50000);
  for (long i = 0; i < 100000; ++i) t.insert((i * 7919) % 100003);
  long sum = 0, n = 0;
  t.walk([&](long v) { sum += v * (++n % 7); });
  std::map<std::string, int> words;
  std::istringstream in("the quick brown fox jumps over the lazy dog the end");
  for (std::string w; in >> w;) ++words[w];
  std::unordered_map<int, std::vector<std::string>> buckets;
  for (int i = 0; i < 20000; ++i) buckets[i % 101].push_back(std::to_string(i * i));
  std::size_t total = 0;
  for (auto& [k, v] : buckets) total += std::accumulate(v.begin(), v.end(), std::size_t{0},
      [](std::size_t a, const std::string& s) { return a + s.size(); });
  std::regex re("([a-z]+)@([a-z]+)\\.com");
  std::string mail = "alice@example.com, bob@test.com, nobody";
  int matches = 0;
  for (std::sregex_iterator it(mail.begin(), mail.end(), re), end; it != end; ++it) ++matches;
  std::cout << "tree sum " << sum << " nodes " << n << "\n";
  for (auto& [w, c] : words) std::cout << w << " " << c << "\n";
  std::cout << "buckets " << buckets.size() << " chars " << total << " regex " << matches << "\n";
}
EOF
  "${RUN[@]}" g++ -std=c++20 -O2 -frandom-seed=magslab -c prog.cc -o prog.o 2>>"$ERR"
  "${RUN[@]}" g++ prog.o -o prog 2>>"$ERR"
  echo "prog.o: $(sha256sum <prog.o)"
  echo "prog: $(sha256sum <prog)"
  echo "== ./prog"
  ./prog
  echo "== ./prog (under the same allocator as the compiler)"
  "${RUN[@]}" ./prog 2>>"$ERR"
}

# ---------------------------------------------------------------------------
# sqlite3: insert 100,000 rows (one INSERT statement each, in a transaction),
# index, query, update, delete, vacuum, integrity check.

workload_sqlite3() {
  {
    echo "PRAGMA journal_mode=WAL;"
    echo "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, grp INTEGER, val INTEGER, note TEXT);"
    echo "BEGIN;"
    awk 'BEGIN {
      for (i = 1; i <= 100000; i++)
        printf "INSERT INTO t(name, grp, val, note) VALUES (%cname-%07d%c, %d, %d, %c%s%c);\n", 39, (i * 7919) % 1000003, 39, i % 97, (i * 31337) % 65521, 39, substr("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod", 1 + i % 40, 1 + i % 30), 39
    }'
    echo "COMMIT;"
    cat <<'EOF'
CREATE INDEX t_grp ON t(grp, val);
CREATE INDEX t_name ON t(name);
SELECT 'rows', count(*), sum(val), min(name), max(name) FROM t;
SELECT grp, count(*), sum(val), avg(length(note)) FROM t GROUP BY grp ORDER BY grp LIMIT 10;
SELECT name, val FROM t WHERE grp = 42 ORDER BY val DESC LIMIT 5;
SELECT count(DISTINCT note), group_concat(DISTINCT substr(note, 1, 3)) FROM (SELECT note FROM t ORDER BY note LIMIT 50);
WITH RECURSIVE fib(a, b, k) AS (SELECT 0, 1, 0 UNION ALL SELECT b, a + b, k + 1 FROM fib WHERE k < 80)
  SELECT max(a) FROM fib;
UPDATE t SET val = val * 2 WHERE id % 3 = 0;
DELETE FROM t WHERE grp IN (1, 2, 3);
SELECT 'after', count(*), sum(val) FROM t;
SELECT a.grp, count(*) FROM t a JOIN t b ON a.id = b.id + 1 AND a.grp = b.grp + 1 GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 3;
SELECT json_group_array(id) FROM (SELECT id FROM t WHERE name LIKE 'name-00001%' ORDER BY id);
VACUUM;
PRAGMA integrity_check;
EOF
  } >script.sql
  "${RUN[@]}" sqlite3 -batch test.db <script.sql 2>>"$ERR"
  "${RUN[@]}" sqlite3 -batch test.db "SELECT count(*), sum(val), total(grp) FROM t;" 2>>"$ERR"
}

# ---------------------------------------------------------------------------

status=0
for p in "${programs[@]}"; do
  case "$p" in
    python) need "$(python_bin)"; fn=workload_python ;;
    git) need git; fn=workload_git ;;
    sort) need sort sha256sum; fn=workload_sort ;;
    gxx) need g++; fn=workload_gxx ;;
    sqlite3) need sqlite3; fn=workload_sqlite3 ;;
    *) echo "real_programs: unknown program '$p'" >&2; exit 2 ;;
  esac
  if ! run_workload "$p" "$fn"; then
    echo "real_programs: $p: FAILED" >&2
    status=1
  fi
done
exit $status
