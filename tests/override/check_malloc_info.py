#!/usr/bin/env python3
"""check_malloc_info.py <override.so> <malloc_info program>: runs the program on
glibc and preloaded with magslab; both outputs must parse as glibc's malloc_info
XML (xml.etree): <malloc version="1"> with <heap nr=…> holding <sizes> of
<size from to total count>, <total type=fast|rest …>, <system type=current|max>,
<aspace type=total|mprotect>; then the totals of all heaps, <total type="mmap">,
and system/aspace. Under magslab: one heap, every size row consistent
(total = count * to), the huge block counted in mmap, rest = the sum of sizes."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def parse(out, who):
    try:
        root = ET.fromstring(out)
    except ET.ParseError as e:
        fail("%s: not XML (%s): %r" % (who, e, out[:300]))
    if root.tag != "malloc" or root.get("version") != "1":
        fail("%s: root %s %r" % (who, root.tag, root.attrib))
    heaps = root.findall("heap")
    if not heaps:
        fail("%s: no heap" % who)
    for h in heaps:
        sizes = h.find("sizes")
        if sizes is None:
            fail("%s: heap without sizes" % who)
        for s in sizes:
            for a in ("from", "to", "total", "count"):
                int(s.get(a))
        types = [(t.tag, t.get("type")) for t in h if t.tag != "sizes"]
        for want in [("total", "fast"), ("total", "rest"), ("system", "current"),
                     ("system", "max"), ("aspace", "total"), ("aspace", "mprotect")]:
            if want not in types:
                fail("%s: heap lacks %s type=%s" % (who, want[0], want[1]))
    top = {(t.tag, t.get("type")): t for t in root if t.tag != "heap"}
    for want in [("total", "fast"), ("total", "rest"), ("total", "mmap"), ("system", "current"),
                 ("system", "max"), ("aspace", "total"), ("aspace", "mprotect")]:
        if want not in top:
            fail("%s: lacks top-level %s type=%s" % (who, want[0], want[1]))
    return root, top


def run(cmd, env):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("%s: rc %d %s" % (cmd, r.returncode, r.stderr))
    return r.stdout


def main():
    so, prog = sys.argv[1], sys.argv[2]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    parse(run([prog], env), "glibc")
    root, top = parse(run([prog], dict(env, LD_PRELOAD=so)), "magslab")
    heaps = root.findall("heap")
    if len(heaps) != 1:
        fail("magslab: %d heaps" % len(heaps))
    rows = heaps[0].find("sizes").findall("size")
    if not rows:
        fail("magslab: no cached sizes after freeing half the blocks")
    for s in rows:
        if int(s.get("total")) != int(s.get("count")) * int(s.get("to")) or \
                int(s.get("from")) > int(s.get("to")):
            fail("magslab: inconsistent size row %r" % s.attrib)
    rest = top[("total", "rest")]
    if int(rest.get("size")) != sum(int(s.get("total")) for s in rows):
        fail("magslab: rest %r is not the sum of the sizes" % rest.attrib)
    mmap = top[("total", "mmap")]
    if int(mmap.get("count")) < 1 or int(mmap.get("size")) < 5 << 20:
        fail("magslab: the huge block is not in mmap: %r" % mmap.attrib)
    print("OK: glibc and magslab malloc_info parse; magslab %d size rows" % len(rows))


main()
