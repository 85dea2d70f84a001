"""Record-store scale benchmark: import rate, query latency and file size at a million records.

Generates a tree of MetaSchedule JSON databases (``<target>/<task>/database_*.json``, one per
task and target) from the committed seed records: real instruction lists and decisions varied
per record, real workload modules, latencies drawn per task, about 1% failed records. Then it
imports the tree into a fresh store, and times target-keyed lookups: the store's own SQL query
(what ``query_tuning_record`` and ``get_top_k`` run) over thousands of random (task, target)
pairs, and ``RecordStore.query_tuning_record`` / ``get_top_k`` with TVM objects on the seed
tasks' real workloads (cold: the first call builds the TVM record, which replays its trace;
warm: later calls).

Usage::

    nice -n 10 python benchmarks/store/bench_store.py --records 1000000 --workloads 3000 \\
        --work-dir /tmp/bench-store --out benchmarks/store/<date>-<cpu>
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "tests" / "fixtures" / "seed_records"
TARGETS = [
    {"keys": ["cpu"], "kind": "llvm", "mcpu": "rocketlake", "num-cores": 2, "tag": ""},
    {
        "keys": ["cpu"],
        "kind": "llvm",
        "mattr": ["-avx512f"],
        "mcpu": "znver4",
        "num-cores": 2,
        "tag": "",
    },
    {"keys": ["cpu"], "kind": "llvm", "mcpu": "znver4", "num-cores": 2, "tag": ""},
]
UNIQUE_INSTS_SHARE = 0.26  # share of distinct instruction lists in real tuning_records/
FAILED_SHARE = 0.01


def _seed_tasks() -> list[dict]:
    """Each seed task: its workload line, record parts, and the indices of its
    SampleCategorical decisions (safe to vary: any category index is valid)."""
    from ms_meta.store.msjson import split_record_line

    tasks = []
    for directory in sorted(SEED.iterdir()):
        if not (directory / "database_tuning_record.json").is_file():
            continue
        records = []
        for line in (directory / "database_tuning_record.json").read_text().splitlines():
            _, rec = split_record_line(line)
            insts = json.loads(rec.insts)
            categorical = {
                i: len(inst[2][0]) for i, inst in enumerate(insts) if inst[0] == "SampleCategorical"
            }
            records.append((rec, categorical))
        tasks.append(
            {
                "name": directory.name,
                "workload": (directory / "database_workload.json").read_text().strip(),
                "records": records,
            }
        )
    return tasks


def _vary_decisions(decisions: str, categorical: dict[int, int], rng: random.Random) -> str:
    values = json.loads(decisions)
    for entry in values:
        if entry[0] in categorical:
            entry[1] = rng.randrange(categorical[entry[0]])
    from ms_meta.store.msjson import dumps

    return dumps(values)


def _real_variants(task: dict, count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """Up to ``count`` distinct valid (insts, decisions, args) of a seed task."""
    seen, out = set(), []
    for attempt in range(count * 20):
        rec, categorical = task["records"][attempt % len(task["records"])]
        decisions = rec.decisions if attempt < len(task["records"]) else None
        if decisions is None:
            decisions = _vary_decisions(rec.decisions, categorical, rng)
        key = (rec.insts, decisions)
        if key not in seen:
            seen.add(key)
            out.append((rec.insts, decisions, rec.args_info))
        if len(out) == count:
            break
    return out


def _synthetic_variants(task: dict, count: int, rng: random.Random, tag: int) -> list:
    """``count`` distinct (insts, decisions, args) of a synthetic task: about a quarter of the
    records bring a new instruction list (as in real records), the rest vary decisions."""
    n_insts = max(1, round(count * UNIQUE_INSTS_SHARE))
    insts_pool = []
    for j in range(n_insts):
        rec, _ = rng.choice(task["records"])
        marker = f',["Annotate",["b0",{tag * 1000 + j}],["bench.variant"],[]]]'
        insts_pool.append((rec.insts[:-1] + marker, rec))
    out = []
    for j in range(count):
        insts, rec = insts_pool[j % n_insts]
        decisions = json.loads(rec.decisions) or [[0, 0]]
        decisions.append([999, j])  # unique per record
        from ms_meta.store.msjson import dumps

        out.append((insts, dumps(decisions), rec.args_info))
    return out


def generate(root: Path, n_records: int, n_workloads: int, seed: int) -> dict:
    """Write the JSON database tree; returns counts."""
    from ms_meta.store.msjson import dumps, join_record_line

    rng = random.Random(seed)
    tasks = _seed_tasks()
    target_texts = [dumps(t) for t in TARGETS]
    labels = ["llvm-rocketlake-2c", "llvm-znver4-noavx512-2c", "llvm-znver4-2c"]
    pairs = n_workloads * len(TARGETS)
    per_pair = [n_records // pairs + (1 if i < n_records % pairs else 0) for i in range(pairs)]
    written = 0
    real_names = []
    for w in range(n_workloads):
        task = tasks[w % len(tasks)]
        real = w < len(tasks)  # the first workloads are the seed tasks themselves
        if real:
            name, workload_line = task["name"], task["workload"]
            real_names.append(name)
        else:
            shash = str(rng.getrandbits(64))
            module = json.loads(task["workload"])[1]
            name, workload_line = f"wl{w:05d}", dumps([shash, module])
        base_latency = 10 ** rng.uniform(-5, -2)
        for t, target_text in enumerate(target_texts):
            count = per_pair[w * len(TARGETS) + t]
            if real:
                variants = _real_variants(task, count, rng)
            else:
                variants = _synthetic_variants(task, count, rng, w * 10 + t)
            directory = root / labels[t] / name
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "database_workload.json").write_text(workload_line + "\n")
            with open(directory / "database_tuning_record.json", "w") as handle:
                for insts, decisions, args in variants:
                    if rng.random() < FAILED_SHARE:
                        run_secs = "[10000000000]"
                    else:
                        run_secs = dumps([base_latency * rng.lognormvariate(0.3, 0.4)])
                    parts = (insts, decisions, run_secs, target_text, args)
                    handle.write(join_record_line(0, parts) + "\n")
            written += len(variants)
    return {"records": written, "workloads": n_workloads, "targets": len(TARGETS),
            "real_tasks": real_names}  # fmt: skip


def _percentiles(samples_us: list[float], cpu_us: list[float] | None = None) -> dict:
    ordered = sorted(samples_us)
    out = {
        "n": len(ordered),
        "median_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "max_us": round(ordered[-1], 1),
    }
    if cpu_us:  # the thread's CPU time: what the query costs, preemption left out
        out["cpu_median_us"] = round(statistics.median(cpu_us), 1)
        out["cpu_max_us"] = round(max(cpu_us), 1)
    return out


class _Clock:
    """Wall and thread CPU time of one call."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter_ns(), time.thread_time_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_us = (time.perf_counter_ns() - self.wall) / 1e3
        self.cpu_us = (time.thread_time_ns() - self.cpu) / 1e3


def _realtime(on: bool) -> None:
    """SCHED_FIFO for the timed lookups (``--realtime``): other jobs on a shared machine then
    no longer preempt them."""
    if on:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    else:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def sql_queries(store, n: int, seed: int) -> dict:
    """Latency of the store's lookup: workload ids by hash, then the k best of a target."""
    from ms_meta.store import target_key

    rng = random.Random(seed)
    workloads = store.workloads()
    keys = [target_key(t) for t in TARGETS]
    out = {}
    for k in (1, 32):
        samples, cpu = [], []
        for _ in range(n):
            shash, key = rng.choice(workloads).shash, rng.choice(keys)
            with _Clock() as clock:
                ids = store.workload_ids(shash)
                store.best(ids, key, k)
            samples.append(clock.wall_us)
            cpu.append(clock.cpu_us)
        out[f"best_k{k}"] = _percentiles(samples, cpu)
    return out


def tvm_queries(path: Path, real_names: list[str], repeats: int) -> dict:
    """``RecordStore.query_tuning_record`` and ``get_top_k`` with TVM objects on real tasks."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.target import Target

    from ms_meta.store import RecordStore

    modules = []
    for name in real_names:
        line = json.loads((SEED / name / "database_workload.json").read_text())
        modules.append(ms.database.Workload.from_json(line).mod)
    targets = [Target({k: v for k, v in t.items() if k not in ("keys", "tag")}) for t in TARGETS]
    RecordStore(path).query_tuning_record(modules[0], targets[0], "main")  # TVM's first use
    cold, warm, cold_cpu, warm_cpu, opens, found = [], [], [], [], [], 0
    for mod in modules:
        for target in targets:
            with _Clock() as clock:
                store = RecordStore(path)  # freshly opened: nothing of it cached
            opens.append(clock.wall_us)
            with _Clock() as clock:
                record = store.query_tuning_record(mod, target, "main")
            cold.append(clock.wall_us)
            cold_cpu.append(clock.cpu_us)
            found += record is not None
            for _ in range(repeats):
                with _Clock() as clock:
                    store.query_tuning_record(mod, target, "main")
                warm.append(clock.wall_us)
                warm_cpu.append(clock.cpu_us)
            store.close()
    top_cold, top_warm = [], []
    for mod in modules:
        view = RecordStore(path, target=targets[0])
        workload = view.commit_workload(mod)
        start = time.perf_counter_ns()
        view.get_top_k(workload, 32)
        top_cold.append((time.perf_counter_ns() - start) / 1e3)
        for _ in range(repeats):
            start = time.perf_counter_ns()
            view.get_top_k(workload, 32)
            top_warm.append((time.perf_counter_ns() - start) / 1e3)
    return {
        "pairs": len(cold),
        "found": found,
        "open": _percentiles(opens),
        "query_tuning_record_cold": _percentiles(cold, cold_cpu),
        "query_tuning_record_warm": _percentiles(warm, warm_cpu),
        "get_top_k32_cold": _percentiles(top_cold),
        "get_top_k32_warm": _percentiles(top_warm),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workloads", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--tvm-repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="import worker processes (default: the store's choice)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="time the lookups under SCHED_FIFO (needs root or CAP_SYS_NICE)",
    )
    parser.add_argument(
        "--lookups-only",
        action="store_true",
        help="time the lookups of the store already in --work-dir (no generation, no import)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))

    from ms_meta.store import SqlStore, import_json_databases, scan_json_databases

    tree, path = args.work_dir / "json", args.work_dir / "records.sqlite"
    result: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": _commit(),
    }
    if args.lookups_only:
        _lookups(args, path, result)
        return
    if args.work_dir.exists():
        shutil.rmtree(args.work_dir)
    start = time.perf_counter()
    result["generated"] = generate(tree, args.records, args.workloads, args.seed)
    result["generate_s"] = round(time.perf_counter() - start, 1)
    result["json_bytes"] = sum(f.stat().st_size for f in tree.rglob("*.json"))
    print(json.dumps(result), flush=True)

    load_before = os.getloadavg()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with SqlStore(path) as store:
        start, cpu_start = time.perf_counter(), time.process_time()
        sources = scan_json_databases([tree])
        scanned = time.perf_counter()
        report = import_json_databases(store, sources, workers=args.workers)
        done = time.perf_counter()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["import"] = {
            "databases": report.databases,
            "added": report.added,
            "duplicates": report.duplicates,
            "malformed": report.malformed,
            "scan_s": round(scanned - start, 1),
            "import_s": round(done - scanned, 1),
            "total_s": round(done - start, 1),
            "records_per_s": round(report.added / (done - start)),
            "cpu_s": round(time.process_time() - cpu_start, 1),
            "workers_cpu_s": round(_cpu_s(children) - _cpu_s(children_before), 1),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
        result["file_bytes_after_import"] = store.file_bytes()
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        result["file_bytes"] = store.file_bytes()
    _lookups(args, path, result)


def _lookups(args: argparse.Namespace, path: Path, result: dict) -> None:
    """Time the lookups of the store at ``path`` and write the result."""
    from ms_meta.store import SqlStore

    with SqlStore(path) as store:
        real_tasks = [w.name for w in store.workloads() if w.name and not w.name.startswith("wl")]
        result["realtime_lookups"] = args.realtime
        result["loadavg_lookups"] = [round(x, 2) for x in os.getloadavg()]
        _realtime(args.realtime)
        result["sql"] = sql_queries(store, args.queries, args.seed)
        _realtime(False)
        result["stats"] = {k: v for k, v in store.stats().items() if k != "targets"}
    print(json.dumps(result), flush=True)
    _realtime(args.realtime)
    result["tvm"] = tvm_queries(path, real_tasks, args.tvm_repeats)
    _realtime(False)
    result["machine"] = {
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "commit": _commit(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def _cpu_s(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _cpu() -> str:
    try:
        import tvm

        return str(tvm.target.codegen.llvm_get_system_cpu())
    except Exception:  # a machine without TVM still gets its numbers
        return platform.processor() or "unknown"


def _commit() -> str:
    """The last commit that changed the store or this benchmark (the code measured)."""
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", "ms_meta/store", "benchmarks/store"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
