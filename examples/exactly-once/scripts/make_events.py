#!/usr/bin/env python3
"""Writes events for the crash example: `key,timestamp_ms,value`, keys
k0..k{keys-1}, event time advancing 1 ms per event on average with up to
1.5 s of disorder (within the pipeline's 2 s bound), values 1..100.
Deterministic for a seed.

    make_events.py OUT.csv [EVENTS] [KEYS] [SEED]
"""
import random
import sys


def main():
    out = sys.argv[1]
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    keys = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    rnd = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 7)
    base = 1_700_000_000_000
    with open(out, "w") as f:
        f.write("key,timestamp_ms,value\n")
        for i in range(events):
            ts = base + i - rnd.randrange(0, 1500)
            f.write(f"k{rnd.randrange(keys)},{ts},{rnd.randrange(1, 101)}\n")


if __name__ == "__main__":
    main()
