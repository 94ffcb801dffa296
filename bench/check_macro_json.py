#!/usr/bin/env python3
"""Check bench/macro's JSON line (stdin) for its workload's own fields: used by ctest.

xmalloc with 2 or more threads must report how far its producers ran ahead: a queue depth
between 1 and 64 batches and a peak of live program data above 0 and below the peak RSS.
With --line-census (argument "census"), mstress and phases must report their census: blocks
and lines above 0, at most two lines per block, shared lines at most the lines; pages above 0 and
at most the lines; pages counted per thread at least the pages, at most the pages × threads and
two a block.
"""
import json
import sys


def main():
    lines = [l for l in sys.stdin.read().splitlines() if l.startswith("{")]
    if len(lines) != 1:
        sys.exit("check_macro_json: expected one JSON line, got %d" % len(lines))
    d = json.loads(lines[0])
    if not d.get("verified"):
        sys.exit("check_macro_json: run not verified")
    if d["workload"] == "xmalloc" and d["threads"] > 1:
        q, live = d.get("queue_max_batches"), d.get("program_peak_live_kib")
        if q is None or live is None:
            sys.exit("check_macro_json: xmalloc lacks queue_max_batches / program_peak_live_kib")
        if not 1 <= q <= 64:
            sys.exit("check_macro_json: queue_max_batches %d outside 1..64" % q)
        if not 0 < live < d["peak_rss_kib"]:
            sys.exit("check_macro_json: program_peak_live_kib %d not in (0, peak RSS %d)" %
                     (live, d["peak_rss_kib"]))
    if len(sys.argv) > 1 and sys.argv[1] == "census":
        b, n, sh = (d.get(k) for k in ("census_blocks", "census_lines", "census_shared_lines"))
        if None in (b, n, sh):
            sys.exit("check_macro_json: --line-census without census_* fields")
        if d.get("census_truncated"):
            print("check_macro_json: ok (census truncated: its counts not checked)")
            return
        if not (0 < b and 0 < n <= 2 * b and 0 <= sh <= n):
            sys.exit("check_macro_json: census blocks %d, lines %d, shared %d inconsistent" % (b, n, sh))
        pg, tpg = d.get("census_pages"), d.get("census_thread_pages")
        if pg is None or tpg is None:
            sys.exit("check_macro_json: --line-census without census_pages / census_thread_pages")
        if not (0 < pg <= min(n, tpg) and tpg <= min(2 * b, pg * d["threads"])):
            sys.exit("check_macro_json: census pages %d, per thread %d inconsistent (lines %d)" %
                     (pg, tpg, n))
    print("check_macro_json: ok")


if __name__ == "__main__":
    main()
