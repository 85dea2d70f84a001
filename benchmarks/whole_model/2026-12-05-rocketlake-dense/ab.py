"""Side-by-side timing of One-Shot builds of one network that differ in one choice: weights
plain or prepacked, and the schedule library.

``python ab.py compile NAME --network bert-layer --weights prepacked --library PATH`` compiles
(``--verify K``: measuring each task's K best-ranked candidates, ``--verify-caches warm|cold``)
One-Shot's build into ``WORK/NAME/model.so`` (the record store left out, as in the whole-model
benchmark) and lists each task's pick in ``WORK/NAME/picks.json``; ``python ab.py time NAME ...``
times the builds named, round after round in turn, each in a fresh SCHED_FIFO process of the
whole-model benchmark (``ms_meta.bench.e2e_worker time``), and prints the median of each round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main"]

TARGET = {"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2}
THREADS = 2


def _env() -> dict[str, str]:
    env = dict(os.environ, MS_META_STORE="none")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS"):
        env[name] = str(THREADS)
    return env


def compile_build(args) -> None:
    import tvm

    from ms_meta.networks import load_model
    from ms_meta.networks.importer import import_torch_module
    from ms_meta.one_shot import compile_relax, prepare_for_inference, run_relax

    out = args.work / args.name
    out.mkdir(parents=True, exist_ok=True)
    model, inputs = load_model(args.network)
    mod, params = import_torch_module(model, inputs)
    # convolutions in the package's default layout, as the whole-model benchmark compiles them
    prepared = prepare_for_inference(mod, params, layout_free=args.weights == "prepacked")
    target = tvm.target.Target(TARGET)
    start = time.perf_counter()
    from ms_meta.tuning.measure import MeasureSettings

    settings = MeasureSettings(realtime=True)
    if args.verify_caches == "cold":
        settings = settings.with_cold_caches()
    outcome = run_relax(prepared, None, target, out / "one_shot", library=args.library,
                        store=None, verify=args.verify,
                        measure_settings=settings)  # fmt: skip
    searched = time.perf_counter()
    executable = compile_relax(outcome.database, prepared, None, target)
    executable.export_library(str(out / "model.so"))
    picks = [{"task": t.task_name, "status": t.status, "source": t.source,
              "origin": getattr(t, "origin", None)} for t in outcome.tasks]  # fmt: skip
    info = {"weights": args.weights, "library": str(args.library), "verify": args.verify,
            "verify_caches": args.verify_caches,
            "search_seconds": searched - start,
            "build_seconds": time.perf_counter() - searched, "picks": picks}  # fmt: skip
    (out / "picks.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if k != "picks"}))


def time_builds(args) -> None:
    reference = args.work / f"{args.network}-reference.npz"
    worker = [sys.executable, "-m", "ms_meta.bench.e2e_worker"]
    if not reference.is_file():
        subprocess.run([*worker, "reference", "--network", args.network, "--threads",
                        str(THREADS), "--out", str(reference), "--result",
                        str(args.work / "reference.json")], check=True, env=_env())  # fmt: skip
    medians: dict[str, list[float]] = {name: [] for name in args.names}
    for round_number in range(args.rounds):
        for name in args.names:
            result = args.work / name / f"time-{round_number}.json"
            subprocess.run([*worker, "time", "--network", args.network, "--threads",
                            str(THREADS), "--contender", "one-shot", "--work-dir",
                            str(args.work / name), "--reference", str(reference),
                            "--runs", str(args.runs), "--result", str(result),
                            "--realtime"], check=True, env=_env())  # fmt: skip
            timed = json.loads(result.read_text())
            median = statistics.median(timed["samples_s"]) * 1e3
            medians[name].append(median)
            note = f"numerics ok: {timed['numerics_ok']}, other cores {timed['foreign_cores']}"
            print(f"round {round_number} {name}: {median:.3f} ms ({note})", flush=True)
    for name, values in medians.items():
        print(f"{name}: median of round medians {statistics.median(values):.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["compile", "time"])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ms-meta-ab"))
    parser.add_argument("--network", default="bert-layer")
    parser.add_argument("--weights", choices=["plain", "prepacked"], default="prepacked")
    parser.add_argument("--library", default="default")
    parser.add_argument("--verify", type=int, default=0, help="candidates measured per task")
    parser.add_argument("--verify-caches", choices=["warm", "cold"], default="cold")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if args.command == "compile":
        args.name = args.names[0]
        compile_build(args)
    else:
        time_builds(args)


if __name__ == "__main__":
    main()
