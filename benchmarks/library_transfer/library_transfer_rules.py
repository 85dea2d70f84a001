"""Selection rules over the output of library_transfer_check.py: per task, the pick of each rule
as a ratio to the task's reference; geomean over tasks.

Usage: python benchmarks/library_transfer/library_transfer_rules.py OUT.json
"""

import json
import math
import statistics
import sys

import numpy as np

rows = json.load(open(sys.argv[1]))
tasks = list(dict.fromkeys(r["task"] for r in rows))


def gm(v):
    return math.exp(sum(map(math.log, v)) / len(v)) if v else float("nan")


rules = {}
per = []
for t in tasks:
    r = [c for c in rows if c["task"] == t]
    refs = [c["secs"] for c in r if c["nb"] == "xgb256" and c["secs"]]
    tr = [c for c in r if c["nb"] != "xgb256" and c["secs"]]
    if not refs or not tr:
        print("skip", t)
        continue
    ref = min(refs)
    nbs = list(dict.fromkeys(c["nb"] for c in tr))

    def add(name, c, ref=ref):
        rules.setdefault(name, []).append(c["secs"] / ref)

    pick = max(tr, key=lambda c: c["score"])
    add("model pick (K4 M8)", pick)
    add(
        "model pick among top-4 each",
        max([c for c in tr if c["rank"] < 4], key=lambda c: c["score"]),
    )
    add(
        "model pick among top-2 each",
        max([c for c in tr if c["rank"] < 2], key=lambda c: c["score"]),
    )
    add(
        "model pick, 2 nearest",
        max([c for c in tr if c["nb"] in nbs[:2]], key=lambda c: c["score"]),
    )
    add("nearest task's #1", min([c for c in tr if c["nb"] == nbs[0]], key=lambda c: c["rank"]))
    add("oracle best", min(tr, key=lambda c: c["secs"]))
    add("median", {"secs": statistics.median(c["secs"] for c in tr)})
    per.append((t, pick["secs"] / ref, min(c["secs"] for c in tr) / ref, pick["nb"], pick["rank"]))
for t, a, b, nb, rk in per:
    print(f"  {t:45s} pick {a:.3f} oracle {b:.3f}  from {nb} #{rk + 1}")
for k, v in rules.items():
    print(f"{k:32s} geomean {gm(v):.3f}  worst {max(v):.2f}  n={len(v)}")


def fused(path, lam, mu=0.0):
    """The pick of z(score) + lam * z(-log relative) + mu * z(-neighbour rank)."""
    rows = json.load(open(path))
    out = []
    for t in dict.fromkeys(r["task"] for r in rows):
        r = [c for c in rows if c["task"] == t]
        refs = [c["secs"] for c in r if c["nb"] == "xgb256" and c["secs"]]
        tr = [c for c in r if c["nb"] != "xgb256" and c["secs"]]
        if not refs or not tr:
            continue
        nbs = list(dict.fromkeys(c["nb"] for c in tr))
        s = np.array([c["score"] for c in tr])
        z = (s - s.mean()) / (s.std() + 1e-9)
        p = -np.log([c["rel"] for c in tr])
        zp = (p - p.mean()) / (p.std() + 1e-9)
        d = -np.array([nbs.index(c["nb"]) for c in tr], float)
        zd = (d - d.mean()) / (d.std() + 1e-9)
        comb = z + lam * zp + mu * zd
        out.append(tr[int(np.argmax(comb))]["secs"] / min(refs))
    return gm(out), max(out)


for lam in (0, 0.25, 0.5, 1, 2, 4):
    for mu in (0, 0.5, 1):
        g, worst = fused(sys.argv[1], lam, mu)
        print(f"prior weight {lam:4} neighbour weight {mu:3}: geomean {g:.3f} (worst {worst:.2f})")
