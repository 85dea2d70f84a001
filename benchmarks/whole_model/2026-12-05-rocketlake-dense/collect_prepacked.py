"""Measure schedules of a network's matrix products with layout-free (prepacked) weights.

``ms-meta collect`` measures the operators of ``ms_meta.workloads``, whose PrimFuncs read
every argument in its given layout. One-Shot's tasks with prepacked weights
(:mod:`ms_meta.one_shot.layout_free`) are other workloads: their constant weight is listed in
``layout_free_buffers``, and ``RewriteLayout`` packs it as each schedule reads it. This script
extracts them from the network exactly as One-Shot does and hands them to the same collector
(:func:`ms_meta.data.collect.collect`), so that the records sit beside the others, resumable,
as ``tuning_records/<target-key>/matmul_bias_prepacked_M_N_K``::

    python collect_prepacked.py --network bert-layer --trials-per-task 256 --realtime
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

__all__ = ["PrepackedWorkload", "main", "prepacked_matmul_workloads"]

TARGET = {"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2}
ROOT = Path(__file__).resolve().parents[3] / "tuning_records"


def _workload_class():
    from ms_meta.workloads.spec import Workload

    @dataclasses.dataclass(frozen=True)
    class PrepackedWorkload(Workload):
        """A ``matmul_bias`` task as a network prepared with prepacked weights holds it."""

        module: object = dataclasses.field(default=None, compare=False, repr=False)

        @property
        def name(self) -> str:
            return f"{self.op}_prepacked_{'_'.join(str(p) for p in self.params)}"

        def build(self):
            return self.module

    return PrepackedWorkload


PrepackedWorkload = None  # bound on first use: the class needs TVM


def prepacked_matmul_workloads(network: str):
    """The network's matrix products whose weight is layout-free, as workloads named by
    their ``matmul_bias`` shape (M, N, K), largest first."""
    import tvm

    from ms_meta.networks import load_model
    from ms_meta.networks.importer import import_torch_module
    from ms_meta.one_shot import prepare_for_inference, relax_tasks

    global PrepackedWorkload
    PrepackedWorkload = PrepackedWorkload or _workload_class()
    model, inputs = load_model(network)
    mod, params = import_torch_module(model, inputs)
    prepared = prepare_for_inference(mod, params, blocked=False, layout_free=True)
    found = {}
    for task in relax_tasks(prepared, None, tvm.target.Target(TARGET)):
        func = task.mod["main"] if isinstance(task.mod, tvm.IRModule) else task.mod
        free = list(func.attrs.get("layout_free_buffers", []) or [])
        if not task.name.startswith("fused_matmul") or not free:
            continue
        shapes = [[int(x) for x in p.shape] for p in func.params]
        (m, k), (_, n) = shapes[0], shapes[1]
        workload = PrepackedWorkload("matmul_bias", (m, n, k), (task.name,), tvm.IRModule(
            {"main": func}))  # fmt: skip
        found[workload.name] = workload
    return sorted(found.values(), key=lambda w: -w.flops)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--network", default="bert-layer")
    parser.add_argument("--out", type=Path, default=ROOT)
    parser.add_argument("--trials-per-task", type=int, default=256)
    parser.add_argument("--realtime", action="store_true")
    parser.add_argument("--only", help="collect only this task name")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()

    from ms_meta.cli.collect import learned_models
    from ms_meta.cli.options import quiet_meta_schedule
    from ms_meta.data.collect import collect
    from ms_meta.data.task_meta import CollectConfig
    from ms_meta.tuning.target import parse_target

    workloads = prepacked_matmul_workloads(args.network)
    if args.only:
        workloads = [w for w in workloads if w.name == args.only]
    for w in workloads:
        print(w.name, w.aliases, flush=True)
    if args.list:
        return
    quiet_meta_schedule()
    config = CollectConfig(trials_per_task=args.trials_per_task, cost_model="meta",
                           realtime=args.realtime, contention_guard=False)  # fmt: skip
    summary = collect(workloads, args.out, parse_target(TARGET), config,
                      on_task_done=lambda p: print(p, flush=True),
                      models=learned_models(False, "none"))  # fmt: skip
    print(f"measured {summary.measured} records in {summary.seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
