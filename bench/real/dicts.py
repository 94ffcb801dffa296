"""bench/real/dicts.py: a python3 dict and JSON workload for bench/run --real.

Deterministic (a fixed-seed LCG, no hash-order dependence in the output):
each round builds a dict of N records (string keys, nested dicts, lists and
strings of 8 B..4 KiB), serialises it to JSON, parses it back, checks the
round trip, derives an index (dict comprehension), a sorted view and a
grouping, and deletes half of the records. Prints one line: the checksum of
everything computed, which must be the same under every allocator.

  python3 bench/real/dicts.py [N] [ROUNDS]      (defaults 20000 4)
"""
import json
import sys
import zlib


def lcg(seed):
    x = seed
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        yield x >> 33


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
         "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon"]


def record(r, i):
    n_tags = next(r) % 8
    size = 8 << (next(r) % 10)  # 8 B .. 4 KiB: most in small objects, some in large ones
    return {
        "id": i,
        "name": "%s-%d" % (WORDS[next(r) % len(WORDS)], next(r) % 100000),
        "score": (next(r) % 1000000) / 1000.0,
        "tags": [WORDS[next(r) % len(WORDS)] for _ in range(n_tags)],
        "payload": WORDS[next(r) % len(WORDS)] * (size // 6 + 1),
        "meta": {"owner": "u%d" % (next(r) % 5000), "rev": next(r) % 50,
                 "flags": [next(r) % 2 == 0 for _ in range(4)]},
    }


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    r = lcg(12345)
    crc = 0
    keep = {}
    for rnd in range(rounds):
        d = {"k%07d" % ((i * 7919 + rnd) % (4 * n)): record(r, i) for i in range(n)}
        text = json.dumps(d, sort_keys=True)
        back = json.loads(text)
        if back != d:
            print("round trip mismatch in round %d" % rnd, file=sys.stderr)
            return 3
        crc = zlib.crc32(text.encode(), crc)
        by_name = {v["name"]: k for k, v in back.items()}
        top = sorted(back.values(), key=lambda v: (-v["score"], v["id"]))[:100]
        groups = {}
        for v in back.values():
            groups.setdefault(v["meta"]["owner"], []).append(v["id"])
        crc = zlib.crc32(json.dumps([len(by_name), [v["id"] for v in top],
                                     sorted((k, len(g)) for k, g in groups.items())[:50]]).encode(),
                         crc)
        for k in sorted(back)[::2]:
            del back[k]
        keep["r%d" % rnd] = back  # half of every round stays alive to the end
        del d, text
    total = sum(len(v) for v in keep.values())
    print("dicts: n=%d rounds=%d live=%d crc=%08x" % (n, rounds, total, crc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
