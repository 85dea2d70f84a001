"""The processes of the end-to-end benchmark: ``python -m ms_meta.bench.e2e_worker COMMAND``.

``reference`` runs the network in eager PyTorch and saves its example inputs and outputs;
``compile`` compiles one contender into its work directory; ``time`` loads one contender, checks
its outputs against the reference and times it; ``profile`` (TVM) and ``torch-ops`` (PyTorch)
time single operators for the per-operator gap table (:mod:`ms_meta.bench.gap`). Each runs in
a fresh process that imports one runtime only (the parent sets the thread environment before
Python starts), so that no other runtime's worker threads spin on the cores while a contender is
timed. Every command writes its result as JSON to ``--result``; progress lines go to stderr
prefixed with ``progress:``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.bench.contenders import CONTENDERS, compile_contender, load_contender, write_json
from ms_meta.tuning.contention import ForeignLoadMeter
from ms_meta.tuning.lock import measurement_lock

PROGRESS_PREFIX = "progress: "
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS")


def say(message: str) -> None:
    print(f"{PROGRESS_PREFIX}{message}", file=sys.stderr, flush=True)


class _ProgressHandler(logging.Handler):
    """Passes One-Shot's per-task log lines on as progress lines (a search with measurements
    takes minutes per network)."""

    def emit(self, record: logging.LogRecord) -> None:
        say(f"one-shot: {record.getMessage()}")


def reference_tolerance(reference: list[np.ndarray], rtol: float) -> float:
    """``rtol`` times the largest reference magnitude (at least 1): reordered fp32 sums differ
    by far less, a wrong schedule or a dropped operator by far more."""
    return rtol * max([1.0] + [float(np.max(np.abs(r))) for r in reference if r.size])


def max_abs_diff(outputs: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Largest absolute difference; infinite when the outputs' number or shapes differ or an
    output is not finite."""
    if len(outputs) != len(reference) or any(
        o.shape != r.shape for o, r in zip(outputs, reference, strict=True)
    ):
        return float("inf")
    diffs = [float(np.max(np.abs(o.astype(np.float64) - r))) if r.size else 0.0
             for o, r in zip(outputs, reference, strict=True)]  # fmt: skip
    worst = max(diffs, default=0.0)
    return worst if np.isfinite(worst) else float("inf")


def read_reference(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The example inputs and eager-PyTorch outputs a ``reference`` process saved."""
    with np.load(path) as data:
        inputs = [data[f"input_{i}"] for i in range(sum(k.startswith("input_") for k in data))]
        outputs = [data[f"output_{i}"] for i in range(sum(k.startswith("output_") for k in data))]
    return inputs, outputs


def _reference(args) -> dict[str, Any]:
    import torch

    from ms_meta.atomic import atomic_write
    from ms_meta.networks import load_model

    torch.set_num_threads(args.threads)
    model, inputs = load_model(args.network)
    with torch.inference_mode():
        outputs = model(*inputs)
    outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    arrays = {f"input_{i}": x.numpy() for i, x in enumerate(inputs)}
    arrays.update({f"output_{i}": y.detach().numpy() for i, y in enumerate(outputs)})

    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **arrays)

    atomic_write(args.out, save)
    return {
        "inputs": [list(x.shape) for x in inputs],
        "outputs": [list(y.shape) for y in outputs],
        "torch_version": torch.__version__,
    }


def _compile(args) -> dict[str, Any]:
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    options = json.loads(args.options) if args.options else {}
    return compile_contender(args.contender, args.network, work_dir, args.threads, options, say)


def _enter_realtime(args) -> None:
    if args.realtime:  # before any runtime starts its threads, which inherit the policy
        from ms_meta.tuning.measure import enter_realtime

        enter_realtime()


def _time(args) -> dict[str, Any]:
    _enter_realtime(args)
    inputs, reference = read_reference(Path(args.reference))
    # the machine-wide measurement lock: no other ms-meta process times anything meanwhile
    with measurement_lock():
        start = time.perf_counter()
        loaded = load_contender(args.contender, args.network, Path(args.work_dir), inputs,
                                args.threads)  # fmt: skip
        load_seconds = time.perf_counter() - start
        start = time.perf_counter()
        first = loaded.run()
        first_call = time.perf_counter() - start
        diff = max_abs_diff(loaded.to_numpy(first), reference)
        tolerance = reference_tolerance(reference, args.rtol)
        for _ in range(max(0, args.warmup - 1)):  # the first call was one of the warm-up runs
            loaded.run()
        samples = []
        run = loaded.run
        gc.collect()
        gc.disable()  # no collection pause inside a timed run, for every contender alike
        try:
            with ForeignLoadMeter() as meter:
                for _ in range(args.runs):
                    started = time.perf_counter()
                    run()
                    samples.append(time.perf_counter() - started)
        finally:
            gc.enable()
    load = meter.load
    return {
        "samples_s": samples,
        "load_seconds": load_seconds,
        "first_call_seconds": first_call,
        "warmup": args.warmup,
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "numerics_ok": bool(diff <= tolerance),
        "realtime": os.sched_getscheduler(0) == os.SCHED_FIFO,
        "foreign_cores": None if load is None else round(load.other_processes, 3),
        "steal_cores": None if load is None else round(load.steal, 3),
        **loaded.info,
    }


def _profile(args) -> dict[str, Any]:
    from ms_meta.bench.contenders import LIBRARY_FILE
    from ms_meta.bench.gap import profile_tvm

    _enter_realtime(args)
    inputs, _ = read_reference(Path(args.reference))
    with measurement_lock():
        result = profile_tvm(Path(args.work_dir) / LIBRARY_FILE, inputs, args.runs, args.warmup)
    return {**result, "realtime": os.sched_getscheduler(0) == os.SCHED_FIFO}


def _torch_ops(args) -> dict[str, Any]:
    from ms_meta.bench.gap import time_torch_ops

    _enter_realtime(args)
    with measurement_lock():
        result = time_torch_ops(args.network, args.threads, args.runs, args.warmup)
    return {**result, "realtime": os.sched_getscheduler(0) == os.SCHED_FIFO}


COMMANDS = {
    "reference": _reference,
    "compile": _compile,
    "time": _time,
    "profile": _profile,
    "torch-ops": _torch_ops,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ms_meta.bench.e2e_worker")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--network", required=True)
    parser.add_argument("--result", required=True, type=Path)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--contender", choices=sorted(CONTENDERS))
    parser.add_argument("--work-dir")
    parser.add_argument("--out", type=Path, help="reference: the .npz to write")
    parser.add_argument("--options", help="compile: JSON options of the contender")
    parser.add_argument("--reference", help="time: the reference .npz")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument(
        "--realtime", action="store_true", help="time, profile, torch-ops: run SCHED_FIFO"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    one_shot_logger = logging.getLogger("ms_meta.one_shot")
    one_shot_logger.addHandler(_ProgressHandler(logging.INFO))
    one_shot_logger.setLevel(logging.INFO)
    started = time.perf_counter()
    try:
        result = COMMANDS[args.command](args)
        code = 0
    except Exception as err:  # reported to the parent, which shows it in one line
        traceback.print_exc()
        text = str(err).strip()
        result = {"error": f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"}
        code = 1
    result.update(
        command=args.command,
        contender=args.contender,
        network=args.network,
        threads=args.threads,
        thread_env={k: os.environ.get(k) for k in THREAD_ENV},
        pid=os.getpid(),
        python=platform.python_version(),
        wall_seconds=time.perf_counter() - started,
    )
    write_json(args.result, result)
    return code


if __name__ == "__main__":
    sys.exit(main())
