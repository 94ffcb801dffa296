#!/usr/bin/env python3
"""Writes the seed corpus of the heap fuzzer (tests/fuzz/corpus/): a few
small inputs that exercise each operation kind. Each operation is 8 bytes
(tests/model/heap_model.h, decode_ops):
  [0] kind % 9: malloc calloc realloc aligned_alloc posix_memalign free
      free_sized usable_size reuse
  [1] bits 0-2: size tier (0-2 <= 256 B, 3-4 <= 4 KiB, 5 <= 64 KiB,
      6 large <= 1 MiB, 7 huge <= 4 MiB); bits 3-7: alignment selector
      (0-16: 1 << sel; 17-26: invalid alignments)
  [2-4] size within the tier (little endian), [5] block pick, [6-7] aux
Run from anywhere: python3 tests/fuzz/make_corpus.py"""
import os
import struct

MALLOC, CALLOC, REALLOC, ALIGNED, MEMALIGN, FREE, FREE_SIZED, USABLE, REUSE = range(9)


def op(kind, tier=0, size=0, align=0, pick=0, aux=0):
    return struct.pack("<BB", kind, (tier & 7) | (align << 3)) + \
        struct.pack("<I", size)[:3] + struct.pack("<BH", pick, aux)


seeds = {
    "malloc_free": [op(MALLOC, 0, 24), op(MALLOC, 3, 1000), op(MALLOC, 5, 60000),
                    op(FREE, pick=1), op(FREE), op(FREE)],
    "calloc": [op(CALLOC, 0, 100, aux=3), op(CALLOC, 4, 3000, aux=7),
               op(CALLOC, 6, 200000, aux=1), op(CALLOC, aux=31),
               op(FREE), op(FREE), op(FREE)],
    "realloc_tiers": [op(MALLOC, 0, 40), op(REALLOC, 5, 50000, aux=4),
                      op(REALLOC, 6, 300000, aux=4), op(REALLOC, 7, 2000000, aux=4),
                      op(REALLOC, 6, 100000, aux=4), op(REALLOC, 0, 10, aux=4),
                      op(REALLOC, aux=2 | (40 << 4)), op(REALLOC, aux=3 | (5 << 4)),
                      op(REALLOC, aux=0)],
    "realloc_null": [op(REALLOC, 1, 77, aux=1), op(REALLOC, 7, 1500000, aux=5), op(FREE)],
    "aligned": [op(ALIGNED, 0, 10, align=a) for a in (0, 4, 6, 12, 16)] +
               [op(ALIGNED, 0, 10, align=a) for a in (17, 19, 26)] +
               [op(FREE_SIZED, aux=9) for _ in range(5)],
    "posix_memalign": [op(MEMALIGN, 5, 5000, align=a) for a in (0, 2, 3, 8, 13, 16, 20)] +
                      [op(FREE) for _ in range(5)],
    "usable_reuse": [op(MALLOC, 2, 100), op(USABLE), op(REUSE), op(REUSE, pick=1),
                     op(MALLOC, 6, 70000), op(USABLE, pick=1), op(FREE_SIZED, aux=1),
                     op(FREE_SIZED)],
    "huge": [op(MALLOC, 7, 3000000), op(ALIGNED, 7, 1200000, align=16),
             op(REALLOC, 7, 4000000, aux=4), op(FREE), op(FREE_SIZED, aux=100)],
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)
for name, ops in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(b"".join(ops))
print(f"wrote {len(seeds)} inputs to {out}")
