#!/usr/bin/env python3
"""Checks bench/latency's output (stdin) for the CTest smoke tests: every line is
a JSON object with the documented fields, one per (workload, op), op malloc and
free, counts > 0, p50 <= p90 <= p99 <= p99.9 <= p99.99 <= max, the histogram's
counts sum to count and its edges ascend, verified is true, and the timer's
overhead is reported. Exit 0 if all hold, 1 otherwise (the problems on stderr).

  latency --workload all ... | check_latency_json.py [--expect N]
"""
import json
import sys

FIELDS = ["workload", "op", "allocator", "threads", "seconds", "count", "mean_ns", "p50_ns",
          "p90_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns", "timer", "tsc_ghz",
          "timer_overhead_p50_ns", "timer_overhead_min_ns", "peak_rss_kib", "verified", "hist"]
ORDER = ["p50_ns", "p90_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns"]


def main():
    expect = None
    if len(sys.argv) == 3 and sys.argv[1] == "--expect":
        expect = int(sys.argv[2])
    problems = []
    seen = set()
    lines = [l for l in sys.stdin.read().splitlines() if l.strip()]
    for i, line in enumerate(lines, 1):
        try:
            r = json.loads(line)
        except ValueError as e:
            problems.append("line %d: not JSON: %s" % (i, e))
            continue
        where = "line %d (%s %s)" % (i, r.get("workload"), r.get("op"))
        missing = [f for f in FIELDS if f not in r]
        if missing:
            problems.append("%s: missing %s" % (where, ", ".join(missing)))
            continue
        key = (r["workload"], r["op"])
        if key in seen:
            problems.append("%s: duplicate" % where)
        seen.add(key)
        if r["op"] not in ("malloc", "free"):
            problems.append("%s: op must be malloc or free" % where)
        if r["count"] <= 0:
            problems.append("%s: count %s" % (where, r["count"]))
        vals = [r[k] for k in ORDER]
        if any(v < 0 for v in vals) or vals != sorted(vals):
            problems.append("%s: percentiles not ordered: %s" % (where, vals))
        if r["verified"] is not True:
            problems.append("%s: not verified" % where)
        if r["timer"] not in ("rdtsc", "clock") or r["timer_overhead_p50_ns"] <= 0:
            problems.append("%s: timer %s, overhead %s" % (where, r["timer"],
                                                           r["timer_overhead_p50_ns"]))
        hist = r["hist"]
        edges = [b[0] for b in hist]
        if sum(b[1] for b in hist) != r["count"]:
            problems.append("%s: histogram sums to %d, count %d" % (
                where, sum(b[1] for b in hist), r["count"]))
        if edges != sorted(edges) or (edges and edges[-1] != r["max_ns"]):
            problems.append("%s: histogram edges not ascending or last != max" % where)
    workloads = {w for w, _ in seen}
    for w in workloads:
        for op in ("malloc", "free"):
            if (w, op) not in seen:
                problems.append("%s: no %s line" % (w, op))
    if expect is not None and len(lines) != expect:
        problems.append("%d lines, expected %d" % (len(lines), expect))
    if not lines:
        problems.append("no output")
    for p in problems:
        print("check_latency_json: " + p, file=sys.stderr)
    if not problems:
        print("check_latency_json: %d lines OK (%s)" % (len(lines), ", ".join(
            "%s/%s" % k for k in sorted(seen))))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
