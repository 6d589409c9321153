#!/usr/bin/env python3
"""Makes data/transactions.jsonl (seeded, with out-of-order events) and
expected/alerts.jsonl from an independent reference of the detector's
semantics, including event-time timers driven by punctuated
bounded-out-of-orderness watermarks (max_ts - 5000 - 1 after each event)."""
import json, random, sys, os

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
rng = random.Random(20261122)
accounts = [f"acc-{i:02d}" for i in range(12)]
t = 1_700_000_000_000
txs = []
for _ in range(3000):
    t += rng.randint(0, 9000)
    acc = rng.choice(accounts)
    r = rng.random()
    if r < 0.10:
        amount = round(rng.uniform(0.01, 0.99), 2)
    elif r < 0.22:
        amount = round(rng.uniform(500.01, 2000.0), 2)
    else:
        amount = round(rng.uniform(1.0, 499.99), 2)
    ts = t
    if rng.random() < 0.15:
        ts -= rng.randint(1, 20_000)  # out of order, sometimes beyond the 5 s bound
    txs.append({"account": acc, "amount": amount, "ts": ts})
# a few exact edge cases
base = t + 100_000
txs += [
    {"account": "edge-1", "amount": 0.99, "ts": base},
    {"account": "edge-1", "amount": 500.01, "ts": base + 60_000},   # exactly one minute: alert
    {"account": "edge-2", "amount": 0.5, "ts": base},
    {"account": "edge-2", "amount": 900.0, "ts": base + 60_001},    # a minute and 1 ms: none
    {"account": "edge-3", "amount": 1.0, "ts": base},               # 1.00 is not small
    {"account": "edge-3", "amount": 700.0, "ts": base + 10},
    {"account": "edge-4", "amount": 0.1, "ts": base},
    {"account": "edge-4", "amount": 500.0, "ts": base + 10},        # 500.00 is not large
]

def reference(txs, delay=5000, minute=60_000):
    small_at, timer, timers = {}, {}, set()
    max_ts, wm, alerts = None, None, []
    for tx in txs:
        acc, amount, ts = tx["account"], tx["amount"], tx["ts"]
        if acc in small_at:
            if amount > 500.0 and ts - small_at[acc] <= minute:
                alerts.append(tx)
            timers.discard((timer.pop(acc), acc))
            del small_at[acc]
        if amount < 1.0:
            small_at[acc] = ts
            timer[acc] = ts + minute
            timers.add((ts + minute, acc))
        if max_ts is None or ts > max_ts:
            max_ts = ts
            wm = ts - delay - 1
            for due in sorted(x for x in timers if x[0] <= wm):
                timers.discard(due)
                small_at.pop(due[1], None)
                timer.pop(due[1], None)
    return alerts

os.makedirs(os.path.join(root, "data"), exist_ok=True)
os.makedirs(os.path.join(root, "expected"), exist_ok=True)
with open(os.path.join(root, "data", "transactions.jsonl"), "w") as f:
    for tx in txs:
        f.write(json.dumps(tx) + "\n")
with open(os.path.join(root, "expected", "alerts.jsonl"), "w") as f:
    for a in sorted(reference(txs), key=lambda a: (a["ts"], a["account"])):
        f.write(json.dumps({"account": a["account"], "amount": float(a["amount"]), "ts": a["ts"]}, separators=(",", ":")) + "\n")
print(len(txs), "transactions,", len(reference(txs)), "alerts", file=sys.stderr)
