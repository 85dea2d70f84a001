"""The contenders of the end-to-end benchmark: how each one is compiled, and how a timing
process loads and runs it.

Every function here runs inside a worker process (:mod:`ms_meta.bench.e2e_worker`) that holds
one runtime only, so that no other runtime's threads compete for the cores while it is timed.
TVM contenders compile to a shared library (``export_library``) that the timing process loads
with ``relax.VirtualMachine``; ONNX Runtime's model is exported to ``model.onnx``; torch.compile
compiles in its own timing process (its first call, reported), as a user's program would.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.atomic import atomic_write, atomic_write_text
from ms_meta.bench.extras import ANCHOR_MODULES, BENCH_EXTRA, missing_modules
from ms_meta.errors import MsMetaError

__all__ = [
    "ANCHORS",
    "CONTENDERS",
    "DEFAULT_CONTENDERS",
    "DEFAULT_VERIFY",
    "Contender",
    "Loaded",
    "compile_contender",
    "load_contender",
    "missing_packages",
]

logger = logging.getLogger(__name__)

LIBRARY_FILE = "model.so"
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
# One-Shot with a small measured budget: the K best-ranked candidates of each task measured
DEFAULT_VERIFY = 4
# Trials per search iteration of stock MetaSchedule: small enough that every task gets trials
# even at 8 per task, so that the gradient task scheduler has a choice from 16 per task on.
XGB_TRIALS_PER_ITER = 8
_MS_LOGGER = "tvm.s_tir.meta_schedule"


@dataclass(frozen=True)
class Contender:
    """One way of running a network.

    ``runtime`` is the one runtime its timing process imports (``tvm``, ``torch`` or
    ``onnxruntime``); ``packages`` the optional packages it needs (a missing one skips it).
    """

    name: str
    runtime: str
    description: str
    packages: tuple[str, ...] = ()
    anchor: bool = False  # what a user would run instead of TVM


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender(
            "one-shot", "tvm", "One-Shot: shipped weights and schedule library, no measurement"
        ),
        Contender(
            "one-shot-verify", "tvm", "One-Shot measuring the K best-ranked candidates of each task"
        ),
        Contender(
            "one-shot-plain", "tvm", "One-Shot with the convolutions in the model's own layout"
        ),
        Contender("xgb", "tvm", "stock MetaSchedule (XGBModel) at a stated trial budget"),
        Contender("untuned", "tvm", "TVM's default Relax pipeline, no tuning"),
        Contender("torch", "torch", "PyTorch eager, inference_mode", anchor=True),
        Contender("torch-compile", "torch", "torch.compile (inductor, default mode)", anchor=True),
        Contender(
            "onnxruntime",
            "onnxruntime",
            "ONNX Runtime, CPUExecutionProvider, ORT_ENABLE_ALL",
            packages=ANCHOR_MODULES,
            anchor=True,
        ),
    )
}
ANCHORS = tuple(name for name, c in CONTENDERS.items() if c.anchor)
# xgb tunes for hours (it joins the default set when a tuning database is given); untuned TVM
# takes seconds per run of a real network (naive loops), minutes per timing process
DEFAULT_CONTENDERS = tuple(
    name for name in CONTENDERS if name not in ("xgb", "untuned", "one-shot-plain")
)


def missing_packages(name: str) -> str | None:
    """Why contender ``name`` cannot run here (a missing optional package), or None."""
    missing = missing_modules(CONTENDERS[name].packages)
    if missing:
        return f"{', '.join(missing)} not installed ({BENCH_EXTRA})"
    return None


# ---- compiling (the compile worker) ---------------------------------------------------------


def compile_contender(
    name: str, network: str, work_dir: Path, threads: int, options: dict[str, Any], say
) -> dict[str, Any]:
    """Compile contender ``name`` of ``network`` into ``work_dir``; what it did, as a dict.

    ``options``: ``target`` (JSON dict or None), ``weights``, ``library``, ``verify``,
    ``xgb_trials_per_task``, ``xgb_database`` (see :func:`ms_meta.bench.e2e.run_model_benchmark`).
    """
    runtime = CONTENDERS[name].runtime
    if runtime == "tvm":
        return _compile_tvm_contender(name, network, work_dir, threads, options, say)
    if name == "onnxruntime":
        return _export_onnx(network, work_dir, say)
    if name == "torch-compile":
        return _warm_torch_compile(network, threads, say)
    return {"compile_seconds": 0.0, "note": "eager, nothing to compile"}


def _compile_tvm_contender(name, network, work_dir, threads, options, say) -> dict[str, Any]:
    import tvm

    from ms_meta.networks import import_model
    from ms_meta.tuning.target import host_cpu, parse_target, target_summary

    target = parse_target(options.get("target"))
    config = dict(target.export())
    config["num-cores"] = threads
    target = tvm.target.Target(config)
    say(f"{name}: importing {network} into Relax")
    start = time.perf_counter()
    mod, params, _ = import_model(network)
    import_seconds = time.perf_counter() - start
    logging.getLogger(_MS_LOGGER).setLevel(logging.WARNING)
    start = time.perf_counter()
    executable, info = _compile_tvm(name, mod, params, target, work_dir, options, say)
    info["compile_seconds"] = time.perf_counter() - start
    if info.get("tuning_seconds") is None and "reused_database" in info:
        info["compile_seconds"] = None  # the tuning happened in an earlier run
    say(f"{name}: exporting the compiled model")
    _export_library(executable, work_dir / LIBRARY_FILE)
    if options.get("describe_functions"):  # the per-operator gap table's view of the build
        from ms_meta.bench.gap import describe_functions
        from ms_meta.networks import bind_for_inference
        from ms_meta.one_shot import prepare_relax

        if name.startswith("one-shot"):
            prepared = prepare_one_shot(mod, params, _one_shot_options(name, options))
        else:
            prepared = bind_for_inference(mod, params)
        info["functions"] = describe_functions(prepare_relax(prepared, None, target), target)
    info.update(
        import_seconds=import_seconds,
        target=target_summary(target),
        llvm_cpu=host_cpu(),
        tvm_version=tvm.__version__,
    )
    return info


def _compile_tvm(name: str, mod, params, target, work_dir: Path, options: dict[str, Any], say):
    """The one place where a TVM contender's Relax module becomes an executable.

    ``mod`` and ``params`` are the imported network and its weights. One-Shot goes through the
    package's own Relax pipeline (:func:`ms_meta.one_shot.prepare_relax` for the search, and
    ``ms_meta.one_shot.compile_relax`` to build), so that a change to that pipeline reaches
    this benchmark; stock MetaSchedule (``xgb``) and ``untuned`` start from the module a user
    of TVM would have (:func:`ms_meta.networks.bind_for_inference`) and compile with
    ``ms.relax_integration`` and ``tvm.compile``. Returns the executable and a dict of what
    happened.
    """
    from ms_meta.networks import bind_for_inference

    if name in ("one-shot", "one-shot-verify", "one-shot-plain"):
        verify = int(options.get("verify") or DEFAULT_VERIFY) if name == "one-shot-verify" else 0
        options = _one_shot_options(name, options)
        mod = prepare_one_shot(mod, params, options)
        return _compile_one_shot(mod, None, target, work_dir, options, verify, say)
    if name == "untuned":
        say("untuned: compiling with TVM's default Relax pipeline")
        return tvm_compile_default(bind_for_inference(mod, params), target), {}
    if name == "xgb":
        return _compile_xgb(bind_for_inference(mod, params), target, work_dir, options, say)
    raise MsMetaError(f"{name} is not a TVM contender")


def _one_shot_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` as the One-Shot contender ``name`` uses them: ``one-shot-plain`` always
    compiles the model's own layout."""
    return {**options, "layout": "plain"} if name == "one-shot-plain" else options


def prepare_one_shot(mod, params, options: dict[str, Any]):
    """The network as One-Shot compiles it: weights bound, prepared for inference in the
    layout ``options["layout"]`` asks for (``"blocked"``, ``"plain"``, None: the default)."""
    from ms_meta.one_shot import prepare_for_inference

    layout = options.get("layout")
    if layout not in (None, "blocked", "plain"):
        raise MsMetaError(f"unknown layout {layout!r}; choose blocked or plain")
    blocked = None if layout is None else layout == "blocked"
    return prepare_for_inference(mod, params, blocked=blocked)


def tvm_compile_default(mod, target):
    import tvm

    return tvm.compile(mod, target=target)


def _compile_one_shot(mod, params, target, work_dir: Path, options, verify: int, say):
    from ms_meta.one_shot import compile_relax, run_relax
    from ms_meta.tuning.measure import MeasureSettings
    from ms_meta.tuning.measured_tuning import meta_schedule_logging_compat

    weights, library = options.get("weights", "default"), options.get("library", "default")
    say(f"{'one-shot-verify' if verify else 'one-shot'}: searching (weights={weights}, "
        f"library={library}, verify={verify})")  # fmt: skip
    start = time.perf_counter()
    with meta_schedule_logging_compat():
        outcome = run_relax(
            mod, params, target, work_dir / "one_shot", weights=weights, library=library,
            verify=verify,
            measure_settings=MeasureSettings(realtime=bool(options.get("realtime_measurement"))),
        )  # fmt: skip
    searched = time.perf_counter()
    tasks = outcome.tasks
    say(f"one-shot: {len(tasks)} tasks, {outcome.tasks_from_library} from the schedule library, "
        f"in {searched - start:.0f} s; building")  # fmt: skip
    executable = compile_relax(outcome.database, mod, params, target)
    measured = sum(len(t.verified) for t in tasks)
    return executable, {
        "search_seconds": searched - start,
        "build_seconds": time.perf_counter() - searched,
        "model_startup_seconds": outcome.startup_seconds,
        "tasks": len(tasks),
        "tasks_with_schedule": sum(t.status in ("predicted", "measured") for t in tasks),
        "tasks_from_library": outcome.tasks_from_library,
        "confidence": outcome.confidence_counts,
        "verify": verify,
        "measurements": measured,
        "measurements_per_task": measured / len(tasks) if tasks else 0.0,
        "pretrained": outcome.pretrained,
        "weights_used": outcome.weights,
        "library_used": outcome.library,
        "model_warning": outcome.model_warning,
        "summary": str(outcome.summary_path) if outcome.summary_path else None,
        "task_outcomes": [
            {
                "task_name": t.task_name,
                "status": t.status,
                "source": t.source,
                "weight": t.weight,
                "measured_seconds": t.measured_seconds,
                "confidence": t.confidence.to_dict(),
            }
            for t in tasks
        ],
    }


def _compile_xgb(mod, target, work_dir: Path, options, say):
    """Stock MetaSchedule: ``tune_relax`` with XGBModel (or a database from an earlier run),
    then ``compile_relax``."""
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.networks import fuse_for_tuning
    from ms_meta.run_secs import is_failed

    reuse = options.get("xgb_database")
    if reuse:
        reuse = Path(reuse)
        if not (reuse / "database_tuning_record.json").is_file():
            raise MsMetaError(f"no MetaSchedule tuning database in {reuse}")
        say(f"xgb: compiling with the tuning database in {reuse} (no tuning in this run)")
        database = ms.database.JSONDatabase(work_dir=str(reuse))
        info: dict[str, Any] = {"reused_database": str(reuse), "tuning_seconds": None}
    else:
        database, info = _tune_xgb(fuse_for_tuning(mod), target, work_dir / "xgb", options, say)
    start = time.perf_counter()
    executable = ms.relax_integration.compile_relax(database, mod, target, params=None)
    records = database.get_all_tuning_records()
    info.update(
        build_seconds=time.perf_counter() - start,
        trials=len(records),
        valid_trials=sum(1 for r in records if not is_failed(r.run_secs)),
        database=str(reuse or work_dir / "xgb"),
    )
    return executable, info


def _progress_builder(inner, total: int, say):
    """A builder that delegates to ``inner`` and reports each batch: MetaSchedule's first
    round-robin pass over the tasks commits nothing, so its logs stay silent for a long time."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import PyBuilder

    @derived_object
    class _ProgressBuilder(PyBuilder):
        def __init__(self) -> None:
            super().__init__()
            self.built = 0
            self.start = time.perf_counter()

        def build(self, build_inputs):
            if build_inputs:  # empty: a task whose search found nothing new
                self.built += len(build_inputs)
                say(f"xgb: building and measuring candidates {self.built}/{total} "
                    f"({time.perf_counter() - self.start:.0f} s)")  # fmt: skip
            return inner.build(build_inputs)

    return _ProgressBuilder()


def _tune_xgb(fused, target, tune_dir: Path, options, say):
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.builder import make_builder
    from ms_meta.tuning.intrin import import_tensor_intrinsics
    from ms_meta.tuning.measure import make_local_runner
    from ms_meta.tuning.measured_tuning import meta_schedule_logging_compat

    trials_per_task = int(options.get("xgb_trials_per_task") or 64)
    import_tensor_intrinsics(target.kind.name)
    start = time.perf_counter()
    tasks = ms.relax_integration.extract_tasks(fused, target)
    total = trials_per_task * len(tasks)
    say(f"xgb: tuning {len(tasks)} tasks, {total} trials ({trials_per_task} per task) in "
        f"{tune_dir}")  # fmt: skip
    with meta_schedule_logging_compat():
        database = ms.relax_integration.tune_relax(
            mod=fused, params=None, target=target, work_dir=str(tune_dir),
            max_trials_global=total,
            num_trials_per_iter=min(XGB_TRIALS_PER_ITER, trials_per_task),
            builder=_progress_builder(make_builder(), total, say), runner=make_local_runner(),
            cost_model=ms.cost_model.XGBModel(), seed=0,
        )  # fmt: skip
    return database, {
        "tuning_seconds": time.perf_counter() - start,
        "tasks": len(tasks),
        "trials_per_task": trials_per_task,
    }


def _export_library(executable, path: Path) -> None:
    """``export_library`` to a temporary name, then renamed: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial.so")
    executable.export_library(str(partial))
    os.replace(partial, path)


def _export_onnx(network: str, work_dir: Path, say) -> dict[str, Any]:
    import torch

    from ms_meta.networks import load_model

    say(f"onnxruntime: exporting {network} to ONNX (opset {ONNX_OPSET}, TorchScript exporter)")
    model, inputs = load_model(network)
    start = time.perf_counter()

    def export(path: str) -> None:
        with torch.inference_mode():
            torch.onnx.export(
                model, tuple(inputs), path, dynamo=False, opset_version=ONNX_OPSET,
                input_names=[f"input_{i}" for i in range(len(inputs))],
            )  # fmt: skip

    atomic_write(work_dir / ONNX_FILE, export)
    return {"compile_seconds": time.perf_counter() - start, "opset": ONNX_OPSET,
            "torch_version": torch.__version__}  # fmt: skip


def _warm_torch_compile(network: str, threads: int, say) -> dict[str, Any]:
    """torch.compile's first call (tracing, inductor codegen, the C++ compiler): its compile
    time with a cold cache. It also fills the inductor cache the timing processes share."""
    import torch

    from ms_meta.networks import load_model

    torch.set_num_threads(threads)
    model, inputs = load_model(network)
    compiled = torch.compile(model)
    say("torch-compile: compiling (inductor, first call)")
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(*inputs)
    return {"compile_seconds": time.perf_counter() - start, "torch_version": torch.__version__}


# ---- loading and running (the timing worker) --------------------------------------------------


@dataclass
class Loaded:
    """A contender ready to run: ``run()`` computes the outputs in the runtime's own form,
    ``to_numpy`` turns them into a list of arrays (outside the timed loop)."""

    run: Callable[[], Any]
    to_numpy: Callable[[Any], list[np.ndarray]]
    info: dict[str, Any]


def load_contender(
    name: str, network: str, work_dir: Path, inputs: Sequence[np.ndarray], threads: int
) -> Loaded:
    """Load what :func:`compile_contender` left in ``work_dir`` (or the eager network) in this
    process, with ``threads`` threads."""
    runtime = CONTENDERS[name].runtime
    if runtime == "tvm":
        return _load_tvm(work_dir / LIBRARY_FILE, inputs)
    if runtime == "onnxruntime":
        return _load_onnxruntime(work_dir / ONNX_FILE, inputs, threads)
    return _load_torch(network, inputs, threads, compiled=name == "torch-compile")


def _load_tvm(library: Path, inputs) -> Loaded:
    import tvm
    from tvm import relax

    if not library.is_file():
        raise MsMetaError(f"no compiled library {library}")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    main = vm["main"]
    args = [tvm.runtime.tensor(np.ascontiguousarray(x), tvm.cpu()) for x in inputs]
    return Loaded(lambda: main(*args), _tvm_numpy, {"tvm_version": tvm.__version__})


def _tvm_numpy(outputs) -> list[np.ndarray]:
    if hasattr(outputs, "numpy"):
        return [outputs.numpy()]
    return [array for item in outputs for array in _tvm_numpy(item)]


def _load_onnxruntime(path: Path, inputs, threads: int) -> Loaded:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = {n: np.ascontiguousarray(x) for n, x in zip(names, inputs, strict=True)}
    return Loaded(
        lambda: session.run(None, feeds),
        lambda outputs: [np.asarray(o) for o in outputs],
        {"onnxruntime_version": ort.__version__, "intra_op_num_threads": threads,
         "inter_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL"},
    )  # fmt: skip


def _load_torch(network: str, inputs, threads: int, *, compiled: bool) -> Loaded:
    import torch

    from ms_meta.networks import load_model

    torch.set_num_threads(threads)
    model, _ = load_model(network)
    if compiled:
        model = torch.compile(model)
    tensors = [torch.from_numpy(np.array(x)) for x in inputs]

    def run():
        with torch.inference_mode():
            return model(*tensors)

    return Loaded(run, _torch_numpy, {"torch_version": torch.__version__,
                                      "torch_threads": torch.get_num_threads()})  # fmt: skip


def _torch_numpy(outputs) -> list[np.ndarray]:
    if hasattr(outputs, "detach"):
        return [outputs.detach().numpy()]
    return [array for item in outputs for array in _torch_numpy(item)]


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, default=str) + "\n")
