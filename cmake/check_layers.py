#!/usr/bin/env python3
"""Checks that every file under lib/ includes only its own layer and the layers
below it (docs/design.md, Layers). A file's layer is its folder under lib/; an
include "x/..." names layer x; "magslab/..." is the public header.

  cmake/check_layers.py <lib dir>        exit 0, or 1 listing every upward include
  cmake/check_layers.py --selftest <lib dir>
      copies lib/ to a temporary folder, adds an upward include to one file of
      each layer that has a layer above it (and a sideways one between small
      and large), and exits 0 only if every such include is reported (proof
      that the check can fail).
"""
import os
import re
import shutil
import sys
import tempfile

# layer -> the layers its files may include (its own is always allowed).
ALLOWED = {
    "base": set(),
    "platform": {"base"},
    "ds": {"base"},
    "stats": {"base"},
    "chunks": {"base", "platform", "ds", "stats"},
    "small": {"base", "platform", "ds", "stats", "chunks"},
    "large": {"base", "platform", "ds", "stats", "chunks"},
    "api": {"base", "platform", "ds", "stats", "chunks", "small", "large", "magslab"},
    "override": {"base", "api", "magslab"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def violations(lib):
    found = []
    for dirpath, _, files in os.walk(lib):
        rel = os.path.relpath(dirpath, lib)
        layer = rel.split(os.sep)[0]
        for name in sorted(files):
            if not name.endswith((".h", ".cc")):
                continue
            path = os.path.join(dirpath, name)
            if rel == ".":
                found.append(f"{path}: files belong in a layer folder")
                continue
            if layer not in ALLOWED:
                found.append(f"{path}: '{layer}' is not a layer (add it to the table)")
                continue
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = m.group(1).split("/")[0] if "/" in m.group(1) else None
                    if target is None:
                        found.append(f"{path}:{lineno}: include \"{m.group(1)}\" without its layer folder")
                    elif target != layer and target not in ALLOWED[layer]:
                        found.append(f"{path}:{lineno}: {layer} includes {target} (\"{m.group(1)}\"), "
                                     f"which is not below it")
    return found


def selftest(lib):
    tmp = tempfile.mkdtemp(prefix="magslab-layers-")
    try:
        copy = os.path.join(tmp, "lib")
        shutil.copytree(lib, copy)
        if violations(copy):
            print("selftest: the tree itself has violations; run the plain check")
            return 1
        injected = 0
        for layer in ALLOWED:
            above = [l for l in ALLOWED if l != layer and l != "magslab" and
                     l not in ALLOWED[layer] and layer in ALLOWED[l]]
            folder = os.path.join(copy, layer)
            files = sorted(f for f in os.listdir(folder) if f.endswith((".h", ".cc"))) \
                if os.path.isdir(folder) else []
            if not above or not files:
                continue
            with open(os.path.join(folder, files[0]), "a", encoding="utf-8") as f:
                f.write(f'\n#include "{above[0]}/upward.h"\n')
            injected += 1
        # Layers side by side may not include each other either.
        for layer, sibling in (("small", "large"), ("large", "small")):
            folder = os.path.join(copy, layer)
            first = sorted(f for f in os.listdir(folder) if f.endswith(".cc"))[0]
            with open(os.path.join(folder, first), "a", encoding="utf-8") as f:
                f.write(f'\n#include "{sibling}/sideways.h"\n')
            injected += 1
        reported = violations(copy)
        print(f"selftest: injected {injected} upward includes, the check reported {len(reported)}:")
        for v in reported:
            print("  " + v)
        return 0 if injected > 0 and len(reported) == injected else 1
    finally:
        shutil.rmtree(tmp)


def main(argv):
    if len(argv) == 3 and argv[1] == "--selftest":
        return selftest(argv[2])
    if len(argv) != 2:
        print(__doc__)
        return 2
    found = violations(argv[1])
    for v in found:
        print(v)
    print(f"layer check: {len(found)} violation(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
