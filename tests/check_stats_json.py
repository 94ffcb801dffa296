#!/usr/bin/env python3
"""check_stats_json.py <stats_json_main>: runs it four ways and parses each JSON
document with python3's json module (issue #17):
  1. magslab_stats_print(1, MAGSLAB_STATS_JSON) on stdout;
  2. MAGSLAB_SHOW_STATS=json: the exit report on stderr;
  3. MAGSLAB_STATS_FILE=<tmp>/stats.json (with show_stats=json in MAGSLAB_OPTIONS): the file;
  4. the same with a file name that is not UTF-8: the report still is.
Checks the schema (every field of struct magslab_stats and magslab_class_stats, all
numbers; the options table), the arithmetic (live_bytes over the classes plus the
large blocks), the traffic the program made (remote frees, depot trades, refills)
and the huge block left live. Exit 0 and "OK", or 1 naming the problem."""
import json
import os
import subprocess
import sys
import tempfile

SCALARS = ["live_bytes", "live_objects", "live_large_requested_bytes", "live_requested_bytes",
           "requested_bytes_exact", "peak_in_use_bytes", "cached_bytes", "mapped_bytes",
           "committed_bytes", "metadata_bytes", "large_live_blocks", "huge_live_blocks",
           "huge_live_bytes", "thread_caches"]
CLASS_FIELDS = ["class", "object_size", "slab_size", "live_objects", "cached_objects", "slabs",
                "depot_gets", "depot_puts", "depot_overflows", "remote_frees", "slab_refills",
                "slab_releases", "slabs_carved", "slabs_returned"]
OPTIONS = ["dirty_max", "decay_ms", "background_thread", "thread_large_bytes", "stash_bytes",
           "free_chunks", "depot_bytes", "mag_bytes", "mag_max",
           "huge_cache_entries", "huge_cache_bytes", "huge_cache_block", "huge_cache_ms", "huge_park",
           "numa", "show_stats", "stats_file", "verbose", "quarantine", "fill", "leak_report"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(doc, where, show_stats):
    d = json.loads(doc)  # raises on anything that is not JSON
    for k in SCALARS:
        if not isinstance(d.get(k), int) or d[k] < 0:
            fail("%s: %s is not a non-negative integer: %r" % (where, k, d.get(k)))
    if not isinstance(d.get("version"), str) or d["version"].count(".") != 2:
        fail("%s: version %r" % (where, d.get("version")))
    opts = d.get("options", {})
    if sorted(opts) != sorted(OPTIONS):
        fail("%s: options %r" % (where, sorted(opts)))
    if opts["show_stats"] != show_stats:
        fail("%s: show_stats %r, expected %r" % (where, opts["show_stats"], show_stats))
    classes = d.get("classes")
    if not isinstance(classes, list) or len(classes) < 90:
        fail("%s: classes" % where)
    for i, c in enumerate(classes):
        if list(c) != CLASS_FIELDS or c["class"] != i:
            fail("%s: class %d fields %r" % (where, i, list(c)))
        if not all(isinstance(v, int) and v >= 0 for v in c.values()):
            fail("%s: class %d values %r" % (where, i, c))
    small_live = sum(c["live_objects"] * c["object_size"] for c in classes)
    if small_live > d["live_bytes"]:
        fail("%s: classes hold %d live bytes, total %d" % (where, small_live, d["live_bytes"]))
    if d["huge_live_blocks"] < 1 or d["huge_live_bytes"] < 3 << 20:
        fail("%s: the live huge block is missing" % where)
    total = lambda k: sum(c[k] for c in classes)
    if total("remote_frees") < 4 * 2500:
        fail("%s: remote_frees %d < 10000" % (where, total("remote_frees")))
    for k in ("depot_puts", "slab_refills", "slabs_carved"):
        if total(k) == 0:
            fail("%s: no %s" % (where, k))


def main():
    prog = sys.argv[1]
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("MAGSLAB_"):
            del env[k]
    r = subprocess.run([prog], env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        fail("plain run: rc %d %s" % (r.returncode, r.stderr))
    check(r.stdout, "magslab_stats_print", "off")
    r = subprocess.run([prog], env=dict(env, MAGSLAB_SHOW_STATS="json"), capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        fail("MAGSLAB_SHOW_STATS=json: rc %d" % r.returncode)
    check(r.stderr, "MAGSLAB_SHOW_STATS=json exit report", "json")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stats.json")
        r = subprocess.run([prog], env=dict(env, MAGSLAB_STATS_FILE=path,
                                            MAGSLAB_OPTIONS="show_stats=json"),
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0 or r.stderr != "":
            fail("MAGSLAB_STATS_FILE: rc %d, stderr %r" % (r.returncode, r.stderr))
        with open(path) as f:
            check(f.read(), "MAGSLAB_STATS_FILE", "json")
    # 4. A stats_file path that is not UTF-8 (a review finding, stop 32: its
    # bytes went into the JSON raw, which then did not parse as UTF-8, as RFC
    # 8259 requires). Invalid bytes read as U+FFFD; valid UTF-8 stays as is.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.fsencode(tmp) + b"/s\xff\x01\"\xc3\xa9\xe0\x80y.json"
        envb = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
        envb[b"MAGSLAB_STATS_FILE"] = path
        envb[b"MAGSLAB_OPTIONS"] = b"show_stats=json"
        r = subprocess.run([prog], env=envb, capture_output=True, timeout=300)
        if r.returncode != 0:
            fail("non-UTF-8 MAGSLAB_STATS_FILE: rc %d" % r.returncode)
        with open(path, "rb") as f:
            raw = f.read()
        try:
            doc = raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError as e:
            fail("non-UTF-8 MAGSLAB_STATS_FILE: the report is not UTF-8: %s" % e)
        check(doc, "non-UTF-8 MAGSLAB_STATS_FILE", "json")
        want = os.fsdecode(tmp) + "/s\ufffd\x01\"\u00e9\ufffd\ufffdy.json"
        got = json.loads(doc)["options"]["stats_file"]
        if got != want:
            fail("non-UTF-8 MAGSLAB_STATS_FILE: stats_file %r, expected %r" % (got, want))
    print("OK: four JSON documents parsed and checked")


main()
