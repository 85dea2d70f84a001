"""Per-operator gap table: where a compiled network's time goes, and how each of its TVM
functions compares with PyTorch (oneDNN) on the same operator and with the CPU's peak.

For every TIR function the compiled network calls: its share of the network's time, its time
per call and GFLOP/s with One-Shot (and with stock MetaSchedule when a tuning database is
given), the same operator's time in PyTorch (convolutions and matrix products, timed in a
torch-only process), where One-Shot's schedule came from (the schedule library, the search, a
measurement) or that the function was never tuned. Each runtime runs in its own process, as in
:mod:`ms_meta.bench.e2e`. Times come from the Relax VM's instrument hook around every call it
makes (a few microseconds of Python per call are inside them).
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.errors import MsMetaError
from ms_meta.tuning.contention import ForeignLoadMeter

__all__ = [
    "cpu_peak_gflops",
    "describe_functions",
    "format_gap_table",
    "match_torch_op",
    "operator_kind",
    "run_gap_table",
]

# PyTorch functions whose calls are timed on their own, by the name TorchFunctionMode sees
TORCH_OPS = ("conv2d", "linear", "matmul", "bmm", "addmm", "mm")
# TVM function kinds that have a PyTorch counterpart in TORCH_OPS
_TORCH_KIND = {"conv2d": "conv2d", "matmul": "matmul", "dense": "matmul", "batch_matmul": "matmul"}
_TORCH_OP_KIND = {
    "conv2d": "conv2d",
    "linear": "matmul",
    "matmul": "matmul",
    "bmm": "matmul",
    "addmm": "matmul",
    "mm": "matmul",
}
PEAK_FORMULA = "threads x GHz x 2 FMA units x SIMD fp32 lanes (16 AVX-512, 8 AVX2) x 2 flops/FMA"


def operator_kind(name: str) -> str:
    """The operator a fused function is built around, from its name (``fused_conv2d3_add_relu``
    is a conv2d)."""
    lowered = name.lower()
    for kind in ("conv2d", "batch_matmul", "matmul", "dense", "softmax", "layer_norm",
                 "max_pool", "adaptive_avg_pool", "mean"):  # fmt: skip
        if kind in lowered:
            return kind
    return "elementwise/other"


# ---- the TVM side (in the compile and profile processes) -----------------------------------


def describe_functions(prepared, target) -> dict[str, dict[str, Any]]:
    """For every TIR function of a legalized and fused module: the MetaSchedule task it
    belongs to (functions of the same structure share one), its FLOPs and operator kind."""
    import tvm
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    def key(func):
        return tvm_ffi.structural_hash(func.without_attr("global_symbol"))

    tasks: dict[int, str] = {}
    for task in ms.relax_integration.extract_tasks(prepared, target):
        tasks.setdefault(key(task.mod["main"]), task.task_name)
    described = {}
    for gv, func in prepared.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        try:
            flops = float(estimate_tir_flops(tvm.IRModule({"main": func})))
        except Exception:
            flops = None
        described[gv.name_hint] = {
            "task": tasks.get(key(func)),
            "flops": flops,
            "kind": operator_kind(gv.name_hint),
        }
    return described


def profile_tvm(library: Path, inputs: Sequence[np.ndarray], runs: int, warmup: int):
    """Seconds per call of every function the VM calls while running ``main``, median over
    ``runs`` runs, with the calls per run and their argument shapes."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(x), tvm.cpu()) for x in inputs]
    main = vm["main"]
    for _ in range(warmup):
        main(*args)
    per_run: list[dict[str, float]] = []
    shapes: dict[str, list[list[int]]] = {}
    calls: dict[str, int] = {}
    started: dict[str, float] = {}
    current: dict[str, float] = {}

    def instrument(func, name, before, ret, *call_args):
        now = time.perf_counter()
        if before:
            started[name] = now
            if len(per_run) == 0:
                calls[name] = calls.get(name, 0) + 1
                if name not in shapes:
                    shapes[name] = [list(a.shape) for a in call_args if hasattr(a, "shape")]
        else:
            current[name] = current.get(name, 0.0) + now - started[name]
        return 0

    vm.set_instrument(instrument)
    totals = []
    with ForeignLoadMeter() as meter:
        for _ in range(runs):
            current.clear()
            start = time.perf_counter()
            main(*args)
            totals.append(time.perf_counter() - start)
            per_run.append(dict(current))
    functions = {}
    for name, count in calls.items():
        seconds = statistics.median(run.get(name, 0.0) for run in per_run)
        functions[name] = {
            "calls_per_run": count,
            "seconds_per_run": seconds,
            "us_per_call": seconds / count * 1e6,
            "arg_shapes": shapes.get(name),
        }
    return {
        "functions": functions,
        "instrumented_run_seconds": statistics.median(totals),
        "foreign_cores": _foreign(meter),
    }


def _foreign(meter) -> float | None:
    return None if meter.load is None else round(meter.load.other_processes, 3)


# ---- the PyTorch side (in a torch-only process) ----------------------------------------------


def time_torch_ops(network: str, threads: int, runs: int, warmup: int) -> dict[str, Any]:
    """Every distinct convolution and matrix-product call of the network's eager forward pass,
    timed alone with the same arguments (median of ``runs`` calls): ``{"ops": [...],
    "foreign_cores": ...}``."""
    import torch
    from torch.overrides import TorchFunctionMode

    from ms_meta.networks import load_model

    torch.set_num_threads(threads)
    model, inputs = load_model(network)
    seen: dict[tuple, dict[str, Any]] = {}

    class Capture(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            if name in TORCH_OPS and isinstance(out, torch.Tensor):
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                key = (
                    name,
                    tuple(tuple(t.shape) for t in tensors),
                    repr([a for a in args if not isinstance(a, torch.Tensor)]),
                    repr(sorted(kwargs.items())),
                )
                if key not in seen:
                    seen[key] = {
                        "op": name,
                        "func": func,
                        "args": args,
                        "kwargs": kwargs,
                        "arg_shapes": [list(t.shape) for t in tensors],
                        "out_shape": list(out.shape),
                        "calls": 0,
                    }
                seen[key]["calls"] += 1
            return out

    with torch.inference_mode():
        with Capture():
            model(*inputs)
        ops = []
        meter = ForeignLoadMeter().__enter__()
        for entry in seen.values():
            func, args, kwargs = entry.pop("func"), entry.pop("args"), entry.pop("kwargs")
            for _ in range(warmup):
                func(*args, **kwargs)
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                func(*args, **kwargs)
                samples.append(time.perf_counter() - start)
            entry["us_per_call"] = statistics.median(samples) * 1e6
            entry["flops"] = _torch_flops(entry)
            ops.append(entry)
        meter.__exit__(None, None, None)
    return {"ops": ops, "foreign_cores": _foreign(meter)}


def _torch_flops(entry: dict[str, Any]) -> float:
    """Multiply-add FLOPs (2 per MAC) of a captured convolution or matrix product."""
    out = math.prod(entry["out_shape"])
    shapes = entry["arg_shapes"]
    if entry["op"] == "conv2d":
        weight = shapes[1]
        return 2.0 * out * math.prod(weight[1:])
    if entry["op"] == "linear":
        return 2.0 * out * shapes[0][-1]
    reduced = shapes[-1][-2] if entry["op"] in ("addmm",) else shapes[0][-1]
    return 2.0 * out * reduced


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` without its leading unit dimensions (TVM's frontend reshapes ``[1, 128, 768]``
    to ``[128, 768]`` around a matrix product)."""
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _unblocked(shape: Sequence[int]) -> tuple[int, ...]:
    """The plain shape of a channel-blocked convolution argument: ``NCHW{b}c`` data
    ``[N, C/b, H, W, b]`` as ``[N, C, H, W]``, ``OIHW{c}i{k}o`` weights ``[K/k, C/c, R, S, c,
    k]`` as ``[K, C, R, S]``; other shapes unchanged (PyTorch sees the plain ones)."""
    shape = tuple(shape)
    if len(shape) == 5:
        n, chunks, h, w, block = shape
        return (n, chunks * block, h, w)
    if len(shape) == 6:
        out_chunks, in_chunks, kh, kw, in_block, out_block = shape
        return (out_chunks * out_block, in_chunks * in_block, kh, kw)
    return shape


def match_torch_op(kind: str, arg_shapes: Sequence[Sequence[int]], ops: list[dict[str, Any]]):
    """The captured PyTorch call that computes the same operator as a TVM function of operator
    ``kind`` whose arguments have ``arg_shapes`` (inputs first, the output last): same kind,
    the same output shape, and the most shapes in common, the data input first (a weight may
    be transposed, or prepacked out of recognition; leading unit dimensions do not count)."""
    wanted = _TORCH_KIND.get(kind)
    if wanted is None or not arg_shapes:
        return None
    if kind == "conv2d":
        arg_shapes = [_unblocked(s) for s in arg_shapes]
    shapes = {_squeezed(s) for s in arg_shapes}
    data, output = _squeezed(arg_shapes[0]), _squeezed(arg_shapes[-1])
    best, best_score = None, 0
    for op in ops:
        if _TORCH_OP_KIND.get(op["op"]) != wanted or _squeezed(op["out_shape"]) != output:
            continue
        theirs = [_squeezed(shape) for shape in op["arg_shapes"]]
        score = 1 + 2 * (bool(theirs) and theirs[0] == data)
        for shape in theirs[1:]:
            score += shape in shapes or (len(shape) == 2 and (shape[1], shape[0]) in shapes)
        if score > best_score:
            best, best_score = op, score
    return best


# ---- the CPU's peak --------------------------------------------------------------------------


def cpu_peak_gflops(threads: int, cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """The fp32 peak of ``threads`` cores from /proc/cpuinfo (see :data:`PEAK_FORMULA`); the
    clock is the one the kernel reports (a guest sees the nominal one, not turbo)."""
    mhz, flags = None, set()
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "cpu MHz" and mhz is None:
                mhz = float(value)
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except (OSError, ValueError):
        pass
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    ghz = (mhz or 0.0) / 1e3
    return {
        "gflops": threads * ghz * 2 * lanes * 2 if mhz else None,
        "ghz": ghz or None,
        "fp32_lanes": lanes,
        "threads": threads,
        "formula": PEAK_FORMULA,
    }


# ---- the table ---------------------------------------------------------------------------------


def _origin(function: dict[str, Any], outcomes: dict[str, dict[str, Any]]) -> str:
    task = function.get("task")
    if task is None:
        return "never tuned"
    outcome = outcomes.get(task)
    if outcome is None:
        return "never tuned"
    if outcome["status"] not in ("predicted", "measured"):
        return f"untuned ({outcome['status']})"
    source = outcome.get("source") or "search"
    return f"{source}, measured" if outcome["status"] == "measured" else source


def _gflops(flops, seconds) -> float | None:
    return flops / seconds / 1e9 if flops and seconds and seconds > 0 else None


def _same_function(name: str, kind: str, arg_shapes, functions: dict[str, dict]):
    """The function of another build that computes what ``name`` computes: the same name, else
    the same operator kind with the same output shape and the most argument shapes in common
    (pipelines that fold batch norm or not name and shape the epilogue differently)."""
    if name in functions:
        return functions[name]
    if kind == "elementwise/other" or not arg_shapes:
        return None
    shapes = {_squeezed(s) for s in arg_shapes}
    output = _squeezed(arg_shapes[-1])
    best, best_score = None, 0
    for other, f in functions.items():
        theirs = [_squeezed(s) for s in f.get("arg_shapes") or []]
        if operator_kind(other) != kind or not theirs or theirs[-1] != output:
            continue
        score = sum(shape in shapes for shape in theirs[:2])  # data and weight
        if score > best_score:
            best, best_score = f, score
    return best


def build_rows(one_shot: dict, described: dict, outcomes: dict, torch_ops: list, xgb=None):
    """One row per TVM function of the One-Shot build (VM builtins summed into one row)."""
    functions = one_shot["functions"]
    total = sum(f["seconds_per_run"] for f in functions.values()) or 1.0
    rows, builtin = [], 0.0
    for name, f in functions.items():
        if name.startswith("vm.builtin."):
            builtin += f["seconds_per_run"]
            continue
        # a function the build made after fusion (or a packed library call): no task, no FLOPs
        info = described.get(name, {"task": None, "flops": None, "kind": operator_kind(name)})
        flops = info.get("flops")
        seconds = f["us_per_call"] / 1e6
        op = match_torch_op(info["kind"], f.get("arg_shapes") or [], torch_ops)
        torch_s = op["us_per_call"] / 1e6 if op else None
        xgb_f = _same_function(name, info["kind"], f.get("arg_shapes") or [], xgb or {})
        xgb_s = xgb_f["us_per_call"] / 1e6 if xgb_f else None
        rows.append(
            {
                "function": name,
                "task": info.get("task"),
                "kind": info["kind"],
                "calls": f["calls_per_run"],
                "share": f["seconds_per_run"] / total,
                "gflop": flops / 1e9 if flops else None,
                "one_shot_us": f["us_per_call"],
                "one_shot_gflops": _gflops(flops, seconds),
                "xgb_us": None if xgb_s is None else xgb_s * 1e6,
                "xgb_gflops": _gflops(flops, xgb_s),
                "torch_op": None if op is None else op["op"],
                "torch_us": None if op is None else op["us_per_call"],
                "torch_gflops": _gflops(flops, torch_s),
                "one_shot_over_torch": None if torch_s is None else seconds / torch_s,
                "origin": _origin(info, outcomes),
            }
        )
    rows.sort(key=lambda r: -r["share"])
    return rows, builtin / total


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def format_gap_table(result: dict[str, Any]) -> str:
    """The gap table as text, largest share first."""
    peak = result["peak"]
    lines = [
        f"{result['network']}: per-operator gap, {result['threads']} threads, "
        f"{result.get('scheduling', 'normal')} scheduling, "
        f"{result['created'][:10]}, commit {(result.get('git_commit') or '?')[:10]}",
        f"{'function':44s} {'kind':12s} {'n':>2s} {'share':>6s} {'1shot us':>9s} "
        f"{'1shot GF/s':>10s} {'xgb GF/s':>9s} {'torch GF/s':>10s} {'time/torch':>10s} origin",
    ]
    for row in result["rows"]:

        def cell(value, width, spec=".1f"):
            return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}s}"

        lines.append(
            f"{row['function'][:44]:44s} {row['kind'][:12]:12s} {row['calls']:2d} "
            f"{row['share']:6.1%} {cell(row['one_shot_us'], 9)} {cell(row['one_shot_gflops'], 10)} "
            f"{cell(row['xgb_gflops'], 9)} {cell(row['torch_gflops'], 10)} "
            f"{cell(row['one_shot_over_torch'], 10, '.2f')} {row['origin']}"
        )
    lines.append(
        f"VM builtins (allocation, shape checks): {result['builtin_share']:.1%} of the "
        "instrumented time"
    )
    if peak.get("gflops"):
        lines.append(
            f"CPU fp32 peak {peak['gflops']:.0f} GFLOP/s = {peak['threads']} x "
            f"{peak['ghz']:.2f} GHz x 2 x {peak['fp32_lanes']} x 2 ({PEAK_FORMULA})"
        )
    geo = result.get("geomean_one_shot_over_torch_gflops")
    if geo is not None:
        lines.append(
            f"geomean of One-Shot GFLOP/s / PyTorch GFLOP/s over conv2d/matmul "
            f"functions: {geo:.2f} (1.0 = on par)"
        )
    lines.append(
        "GFLOP/s: the TVM function's FLOPs (TVM's estimate, fused elementwise work "
        "included) over each one's time per call; share: of the instrumented run; time/torch: "
        "One-Shot's time per call over PyTorch's on the same operator (above 1: slower)"
    )
    busy = {k: v for k, v in result.get("foreign_cores", {}).items() if v is not None}
    if busy:
        lines.append(
            "other processes took "
            + ", ".join(f"{v:.2f} cores ({k})" for k, v in busy.items())
            + " on average while timing; above about 0.25 the figures are disturbed"
        )
    return "\n".join(lines)


def run_gap_table(
    network: str,
    *,
    out_dir: Path,
    target=None,
    threads: int | None = None,
    runs: int = 20,
    warmup: int = 3,
    weights="default",
    library="default",
    xgb_database: Path | None = None,
    layout: str | None = None,
    realtime: bool = False,
    progress: bool = True,
    **_ignored,
) -> dict[str, Any]:
    """Build the gap table of ``network``; writes ``<network>-gap.json`` and ``-gap.txt``.

    One-Shot (``weights``, ``library``) is compiled and profiled; with ``xgb_database`` stock
    MetaSchedule from that database too; PyTorch's convolutions and matrix products are timed
    in a torch-only process. ``runs`` instrumented runs per runtime (median per function),
    each runtime's SCHED_FIFO with ``realtime`` and under the machine-wide measurement lock.
    """
    from ms_meta.bench.contenders import write_json
    from ms_meta.bench.e2e import (
        DATABASE_FILE,
        _Progress,
        _target_threads,
        cpu_model_name,
        git_commit,
        run_worker,
        worker_env,
    )
    from ms_meta.networks import model_spec

    model_spec(network)
    if xgb_database is not None and not (Path(xgb_database) / DATABASE_FILE).is_file():
        raise MsMetaError(f"no MetaSchedule tuning database in {xgb_database}")
    target, threads = _target_threads(target, threads)
    out_dir = Path(out_dir)
    work = out_dir / f"{network}-gap-work"
    work.mkdir(parents=True, exist_ok=True)
    say = _Progress(progress)
    if realtime:
        from ms_meta.tuning.measure import check_realtime

        check_realtime()
    timing = ["--realtime"] if realtime else []
    env = worker_env(threads, work)
    common = ["--network", network, "--threads", str(threads)]

    def worker(command, args, stem):
        result = run_worker(
            command,
            common + args,
            result_path=work / f"{stem}.json",
            log_path=work / f"{stem}.log",
            env=env,
            say=say,
        )
        if result.get("error"):
            raise MsMetaError(f"{network}: {command} ({stem}) failed: {result['error']}")
        return result

    say(f"{network}: example inputs")
    reference = work / "reference.npz"
    worker("reference", ["--out", str(reference)], "reference")
    options = {
        "target": target,
        "weights": None if weights is None else str(weights),
        "library": None if library is None else str(library),
        "layout": layout,
        "xgb_database": None if xgb_database is None else str(xgb_database),
        "describe_functions": True,
    }
    contenders = ["one-shot"] + (["xgb"] if xgb_database is not None else [])
    profiles, compiled = {}, {}
    for name in contenders:
        say(f"compiling {name}")
        compiled[name] = worker(
            "compile",
            ["--contender", name, "--work-dir", str(work / name), "--options", json.dumps(options)],
            f"{name}-compile",
        )
        say(f"profiling {name}: {runs} instrumented runs")
        profiles[name] = worker(
            "profile",
            [
                "--contender",
                name,
                "--work-dir",
                str(work / name),
                "--reference",
                str(reference),
                "--runs",
                str(runs),
                "--warmup",
                str(warmup),
                *timing,
            ],
            f"{name}-profile",
        )
    say("timing PyTorch's convolutions and matrix products")
    torch_ops = worker(
        "torch-ops", ["--runs", str(runs), "--warmup", str(warmup), *timing], "torch-ops"
    )
    one_shot = compiled["one-shot"]
    outcomes = {t["task_name"]: t for t in one_shot.get("task_outcomes", [])}
    rows, builtin_share = build_rows(
        profiles["one-shot"],
        one_shot["functions"],
        outcomes,
        torch_ops["ops"],
        profiles.get("xgb", {}).get("functions"),
    )
    ratios = [
        r["torch_gflops"] and r["one_shot_gflops"] / r["torch_gflops"]
        for r in rows
        if r["one_shot_gflops"] and r["torch_gflops"]
    ]
    result = {
        "network": network,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model_name(),
        "llvm_cpu": one_shot.get("llvm_cpu"),
        "target": one_shot.get("target"),
        "git_commit": git_commit(),
        "threads": threads,
        "runs": runs,
        "scheduling": "SCHED_FIFO (realtime)" if realtime else "normal",
        "peak": cpu_peak_gflops(threads),
        "one_shot": {
            k: one_shot.get(k)
            for k in (
                "tasks",
                "tasks_from_library",
                "compile_seconds",
                "weights_used",
                "library_used",
            )
        },
        "xgb_database": None if xgb_database is None else str(xgb_database),
        "foreign_cores": {
            **{name: p.get("foreign_cores") for name, p in profiles.items()},
            "torch": torch_ops.get("foreign_cores"),
        },
        "instrumented_run_ms": {
            n: p["instrumented_run_seconds"] * 1e3 for n, p in profiles.items()
        },
        "builtin_share": builtin_share,
        "geomean_one_shot_over_torch_gflops": _geomean(ratios),
        "rows": rows,
        "torch_ops": torch_ops["ops"],
    }
    write_json(out_dir / f"{network}-gap.json", result)
    (out_dir / f"{network}-gap.txt").write_text(format_gap_table(result) + "\n")
    say(f"wrote {out_dir / f'{network}-gap.json'} and {network}-gap.txt")
    return result
