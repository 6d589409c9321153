#!/usr/bin/env python3
"""Writes the word-count benchmark text: WORDS words, DISTINCT of them
different, about 10 bytes per word with its space, twelve words a line.

Every distinct word appears once; the remaining words repeat the 10,000
most common ones with Zipf-like weights, and everything is shuffled with a
fixed seed, so the same arguments give the same file byte for byte.

usage: gen-words.py OUT [WORDS=3000000] [DISTINCT=1400000]
"""
import random
import sys

out = sys.argv[1]
words = int(sys.argv[2]) if len(sys.argv) > 2 else 3_000_000
distinct = int(sys.argv[3]) if len(sys.argv) > 3 else 1_400_000
rng = random.Random(20261123)
letters = "abcdefghijklmnopqrstuvwxyz"


def word(i):
    # A distinct word per index: its base-26 digits, padded to 6..10 letters.
    s = []
    n = i
    while True:
        s.append(letters[n % 26])
        n //= 26
        if n == 0:
            break
    pad = 6 + (i * 7919) % 5
    while len(s) < pad:
        s.append(letters[(i * 31 + len(s)) % 26])
    return "".join(s)


vocab = [word(i) for i in range(distinct)]
common = min(10_000, distinct)
weights = [1.0 / (r + 1) for r in range(common)]
text = vocab[:]
text += rng.choices(vocab[:common], weights=weights, k=max(0, words - distinct))
rng.shuffle(text)
with open(out, "w") as f:
    for i in range(0, len(text), 12):
        f.write(" ".join(text[i : i + 12]) + "\n")
