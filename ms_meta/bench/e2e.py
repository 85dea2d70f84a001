"""End-to-end benchmark: one model compiled with One-Shot tuning, stock XGB tuning and no
tuning, against eager PyTorch, on the same CPU and thread count."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tvm
from tvm import relax
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.builder import PyBuilder

from ms_meta.errors import MsMetaError
from ms_meta.networks import bind_for_inference, fuse_for_tuning, import_model, model_spec
from ms_meta.run_secs import is_failed
from ms_meta.tuning.builder import make_builder
from ms_meta.tuning.intrin import import_tensor_intrinsics
from ms_meta.tuning.measure import make_local_runner
from ms_meta.tuning.measured_tuning import meta_schedule_logging_compat
from ms_meta.tuning.target import host_cpu, parse_target, physical_cores, target_summary

logger = logging.getLogger(__name__)

MODES = ("one-shot", "xgb", "untuned", "torch")
PREDICTED_NOTE = "predicted, no measurement"
# Output differences up to this fraction of the largest reference magnitude are rounding
# (reordered fp32 sums); a wrong schedule or dropped op is off by far more.
NUMERICS_RELATIVE_TOLERANCE = 1e-3
WARMUP_RUNS = 3
# Trials per search iteration of the xgb run: small enough that every task gets trials even
# at 8 per task, so that the gradient task scheduler has a choice from 16 per task on.
XGB_TRIALS_PER_ITER = 8
_MS_LOGGER = "tvm.s_tir.meta_schedule"


class NumericsError(MsMetaError):
    """A compiled model whose outputs differ from eager PyTorch beyond rounding."""


@dataclass
class _Compiled:
    """One way of running the model: how long it took to get there and a callable to run it."""

    mode: str
    run: Callable[[], Any]
    info: dict[str, Any] = field(default_factory=dict)


class _Reporter:
    """Progress lines on stderr (the benchmark runs for many minutes, often under nohup)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        logger.info(message)
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)


@derived_object
class _ProgressBuilder(PyBuilder):
    """Delegates to a builder and reports each batch: MetaSchedule's first round-robin pass
    over the tasks commits nothing, so measure callbacks stay silent for most of a short run."""

    def __init__(self, inner, total: int, say: Callable[[str], None]) -> None:
        super().__init__()
        self.inner, self.total, self.say = inner, total, say
        self.built = 0
        self.start = time.perf_counter()

    def build(self, build_inputs):
        if not build_inputs:  # a task whose search found nothing new
            return self.inner.build(build_inputs)
        self.built += len(build_inputs)
        self.say(
            f"xgb: building and measuring candidates {self.built}/{self.total} "
            f"({time.perf_counter() - self.start:.0f} s)"
        )
        return self.inner.build(build_inputs)


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """Run TVM's thread pool and torch's intra-op pool with ``count`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    # mode 1 ("big cores") is the pool's own default; only the thread count changes
    config_threadpool = tvm.get_global_func("runtime.config_threadpool")
    config_threadpool(1, count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        config_threadpool(1, 0)  # 0: the default, one thread per core


def _quiet_meta_schedule() -> None:
    # tune_tasks derives its console level from this logger's level and leaves it at DEBUG;
    # its tables still go to <work_dir>/logs.
    logging.getLogger(_MS_LOGGER).setLevel(logging.WARNING)


def _as_numpy(outputs) -> list[np.ndarray]:
    """Flatten torch / TVM outputs (a tensor or nested tuples of them) to numpy arrays."""
    if isinstance(outputs, torch.Tensor):
        return [outputs.detach().numpy()]
    if isinstance(outputs, tvm.runtime.Tensor):
        return [outputs.numpy()]
    if isinstance(outputs, (list, tuple)) or hasattr(outputs, "__len__"):
        return [array for item in outputs for array in _as_numpy(item)]
    raise TypeError(f"unexpected model output {type(outputs).__name__}")


def _max_abs_diff(outputs: list[np.ndarray], reference: list[np.ndarray]) -> float:
    if len(outputs) != len(reference) or any(
        o.shape != r.shape for o, r in zip(outputs, reference, strict=True)
    ):
        return float("inf")
    return max(float(np.max(np.abs(o - r))) for o, r in zip(outputs, reference, strict=True))


def _vm_runner(executable, example_inputs: Sequence[torch.Tensor]) -> Callable[[], Any]:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    args = [tvm.runtime.tensor(x.numpy(), tvm.cpu()) for x in example_inputs]
    main = vm["main"]
    return lambda: main(*args)


def _compile_untuned(mod, target, say) -> tuple[Any, dict[str, Any]]:
    say("untuned: compiling with the default Relax pipeline (no tuning database)")
    start = time.perf_counter()
    executable = tvm.compile(mod, target=target)
    seconds = time.perf_counter() - start
    return executable, {"compile_seconds": seconds, "build_seconds": seconds}


def _compile_xgb(mod, target, work_dir: Path, trials_per_task: int, say):
    """Stock MetaSchedule: ``tune_relax`` with XGBModel, then ``compile_relax``."""
    import_tensor_intrinsics(target.kind.name)
    start = time.perf_counter()
    fused = fuse_for_tuning(mod)
    # The task count sets the trial budget; tune_relax extracts again (its cost is counted).
    tasks = ms.relax_integration.extract_tasks(fused, target)
    total = trials_per_task * len(tasks)
    say(f"xgb: tuning {len(tasks)} tasks, {total} trials ({trials_per_task} per task), {work_dir}")
    _quiet_meta_schedule()
    with meta_schedule_logging_compat():
        database = ms.relax_integration.tune_relax(
            mod=fused,
            params=None,
            target=target,
            work_dir=str(work_dir),
            max_trials_global=total,
            num_trials_per_iter=min(XGB_TRIALS_PER_ITER, trials_per_task),
            builder=_ProgressBuilder(make_builder(), total, say),
            runner=make_local_runner(),
            cost_model=ms.cost_model.XGBModel(),
            seed=0,
        )
    tuned = time.perf_counter()
    say(f"xgb: tuned in {tuned - start:.0f} s; compiling with the database")
    executable = ms.relax_integration.compile_relax(database, mod, target, params=None)
    done = time.perf_counter()
    records = database.get_all_tuning_records()
    valid = sum(1 for r in records if not is_failed(r.run_secs))
    return executable, {
        "compile_seconds": done - start,
        "tuning_seconds": tuned - start,
        "build_seconds": done - tuned,
        "tasks": len(tasks),
        "trials": len(records),
        "valid_trials": valid,
        "work_dir": str(work_dir),
    }


def _compile_from_database(mod, target, work_dir: Path, say):
    """``compile_relax`` with the tuning database an earlier ``xgb`` run left in ``work_dir``."""
    if not (work_dir / "database_tuning_record.json").is_file():
        raise MsMetaError(f"no MetaSchedule tuning database in {work_dir}")
    say(f"xgb: re-using the tuning database in {work_dir} (no tuning in this run)")
    start = time.perf_counter()
    database = ms.database.JSONDatabase(work_dir=str(work_dir))
    executable = ms.relax_integration.compile_relax(database, mod, target, params=None)
    records = database.get_all_tuning_records()
    return executable, {
        "compile_seconds": None,
        "tuning_seconds": None,
        "build_seconds": time.perf_counter() - start,
        "trials": len(records),
        "valid_trials": sum(1 for r in records if not is_failed(r.run_secs)),
        "reused_database": str(work_dir),
        "work_dir": str(work_dir),
    }


def _compile_one_shot(mod, target, work_dir: Path, weights, library, say):
    """ms-meta's One-Shot tuning: the cost model's predictions instead of measurements.

    ``run_relax`` is ``ms_meta.one_shot.tune_relax`` returning per-task outcomes as well as
    the database; like MetaSchedule's ``compile_relax`` it takes the unfused module.
    """
    from ms_meta.one_shot import run_relax

    say(f"one-shot: predicted latencies only (weights={weights}, library={library}) in {work_dir}")
    _quiet_meta_schedule()
    start = time.perf_counter()
    with meta_schedule_logging_compat():
        outcome = run_relax(mod, None, target, work_dir, weights=weights, library=library)
    searched = time.perf_counter()
    tasks = outcome.tasks
    from_library = outcome.tasks_from_library
    say(
        f"one-shot: {len(tasks)} tasks ({from_library} from the schedule library, the others "
        f"searched) in {searched - start:.0f} s; compiling"
    )
    executable = ms.relax_integration.compile_relax(outcome.database, mod, target, params=None)
    done = time.perf_counter()
    return executable, {
        "compile_seconds": done - start,
        "search_seconds": searched - start,
        "build_seconds": done - searched,
        "model_startup_seconds": outcome.startup_seconds,
        "tasks": len(tasks),
        "tasks_with_schedule": sum(t.status in ("predicted", "measured") for t in tasks),
        "pretrained": outcome.pretrained,
        "weights_used": outcome.weights,
        "library_used": outcome.library,
        "tasks_from_library": from_library,
        "model_warning": outcome.model_warning,
        "work_dir": str(work_dir),
        "note": PREDICTED_NOTE,
    }


def _one_shot_missing() -> str | None:
    """Why One-Shot tuning cannot run in this build, or None when it can."""
    try:
        from ms_meta.one_shot import run_relax  # noqa: F401
    except ImportError as err:
        return f"ms_meta.one_shot is not available ({err})"
    return None


def _latency_summary(samples_s: list[float]) -> dict[str, float]:
    ms_values = np.asarray(samples_s) * 1e3
    q1, median, q3 = np.percentile(ms_values, [25, 50, 75])
    return {
        "median_ms": float(median),
        "q1_ms": float(q1),
        "q3_ms": float(q3),
        "iqr_ms": float(q3 - q1),
        "min_ms": float(ms_values.min()),
        "mean_ms": float(ms_values.mean()),
        "runs": len(samples_s),
    }


def measure_latencies(
    runners: dict[str, Callable[[], Any]], repeat: int, say=lambda _m: None
) -> dict[str, list[float]]:
    """Seconds per call of each runner, measured in interleaved rounds.

    Each round calls every runner once, starting with a different one each round, so that
    load from other processes and thermal drift hit all runners alike. TVM calls return once
    the result is computed (the CPU runtime is synchronous), like eager torch.
    """
    names = list(runners)
    for name in names:
        for _ in range(WARMUP_RUNS):
            runners[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    last_report = time.perf_counter()
    for round_index in range(repeat):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runners[name]()
            samples[name].append(time.perf_counter() - start)
        if time.perf_counter() - last_report >= 20.0:
            last_report = time.perf_counter()
            say(f"latency: round {round_index + 1}/{repeat}")
    return samples


def format_table(result: dict[str, Any]) -> str:
    """The benchmark result as a plain-text table (one row per mode)."""
    header = (
        f"{'mode':10s} {'compile s':>10s} {'search/tune s':>14s} {'median ms':>10s} "
        f"{'IQR ms':>8s} {'vs torch':>9s} {'max abs diff':>13s}"
    )
    lines = [f"{result['model']} on {result['cpu']}, {result['threads']} threads", header]
    torch_ms = result["modes"].get("torch", {}).get("latency", {}).get("median_ms")
    for mode, entry in result["modes"].items():
        if "skipped" in entry:
            lines.append(f"{mode:10s} skipped: {entry['skipped']}")
            continue
        compile_s = entry.get("compile_seconds")
        search_s = entry.get("search_seconds", entry.get("tuning_seconds"))
        latency = entry.get("latency", {})
        median = latency.get("median_ms")
        speedup = f"{torch_ms / median:8.2f}x" if torch_ms and median else f"{'-':>9s}"
        diff = entry.get("max_abs_diff")
        lines.append(
            f"{mode:10s} {_cell(compile_s, 10, '.1f')} {_cell(search_s, 14, '.1f')} "
            f"{_cell(median, 10, '.2f')} {_cell(latency.get('iqr_ms'), 8, '.2f')} {speedup} "
            f"{_cell(diff, 13, '.2e')}"
        )
    one_shot = result["modes"].get("one-shot", {})
    if "skipped" not in one_shot and one_shot:
        trained = "pre-trained" if one_shot.get("pretrained") else "UNTRAINED (no weights)"
        lines.append(f"one-shot: {PREDICTED_NOTE} during its search; cost model {trained}")
        if one_shot.get("library_used"):
            lines.append(f"one-shot: {one_shot.get('tasks_from_library')} of "
                         f"{one_shot.get('tasks')} tasks from the schedule library "
                         f"{one_shot['library_used']}")  # fmt: skip
    return "\n".join(lines)


def _cell(value, width: int, spec: str) -> str:
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}s}"


def plot_result(result: dict[str, Any], path: Path) -> None:
    """Two bar panels: compile time (tuning included) and inference latency (median, IQR)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    modes = [m for m, e in result["modes"].items() if "skipped" not in e]
    labels = [
        f"{m}\n({PREDICTED_NOTE})" if m == "one-shot"
        else f"{m}\n(tuned in an earlier run; build only)"
        if result["modes"][m].get("reused_database") else m
        for m in modes
    ]  # fmt: skip
    colors = {"one-shot": "tab:green", "xgb": "tab:blue", "untuned": "tab:gray",
              "torch": "tab:orange"}  # fmt: skip
    fig, (ax_compile, ax_latency) = plt.subplots(1, 2, figsize=(12, 4.8))
    x = np.arange(len(modes))

    entries = [result["modes"][m] for m in modes]
    search = [e.get("search_seconds", e.get("tuning_seconds")) or 0.0 for e in entries]
    build = [e.get("build_seconds") or 0.0 for e in entries]
    ax_compile.bar(x, search, color=[colors.get(m, "tab:purple") for m in modes],
                   label="search / tuning")  # fmt: skip
    ax_compile.bar(x, build, bottom=search, color="black", alpha=0.35, label="build")
    for i, m in enumerate(modes):
        if m == "torch":
            ax_compile.text(i, 0.02, "eager,\nno compile", ha="center", va="bottom", fontsize=8,
                            transform=ax_compile.get_xaxis_transform())  # fmt: skip
        else:
            total = search[i] + build[i]
            ax_compile.text(i, total, f"{total:.1f} s", ha="center", va="bottom", fontsize=8)
    positive = [s + b for s, b in zip(search, build, strict=True) if s + b > 0]
    if positive and max(positive) / min(positive) > 20:
        ax_compile.set_yscale("log")
    ax_compile.set_ylabel("compile time, tuning included (s)")
    ax_compile.set_title("compile time")
    ax_compile.legend(fontsize=8)

    latency = [result["modes"][m]["latency"] for m in modes]
    medians = [lat["median_ms"] for lat in latency]
    lower = [lat["median_ms"] - lat["q1_ms"] for lat in latency]
    upper = [lat["q3_ms"] - lat["median_ms"] for lat in latency]
    ax_latency.bar(x, medians, yerr=[lower, upper], capsize=4,
                   color=[colors.get(m, "tab:purple") for m in modes])  # fmt: skip
    for i, (med, lat) in enumerate(zip(medians, latency, strict=True)):
        # above the upper IQR bar, so that the bar does not cross the figure
        ax_latency.text(i, lat["q3_ms"], f"{med:.2f} ms", ha="center", va="bottom", fontsize=8)
    if medians and max(medians) / min(medians) > 20:
        ax_latency.set_yscale("log")
    ax_latency.set_ylabel("inference latency (ms, median, IQR bars)")
    ax_latency.set_title(f"latency, {result['repeat']} interleaved runs")

    for axis in (ax_compile, ax_latency):
        axis.set_xticks(x)
        axis.set_xticklabels(labels, fontsize=8)
    fig.suptitle(f"{result['model']}: {result['cpu']}, {result['threads']} threads "
                 f"({result['created'][:10]})")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise MsMetaError(
            f"unknown benchmark mode(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(MODES)}"
        )
    return tuple(dict.fromkeys(modes))


def _thread_count(target) -> int:
    cores = int(target.attrs["num-cores"]) if "num-cores" in target.attrs else 0
    return cores if cores > 0 else physical_cores()


def run_model_benchmark(
    name: str,
    *,
    target,
    out_dir: Path,
    xgb_trials_per_task: int = 16,
    modes=("one-shot", "xgb", "untuned", "torch"),
    weights="default",
    repeat: int = 50,
    progress: bool = True,
    xgb_database_dir: Path | None = None,
    library="default",
) -> dict:
    """Compile model ``name`` several ways, check numerics against PyTorch, time inference.

    Modes: ``one-shot`` (ms-meta's One-Shot tuning, predicted latencies only, then
    ``compile_relax``), ``xgb`` (stock ``tune_relax`` with XGBModel and
    ``xgb_trials_per_task`` measured trials per task), ``untuned`` (the default Relax
    pipeline) and ``torch`` (eager, ``torch.inference_mode``). TVM and torch use the same
    thread count, the target's ``num-cores``. All latencies are measured at the end, in
    ``repeat`` interleaved rounds in this process.

    Parameters
    ----------
    name
        A key of :data:`ms_meta.networks.MODELS`.
    target
        A :class:`~tvm.target.Target`, a JSON target dict (string or dict) or None (the host).
    out_dir
        Receives ``<name>.json``, ``<name>.png`` and the tuning work directories.
    weights
        MetaCostModel weights for One-Shot tuning (``"default"``, a path or None).
    library
        One-Shot's schedule library (``"default"``: the shipped one, a path, or None to search
        every task); see :func:`ms_meta.one_shot.tune_tir`.
    progress
        Print progress lines on stderr and the result table on stdout.
    xgb_database_dir
        Compile the ``xgb`` mode from the tuning database an earlier run left in this directory
        instead of tuning again (hours here); its tuning time is then not re-measured and is
        reported as ``None``, with the directory under ``reused_database``.

    Returns
    -------
    dict
        What ``<name>.json`` holds: per mode ``compile_seconds`` (tuning included; also
        ``search_seconds``/``tuning_seconds`` and ``build_seconds``), ``latency``
        (``median_ms``, ``q1_ms``, ``q3_ms``, ``iqr_ms``, ...), ``max_abs_diff`` against
        torch; a mode that could not run has ``skipped`` with the reason.

    Raises
    ------
    NumericsError
        When a compiled model's outputs differ from PyTorch's (after writing the JSON).
    """
    spec = model_spec(name)
    modes = _check_modes(modes)
    if xgb_trials_per_task < 1 or repeat < 1:
        raise MsMetaError("xgb_trials_per_task and repeat must be at least 1")
    target = parse_target(target)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = _thread_count(target)
    say = _Reporter(progress)

    result: dict[str, Any] = {
        "model": name,
        "description": spec.description,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": host_cpu(),
        "target": target_summary(target),
        "threads": threads,
        "repeat": repeat,
        "xgb_trials_per_task": xgb_trials_per_task,
        "weights": None if weights is None else str(weights),
        "modes": {},
    }
    json_path, png_path = out_dir / f"{name}.json", out_dir / f"{name}.png"

    with _threads(threads):
        say(f"{name}: exporting from PyTorch and importing into Relax")
        start = time.perf_counter()
        mod, params, example_inputs = import_model(name)
        model = spec.build()
        mod = bind_for_inference(mod, params)
        result["import_seconds"] = time.perf_counter() - start
        with torch.inference_mode():
            reference = _as_numpy(model(*example_inputs))
        scale = max(1.0, max(float(np.max(np.abs(r))) for r in reference))
        tolerance = NUMERICS_RELATIVE_TOLERANCE * scale
        result["numerics_tolerance"] = tolerance

        compiled: list[_Compiled] = []
        for mode in modes:
            if mode == "torch":
                eager = {"compile_seconds": 0.0, "max_abs_diff": 0.0}
                compiled.append(_Compiled("torch", lambda: model(*example_inputs), eager))
                continue
            if mode == "one-shot" and (why := _one_shot_missing()):
                say(f"one-shot: skipped, {why}")
                result["modes"][mode] = {"skipped": why}
                continue
            if mode == "untuned":
                executable, info = _compile_untuned(mod, target, say)
            elif mode == "xgb" and xgb_database_dir is not None:
                executable, info = _compile_from_database(mod, target, Path(xgb_database_dir), say)
            elif mode == "xgb":
                work = Path(tempfile.mkdtemp(prefix=f"{name}-xgb-", dir=out_dir))
                executable, info = _compile_xgb(mod, target, work, xgb_trials_per_task, say)
            else:
                work = Path(tempfile.mkdtemp(prefix=f"{name}-one-shot-", dir=out_dir))
                executable, info = _compile_one_shot(mod, target, work, weights, library, say)
            run = _vm_runner(executable, example_inputs)
            info["max_abs_diff"] = _max_abs_diff(_as_numpy(run()), reference)
            say(f"{mode}: compiled in {info['build_seconds']:.1f} s, "
                f"max abs diff vs torch {info['max_abs_diff']:.2e}")  # fmt: skip
            compiled.append(_Compiled(mode, run, info))

        for entry in compiled:
            result["modes"][entry.mode] = dict(entry.info)
        result["modes"] = {m: result["modes"][m] for m in modes if m in result["modes"]}
        wrong = {c.mode: c.info["max_abs_diff"] for c in compiled
                 if not c.info["max_abs_diff"] <= tolerance}  # fmt: skip
        if wrong:
            result["error"] = f"outputs differ from PyTorch beyond {tolerance:.2e}: {wrong}"
            json_path.write_text(json.dumps(result, indent=1) + "\n")
            raise NumericsError(f"{name}: {result['error']} (details in {json_path})")

        say(f"latency: {repeat} interleaved rounds of {', '.join(c.mode for c in compiled)}")
        with torch.inference_mode():
            samples = measure_latencies({c.mode: c.run for c in compiled}, repeat, say)
    for mode, values in samples.items():
        result["modes"][mode]["latency"] = _latency_summary(values)

    json_path.write_text(json.dumps(result, indent=1) + "\n")
    plot_result(result, png_path)
    say(f"wrote {json_path} and {png_path}")
    if progress:
        print(format_table(result), flush=True)
    return result
