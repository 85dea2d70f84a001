"""A check of schedule transfer between tasks, made before the package's schedule library
existed (2026-12-04, commit 1a99707; not part of the package).

For each held-out task: the 8 fastest records of its K nearest training tasks (same operator,
nearest log shape; kernel, stride and padding must match or cost 10 each) are replayed on it,
scored by a weights file, and every one of them is measured side by side (3 interleaved rounds,
median) with the 3 best records of a reference: the task's XGB@256 run when XGB_RUNS/<task>/xgb
exists, else its own records in tuning_records (64 collector records: about stock XGB at 64).

    python benchmarks/library_transfer/library_transfer_check.py "TASK;TASK;..." 4 8 \
        WEIGHTS.pt OUT.json [XGB_RUNS]
    python benchmarks/library_transfer/library_transfer_rules.py OUT.json  # the selection rules
"""

import json
import math
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms

from ms_meta.model.cost_model import MetaCostModel
from ms_meta.tuning.builder import fast_build
from ms_meta.workloads import resolve_one

ROOT = Path(__file__).resolve().parents[2]
REC = ROOT / "tuning_records/llvm-znver4-noavx512-2c"
split = json.load(open(ROOT / "tuning_records/llvm-rocketlake-2c/split.json"))
train = set(split["train"])
target = tvm.target.Target(json.load(open(ROOT / "benchmarks/target_znver4_noavx512.json")))
TASKS = sys.argv[1].split(";")
K, M = int(sys.argv[2]), int(sys.argv[3])
WEIGHTS = sys.argv[4]
out_path = Path(sys.argv[5])


def op_and_params(name):
    m = re.match(r"^(.*?)_((?:\d+_)*\d+)$", name)
    return m.group(1), [int(x) for x in m.group(2).split("_")]


def neighbours(task, k):
    op, p = op_and_params(task)
    cands = []
    for d in REC.iterdir():
        if d.name not in train or not d.is_dir():
            continue
        o, q = op_and_params(d.name)
        if o != op or len(q) != len(p):
            continue
        dist = sum(
            (math.log2(a) - math.log2(b)) ** 2 for a, b in zip(p, q, strict=True) if a > 0 and b > 0
        )
        # kernel / stride / padding: structural, weigh heavily
        if op.startswith(("conv2d", "depthwise")):
            dist += 10 * sum(a != b for a, b in zip(p[-4:], q[-4:], strict=True))
        cands.append((dist, d.name))
    return [n for _, n in sorted(cands)[:k]]


def top_records(task_dir, m):
    db = ms.database.JSONDatabase(work_dir=str(task_dir), module_equality="structural")
    recs = [r for r in db.get_all_tuning_records() if r.run_secs and float(r.run_secs[0]) < 1e9]
    recs.sort(key=lambda r: statistics.mean(float(s) for s in r.run_secs))
    best = statistics.mean(float(s) for s in recs[0].run_secs)
    return [(r, statistics.mean(float(s) for s in r.run_secs) / best) for r in recs[:m]]


def context_for(mod):
    ctx = ms.TuneContext(
        mod=mod,
        target=target,
        space_generator="post-order-apply",
        task_name="main",
        rand_state=1,
        num_threads=2,
    )
    return ctx


def transfer(trace, mod, postprocs):
    sch = tvm.s_tir.Schedule(mod)
    trace.apply_to_schedule(sch, remove_postproc=True)
    for p in postprocs:
        if not p.apply(sch):
            return None
    return sch


def timer(sch):
    rt = fast_build(sch.mod, target, None)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = []
    for info in ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True):
        args.append(
            tvm.runtime.tensor(
                rng.uniform(-1, 1, [int(x) for x in info.shape]).astype(str(info.dtype)), dev
            )
        )
    ev = rt.time_evaluator(rt.entry_name or "main", dev, number=1, repeat=5, min_repeat_ms=50)
    return lambda: min(ev(*args).results)


model = MetaCostModel(weights=WEIGHTS, target=target)
rows = []
timers = {}
for task in TASKS:
    mod = resolve_one(task).build()
    ctx = context_for(mod)
    postprocs = list(ctx.space_generator.postprocs)
    seen = set()
    cands = []
    if not neighbours(task, K):
        print("no neighbours", task)
        continue
    for nb in neighbours(task, K):
        for rank, (rec, rel) in enumerate(top_records(REC / nb, M)):
            try:
                sch = transfer(rec.trace, ctx.mod, postprocs)
            except Exception as e:
                print("transfer failed", task, nb, rank, str(e).splitlines()[-1][:100])
                continue
            if sch is None:
                print("postproc failed", task, nb, rank)
                continue
            h = str(sch.mod)
            if h in seen:
                continue
            seen.add(h)
            cands.append(dict(task=task, nb=nb, rank=rank, rel=rel, sch=sch))
    mc = [
        ms.MeasureCandidate(
            c["sch"], ms.arg_info.ArgInfo.from_entry_func(c["sch"].mod, remove_preproc=True)
        )
        for c in cands
    ]
    scores = np.asarray(model.predict(ctx, mc))
    for c, s in zip(cands, scores, strict=True):
        c["score"] = float(s)
    # XGB@256 references: top 3 stored
    xdir = Path(sys.argv[6] if len(sys.argv) > 6 else "/nonexistent") / task / "xgb"
    xdb = ms.database.JSONDatabase(work_dir=str(xdir if xdir.exists() else REC / task))
    xr = sorted(
        [r for r in xdb.get_all_tuning_records() if float(r.run_secs[0]) < 1e9],
        key=lambda r: statistics.mean(float(s) for s in r.run_secs),
    )[:3]
    for i, r in enumerate(xr):
        sch = tvm.s_tir.Schedule(mod)
        r.trace.apply_to_schedule(sch, remove_postproc=False)
        cands.append(dict(task=task, nb="xgb256", rank=i, rel=None, score=None, sch=sch))
    print(task, "neighbours", neighbours(task, K), len(cands), "schedules", flush=True)
    for c in cands:
        try:
            c["run"] = timer(c["sch"])
        except Exception as e:
            c["run"] = None
            print("build failed", c["nb"], c["rank"], str(e).splitlines()[-1][:100])
    rows += cands
print("timing", len(rows), flush=True)
live = [c for c in rows if c["run"]]
for c in live:
    c["t"] = []
for rnd in range(3):
    sh = rnd * 7 % len(live)
    for c in live[sh:] + live[:sh]:
        if c.get("dead"):
            continue
        try:
            c["t"].append(c["run"]())
        except Exception as e:
            c["dead"] = True
            c["t"] = []
            print("run failed", c["task"], c["nb"], c["rank"], str(e).splitlines()[0][:100])
for c in rows:
    c["secs"] = statistics.median(c["t"]) if c.get("t") else None
    c.pop("sch")
    c.pop("run")
    c.pop("t", None)
    c.pop("dead", None)
json.dump(rows, open(out_path, "w"), indent=1)
for task in TASKS:
    r = [c for c in rows if c["task"] == task]
    if not any(c["nb"] != "xgb256" and c["secs"] for c in r):
        continue
    ref = min(c["secs"] for c in r if c["nb"] == "xgb256" and c["secs"])
    tr = [c for c in r if c["nb"] != "xgb256" and c["secs"]]
    best = min(c["secs"] for c in tr)
    pick = max(tr, key=lambda c: c["score"])
    first = [c for c in tr if c["rank"] == 0 and c["nb"] == tr[0]["nb"]]
    nearest = first[0]["secs"] / ref if first else float("nan")
    median = statistics.median(c["secs"] for c in tr) / ref
    print(
        f"{task}: n={len(tr)} oracle {best / ref:.3f} model-pick {pick['secs'] / ref:.3f} "
        f"nearest-top1 {nearest:.3f} median {median:.3f}"
    )
