"""End-to-end benchmark: a whole network compiled by TVM (One-Shot, One-Shot with a small
measured budget, stock MetaSchedule, untuned) against what a user would run instead (PyTorch
eager, torch.compile, ONNX Runtime), on the same CPU and thread count.

Timed in one process, two runtimes disturb each other: TVM's worker threads and OpenMP's keep
spinning after each call and take the cores from the other. Here every contender is compiled in
its own process, and timed in fresh processes that import its runtime only
(:mod:`ms_meta.bench.e2e_worker`), in rounds that alternate the contenders (A B C A B C ...) so
that drift of the machine hits them alike. Each timing process checks its outputs against eager
PyTorch's before timing.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ms_meta.bench.contenders import (
    ANCHORS,
    CONTENDERS,
    DEFAULT_CONTENDERS,
    DEFAULT_VERIFY,
    missing_packages,
    write_json,
)
from ms_meta.bench.e2e_report import (
    fastest_anchor,
    format_table,
    plot_result,
    round_ratios,
    summarize,
)
from ms_meta.bench.e2e_worker import PROGRESS_PREFIX, THREAD_ENV
from ms_meta.bench.extras import PLOT_MODULES, skipped_note
from ms_meta.errors import MsMetaError, TargetError

__all__ = [
    "NUMERICS_RELATIVE_TOLERANCE",
    "NumericsError",
    "format_table",
    "parse_contenders",
    "run_model_benchmark",
]

# Output differences up to this fraction of the largest reference magnitude are rounding
# (reordered fp32 sums); a wrong schedule or dropped op is off by far more.
NUMERICS_RELATIVE_TOLERANCE = 1e-3
DEFAULT_RUNS = 50
DEFAULT_WARMUP = 5
DEFAULT_ROUNDS = 5
DEFAULT_XGB_TRIALS_PER_TASK = 64
DATABASE_FILE = "database_tuning_record.json"


class NumericsError(MsMetaError):
    """A contender whose outputs differ from eager PyTorch's beyond rounding; ``result`` is the
    benchmark's result (written before this is raised)."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


class _Progress:
    """Progress lines on stderr with the elapsed time (a full run takes many minutes)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)


def parse_contenders(value: str | Sequence[str] | None, *, xgb_database=None) -> tuple[str, ...]:
    """Contender names from a comma-separated string or a sequence; None gives the default set
    (plus ``xgb`` when a tuning database is given)."""
    if value is None:
        names = list(DEFAULT_CONTENDERS)
        if xgb_database is not None:
            names.insert(names.index("torch"), "xgb")
        return tuple(names)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    names = [v for v in value if v]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or not names:
        raise MsMetaError(
            f"unknown contender(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(CONTENDERS)}"
        )
    return tuple(dict.fromkeys(names))


def _target_threads(target: str | dict | None, threads: int | None) -> tuple[Any, int]:
    """The target as a JSON dict (None: the host's) and the thread count every contender
    gets: ``threads``, else the target's ``num-cores``, else the physical cores."""
    if isinstance(target, str) and target not in ("", "host"):
        try:
            target = json.loads(target)
        except json.JSONDecodeError as err:
            raise TargetError(
                f"--target must be a JSON target dict, got {target!r} ({err.msg})"
            ) from None
    if target in ("", "host"):
        target = None
    if target is not None and not isinstance(target, dict):
        raise TargetError(f"a target must be a JSON object, got {target!r}")
    if threads is None:
        cores = (target or {}).get("num-cores")
        if isinstance(cores, int) and cores > 0:
            threads = cores
        else:
            import psutil

            threads = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    if threads < 1:
        raise MsMetaError(f"threads must be at least 1, got {threads}")
    return target, threads


def cpu_model_name(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU's marketing name (``model name`` in /proc/cpuinfo), or None."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return None


def git_commit() -> str | None:
    """The package checkout's commit (``+dirty`` with uncommitted changes), or None."""
    root = Path(__file__).resolve().parents[2]
    try:

        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()  # fmt: skip

        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


def worker_env(threads: int, work_dir: Path) -> dict[str, str]:
    """The environment of every worker: the same thread count for every runtime, set before
    Python starts; torch.compile's cache in the benchmark's own directory; no record store
    (``MS_META_STORE=none``), so that One-Shot and MetaCostModel work from the shipped
    library and weights alone, whatever this machine measured before, and record nothing."""
    env = dict(os.environ)
    for key in THREAD_ENV:
        env[key] = str(threads)
    env["TORCHINDUCTOR_CACHE_DIR"] = str(work_dir / "inductor-cache")
    env["MS_META_STORE"] = "none"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_worker(
    command: str,
    args: Sequence[str],
    *,
    result_path: Path,
    log_path: Path,
    env: dict[str, str],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Run ``python -m ms_meta.bench.e2e_worker COMMAND ARGS`` and return its JSON result.

    The worker's output goes to ``log_path``; its progress lines are also passed to ``say``.
    A worker that dies without a result gives ``{"error": ...}`` naming the log.
    """
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "ms_meta.bench.e2e_worker", command, *args,
           "--result", str(result_path)]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, env=env)
        assert process.stderr is not None
        for line in process.stderr:
            log.write(line)
            if line.startswith(PROGRESS_PREFIX):
                say(line[len(PROGRESS_PREFIX) :].rstrip())
        code = process.wait()
    if result_path.is_file():
        result = json.loads(result_path.read_text())
    else:
        result = {"error": f"the {command} process exited with status {code} and no result"}
    if result.get("error"):
        result["error"] = f"{result['error']} (log: {log_path})"
    return result


def run_model_benchmark(
    network: str,
    *,
    out_dir: Path,
    contenders: str | Sequence[str] | None = None,
    target: str | dict | None = None,
    threads: int | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    rounds: int = DEFAULT_ROUNDS,
    weights: str | None = "default",
    library: str | None = "default",
    verify: int = DEFAULT_VERIFY,
    xgb_trials_per_task: int = DEFAULT_XGB_TRIALS_PER_TASK,
    xgb_database: Path | None = None,
    layout: str | None = None,
    rtol: float = NUMERICS_RELATIVE_TOLERANCE,
    reruns: int = 2,
    realtime: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Compile ``network`` every way in ``contenders``, check the outputs and time them.

    Every step runs in its own process (:mod:`ms_meta.bench.e2e_worker`): the eager-PyTorch
    reference, one compile per contender, and ``rounds`` rounds of one timing process per
    contender, in the same order each round. A timing process runs ``warmup`` calls (the first
    one checks the outputs; torch.compile's compiles there), then ``runs`` timed calls.

    Parameters
    ----------
    network
        A key of :data:`ms_meta.networks.MODELS`.
    out_dir
        Receives ``<network>.json``, ``<network>.txt`` (the table), ``<network>.png`` and
        ``<network>-work/`` (compiled models, logs, raw results).
    contenders
        Names from :data:`ms_meta.bench.contenders.CONTENDERS` (comma-separated or a sequence);
        default: all but ``untuned`` and ``xgb``, with ``xgb`` when ``xgb_database`` is given.
    target
        A JSON target dict (string or dict) for the TVM contenders, or None for the host's.
    threads
        Threads of every contender (default: the target's ``num-cores``, else the physical
        cores). TVM: ``TVM_NUM_THREADS`` and the target's ``num-cores``; torch:
        ``torch.set_num_threads`` and ``OMP_NUM_THREADS``; ONNX Runtime:
        ``intra_op_num_threads`` (``inter_op_num_threads`` 1).
    weights, library
        One-Shot's cost-model weights and schedule library (``"default"``: the shipped ones;
        a path; None: untrained / search every task).
    verify
        ``one-shot-verify``: measured candidates per task (the K best-ranked).
    xgb_trials_per_task, xgb_database
        Stock MetaSchedule's trial budget, or a tuning database of an earlier run to compile
        from without tuning again.
    layout
        One-Shot's convolution layout: ``"blocked"`` (NCHW16c, :mod:`ms_meta.one_shot.blocked`),
        ``"plain"`` (as written), or None for the package's default. Stock MetaSchedule and
        ``untuned`` always compile the plain layout, as a user of TVM would.
    rtol
        Numerics tolerance, relative to the largest reference output magnitude (at least 1).
    reruns
        A timing process during which other processes took more than a quarter of a core
        (or the hypervisor more than half a core) is run again up to this many times; the
        least disturbed one counts.
    realtime
        Run every timing process SCHED_FIFO (:func:`ms_meta.tuning.measure.enter_realtime`):
        other processes then cannot preempt a timed run, which on a busy 2-core machine moves
        a contender's median by tens of percent. Checked before anything is compiled.

    Returns
    -------
    dict
        What ``<network>.json`` holds: the machine, versions, threads, and per contender its
        compile figures, ``latency`` (over all samples), ``samples_ms`` (every timed run),
        ``rounds`` (per timing process), ``ratio_to_fastest_anchor`` and numerics;
        ``skipped``/``failed`` with the reason for a contender that could not run.

    Raises
    ------
    NumericsError
        When a contender's outputs differ from PyTorch's (after every file is written).
    """
    from ms_meta.networks import model_spec

    spec = model_spec(network)
    names = parse_contenders(contenders, xgb_database=xgb_database)
    if min(runs, warmup, rounds, xgb_trials_per_task) < 1 or verify < 1 or reruns < 0:
        raise MsMetaError(
            "runs, warmup, rounds, verify and xgb_trials_per_task must be >= 1, reruns >= 0"
        )
    if (
        xgb_database is not None
        and not (Path(xgb_database) / "database_tuning_record.json").is_file()
    ):
        raise MsMetaError(f"no MetaSchedule tuning database in {xgb_database}")
    if realtime:
        from ms_meta.tuning.measure import check_realtime

        check_realtime()
    target, threads = _target_threads(target, threads)
    out_dir = Path(out_dir)
    work = out_dir / f"{network}-work"
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "inductor-cache", ignore_errors=True)  # torch.compile starts cold
    say = _Progress(progress)
    env = worker_env(threads, work)

    result: dict[str, Any] = {
        "network": network,
        "description": spec.description,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_model": cpu_model_name(), "logical_cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "threads": threads,
        "scheduling": "SCHED_FIFO (realtime)" if realtime else "normal",
        "threading": (
            f"TVM: TVM_NUM_THREADS={threads} and target num-cores {threads}; torch: "
            f"torch.set_num_threads({threads}), OMP_NUM_THREADS={threads}; ONNX Runtime: "
            f"intra_op_num_threads={threads}, inter_op_num_threads=1"
        ),
        "runs": runs,
        "warmup": warmup,
        "rounds": rounds,
        "reruns": reruns,
        "order": list(names),
        "numerics_rtol": rtol,
        "options": {
            "target": target,
            "weights": None if weights is None else str(weights),
            "library": None if library is None else str(library),
            "layout": layout,
            "verify": verify,
            # one-shot-verify's measurements too, as the timing processes
            "realtime_measurement": realtime,
            "xgb_trials_per_task": xgb_trials_per_task,
            "xgb_database": None if xgb_database is None else str(xgb_database),
        },
        "versions": {"python": sys.version.split()[0]},
        "contenders": {},
    }

    say(f"{network}: eager PyTorch reference outputs")
    reference = work / "reference.npz"
    ref = run_worker("reference", ["--network", network, "--threads", str(threads),
                                   "--out", str(reference)],
                     result_path=work / "reference.json", log_path=work / "reference.log",
                     env=env, say=say)  # fmt: skip
    if ref.get("error"):
        raise MsMetaError(f"{network}: the eager PyTorch reference failed: {ref['error']}")
    result["versions"]["torch"] = ref.get("torch_version")
    result["reference"] = {"inputs": ref.get("inputs"), "outputs": ref.get("outputs")}

    options = result["options"]  # what every compile process is told, paths as strings
    ready: list[str] = []
    for index, name in enumerate(names, 1):
        contender = CONTENDERS[name]
        entry: dict[str, Any] = {"runtime": contender.runtime, "anchor": contender.anchor,
                                 "description": contender.description}  # fmt: skip
        result["contenders"][name] = entry
        if why := missing_packages(name):
            say(f"{name}: skipped, {why}")
            entry["skipped"] = why
            continue
        say(f"compiling {name} ({index}/{len(names)})")
        cdir = work / name
        compiled = run_worker(
            "compile",
            ["--network", network, "--threads", str(threads), "--contender", name,
             "--work-dir", str(cdir), "--options", json.dumps(options)],
            result_path=cdir / "compile.json", log_path=cdir / "compile.log", env=env, say=say,
        )  # fmt: skip
        if compiled.get("error"):
            say(f"{name}: compile failed: {compiled['error']}")
            entry["failed"] = f"compile: {compiled['error']}"
            continue
        for key in ("command", "contender", "network", "threads", "pid", "python"):
            compiled.pop(key, None)
        entry.update(compiled)
        for key, version in (("tvm_version", "tvm"), ("llvm_cpu", None)):
            if key in compiled:
                if version:
                    result["versions"][version] = compiled[key]
                else:
                    result["machine"]["llvm_cpu"] = compiled[key]
        if "target" in compiled:
            result["target"] = compiled["target"]
        if compiled.get("compile_seconds") is not None:
            say(f"{name}: compiled in {compiled['compile_seconds']:.1f} s")
        ready.append(name)

    samples: dict[str, list[float]] = {name: [] for name in ready}
    round_medians: dict[str, list[float | None]] = {name: [] for name in ready}
    for r in range(rounds):
        for index, name in enumerate(ready, 1):
            entry = result["contenders"][name]
            if entry.get("failed") or entry.get("numerics_ok") is False:
                round_medians[name].append(None)
                continue
            say(f"round {r + 1}/{rounds}: timing {name} ({index}/{len(ready)}), "
                f"{warmup} warm-up + {runs} runs")  # fmt: skip
            timed = _time_guarded(
                ["--network", network, "--threads", str(threads), "--contender", name,
                 "--work-dir", str(work / name), "--reference", str(reference),
                 "--warmup", str(warmup), "--runs", str(runs), "--rtol", str(rtol),
                 *(["--realtime"] if realtime else [])],
                work / name, r + 1, reruns, env, say,
            )  # fmt: skip
            _record_round(name, timed, r + 1, samples, round_medians, result, say)

    for name in ready:
        entry = result["contenders"][name]
        entry["latency"] = summarize(samples[name])
        entry["samples_ms"] = [round(s * 1e3, 6) for s in samples[name]]
    anchor = fastest_anchor(result["contenders"], ANCHORS)
    if anchor is None:
        timed = {n: e["latency"]["median_ms"] for n, e in result["contenders"].items()
                 if e.get("numerics_ok") and e.get("latency", {}).get("runs")}  # fmt: skip
        anchor = min(timed, key=timed.get) if timed else None
    result["fastest_anchor"] = anchor
    if anchor is not None:
        for name, ratio in round_ratios(round_medians, anchor).items():
            result["contenders"][name]["ratio_to_fastest_anchor"] = ratio
    failures = [n for n, e in result["contenders"].items() if e.get("numerics_ok") is False]
    result["numerics_failures"] = failures

    write_json(out_dir / f"{network}.json", result)
    table = format_table(result)
    (out_dir / f"{network}.txt").write_text(table + "\n")
    png = plot_result(result, out_dir / f"{network}.png")
    note = skipped_note("chart", PLOT_MODULES)
    say(f"wrote {out_dir / f'{network}.json'}, {network}.txt"
        + (f", {png.name}" if png else f" ({note or 'chart skipped: nothing timed'})"))  # fmt: skip
    if failures:
        raise NumericsError(
            f"{network}: outputs of {', '.join(failures)} differ from eager PyTorch beyond the "
            f"tolerance (details in {out_dir / f'{network}.json'})",
            result,
        )
    return result


def _time_guarded(args, cdir: Path, round_number: int, reruns: int, env, say) -> dict[str, Any]:
    """One timing process, run again (up to ``reruns`` times, after a pause) while other
    processes took more of the CPU than :class:`~ms_meta.tuning.contention.ContentionGuard`
    allows; the least disturbed run is kept, with the count of re-runs."""
    from ms_meta.tuning.contention import ContentionGuard, ForeignLoad

    guard = ContentionGuard(max_reruns=reruns)
    best, best_excess = None, float("inf")
    for attempt in range(reruns + 1):
        if attempt:
            time.sleep(guard.wait_seconds)
        timed = run_worker("time", args, result_path=cdir / f"time-{round_number}.json",
                           log_path=cdir / "time.log", env=env, say=say)  # fmt: skip
        if timed.get("error") or timed.get("foreign_cores") is None:
            return timed
        load = ForeignLoad(timed["foreign_cores"], timed.get("steal_cores") or 0.0, 0.0)
        excess = guard.excess(load)
        if excess < best_excess:
            best, best_excess = timed, excess
        if excess == 0.0 or not timed.get("numerics_ok"):
            break
        if attempt < reruns:
            say(f"other processes took {load.other_processes:.2f} cores (steal "
                f"{load.steal:.2f}) while timing; timing again")  # fmt: skip
    best["reruns"] = attempt
    return best


def _record_round(name, timed, round_number, samples, round_medians, result, say) -> None:
    """Fold one timing process's result into contender ``name``'s entry."""
    entry = result["contenders"][name]
    rounds = entry.setdefault("rounds", [])
    if timed.get("error"):
        say(f"{name}: timing failed: {timed['error']}")
        entry["failed"] = f"timing: {timed['error']}"
        round_medians[name].append(None)
        return
    summary = summarize(timed["samples_s"])
    rounds.append({
        "round": round_number,
        "pid": timed.get("pid"),
        "reruns": timed.get("reruns", 0),
        "median_ms": summary["median_ms"],
        "min_ms": summary["min_ms"],
        "first_call_seconds": timed.get("first_call_seconds"),
        "load_seconds": timed.get("load_seconds"),
        "foreign_cores": timed.get("foreign_cores"),
        "steal_cores": timed.get("steal_cores"),
        "max_abs_diff": timed.get("max_abs_diff"),
    })  # fmt: skip
    previous = entry.get("max_abs_diff")
    diff = timed.get("max_abs_diff")
    entry["max_abs_diff"] = diff if previous is None else max(previous, diff)
    entry["numerics_tolerance"] = timed.get("tolerance")
    entry["numerics_ok"] = bool(timed.get("numerics_ok")) and entry.get("numerics_ok", True)
    for key in ("torch_version", "onnxruntime_version", "tvm_version"):
        if key in timed:
            result["versions"][key.removesuffix("_version")] = timed[key]
    for key in ("torch_threads", "intra_op_num_threads", "thread_env"):
        if key in timed:
            entry[key] = timed[key]
    samples[name].extend(timed["samples_s"])
    round_medians[name].append(summary["median_ms"])
    say(f"{name}: median {summary['median_ms']:.2f} ms (round {round_number})")
    if not entry["numerics_ok"]:
        say(f"{name}: WRONG OUTPUT, max abs diff {diff:.3g} > {timed.get('tolerance'):.3g}; "
            "not timed in later rounds")  # fmt: skip
