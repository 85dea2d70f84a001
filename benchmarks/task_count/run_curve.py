"""Held-out ranking accuracy against the number of distinct training tasks.

Does zero-shot ranking of unseen tasks keep improving as the GNN is trained on more distinct
tasks, or has it levelled off at the few hundred tasks measured on this CPU? The curve trains
the GNN from scratch, and TVM's XGBModel (TenSet's pretrained baseline), on nested seeded
subsets of N training tasks, and scores both zero-shot on two fixed held-out sets:

``held_out``
    Tasks of a seeded task split (the committed ``tuning_records/llvm-rocketlake-2c/split.json``
    extended to the tasks it does not name, stratified by operator kind, seed 0).
``variant``
    Every task of one operator variant (``--variant``, by default every convolution with a
    5x5 kernel): no point of the curve trains on any task of it.

Each GNN point is plain transfer training (the shipped recipe's losses, width and learning
rate) for about ``--steps`` minibatches whatever N, from a fresh initialization seeded by the
replicate seed; the XGBModel is fitted on every record of the same tasks. The metrics are
those of ``ms-meta eval`` (:func:`ms_meta.eval.evaluate`, k = 0).

One JSON file per point under ``--out``; a point whose file exists is skipped, a GNN training
interrupted mid-point resumes from its last epoch under ``--work-dir``. The record lines used
are pinned in ``OUT/records.json`` on the first run (a collector may append to the records
while the curve runs). ``--report`` aggregates the points into ``curve.json``, ``curve.png``
and a Markdown table.

Usage::

    nohup nice -n 5 python benchmarks/task_count/run_curve.py \\
        --out benchmarks/task_count/2026-12-05-rocketlake > curve.log 2>&1 &
    python benchmarks/task_count/run_curve.py --out benchmarks/task_count/2026-12-05-rocketlake \\
        --report
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEEP = ROOT / "tuning_records" / "llvm-rocketlake-2c"
BREADTH = ROOT / "tuning_records" / "llvm-rocketlake-2c-breadth"
SHIPPED = ROOT / "ms_meta" / "weights" / "llvm-rocketlake.pt"
COMMITTED_SPLIT = DEEP / "split.json"
KS = (0,)
METRIC_KEYS = ("pairwise", "top1", "top5", "tau")

__all__ = ["main"]


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _log(text: str) -> None:
    print(time.strftime("%H:%M:%S"), text, flush=True)


def _write_json(path: Path, payload: Any) -> None:
    from ms_meta.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


# ---- data -------------------------------------------------------------------------------------


def _cut(task, last_line: int):
    """``task`` with only its records on lines up to ``last_line``, labels renormalized."""
    import numpy as np

    from ms_meta.labels import normalized_throughput

    keep = np.flatnonzero(task.lines <= last_line)
    if len(keep) == len(task):
        return task
    latencies = task.latencies[keep]
    return dataclasses.replace(
        task,
        graphs=[task.graphs[i] for i in keep.tolist()],
        latencies=latencies,
        labels=normalized_throughput(latencies),
        lines=task.lines[keep],
    )


def load_tasks(paths: list[Path], pin: Path) -> list:
    """Every measurement group of ``paths``, cut to the record lines pinned in ``pin`` (written
    from what is there on the first run)."""
    from ms_meta.cli.progress import Progress
    from ms_meta.data.dataset import build_dataset

    bar = Progress(0, "records")
    dataset = build_dataset(paths, progress=bar.follow)
    if pin.is_file():
        last = json.loads(pin.read_text())["last_line"]
    else:
        last = {t.name: int(t.lines.max()) for t in dataset.tasks}
        _write_json(pin, {"paths": [str(p.relative_to(ROOT)) for p in paths], "last_line": last})
    tasks = [_cut(t, last[t.name]) for t in dataset.tasks if t.name in last]
    tasks = [t for t in tasks if len(t)]
    _log(f"{len(tasks)} measurement groups, {sum(len(t) for t in tasks)} records")
    return tasks


def make_sides(tasks: list, variant: str, out: Path) -> dict[str, Any]:
    """The held-out tasks, the variant tasks and the training pool (split names), written to
    ``OUT/split.json`` (``ms-meta eval --split`` reads it; ``variant`` is one more part)."""
    from ms_meta.data.split import extend_task_split, read_split, write_split
    from ms_meta.eval.task_subsets import parse_variant

    path = out / "split.json"
    if path.is_file():
        return read_split(path)
    rule = parse_variant(variant)
    ops = {t.split_name: t.op for t in tasks}
    variant_names = set(rule.select(ops))
    committed = read_split(COMMITTED_SPLIT)
    split = extend_task_split(committed, {n: op for n, op in ops.items() if n not in variant_names})
    sides = {
        "split": "by_task",
        "train": [n for n in split["train"] if n in ops and n not in variant_names],
        "held_out": [n for n in split["held_out"] if n in ops and n not in variant_names],
        "variant": sorted(variant_names),
        "variant_rule": rule.describe(),
        "seed": split.get("seed", 0),
        "fraction": split.get("fraction", 0.2),
        "base": str(COMMITTED_SPLIT.relative_to(ROOT)),
        "ops": {n: ops[n] for n in sorted(ops)},
    }
    write_split(path, sides)
    return read_split(path)


# ---- points -----------------------------------------------------------------------------------


class Curve:
    """The data, the two held-out sets and the runner of every point."""

    def __init__(self, args, tasks: list, sides: dict[str, Any]) -> None:
        self.args, self.sides = args, sides
        self.by_split: dict[str, list] = {}
        for t in tasks:
            self.by_split.setdefault(t.split_name, []).append(t)
        self.pool = sorted(n for n in sides["train"] if n in self.by_split)
        self.eval_sets = {
            part: [t for n in sides[part] for t in self.by_split.get(n, [])]
            for part in ("held_out", "variant")
        }
        self.work = args.work_dir
        self.work.mkdir(parents=True, exist_ok=True)
        self._features = None

    @property
    def features(self):
        from ms_meta.eval.per_store import PerStoreFeatures

        if self._features is None:
            self._features = PerStoreFeatures()
        return self._features

    def sizes(self) -> list[int]:
        return sorted({len(self.pool) if s == "all" else int(s) for s in self.args.sizes})

    def plan(self) -> list[tuple[str, int, int]]:
        """``(model, N, seed)`` points: every size of the first seed first, then the others;
        the full pool of a later seed (same tasks, another initialization) last."""
        from ms_meta.eval.task_subsets import nested_subsets

        points = []
        full = len(self.pool)
        for seed in self.args.seeds:
            nested_subsets(self.pool, self.sizes(), seed)  # checks the sizes
            for n in self.sizes():
                if n == full and seed != self.args.seeds[0]:
                    continue
                points += [(model, n, seed) for model in self.args.models]
        for seed in self.args.seeds[1:]:
            points += [(model, full, seed) for model in self.args.models if full in self.sizes()]
        return points

    def train_names(self, n: int, seed: int) -> list[str]:
        from ms_meta.eval.task_subsets import nested_subsets

        return nested_subsets(self.pool, [n], seed)[n]

    def _evaluate(self, scorer) -> dict[str, Any]:
        from ms_meta.eval import evaluate

        return {
            part: evaluate(scorer, tasks, ks=KS, seed=0).to_dict()
            for part, tasks in self.eval_sets.items()
        }

    def run(self, model: str, n: int, seed: int) -> Path:
        path = self.args.out / f"{model}_n{n:03d}_seed{seed}.json"
        if path.is_file():
            return path
        names = self.train_names(n, seed)
        train = [t for name in names for t in self.by_split[name]]
        started = time.perf_counter()
        scorer, settings = (self._gnn if model == "gnn" else self._xgb)(n, seed, train)
        trained = time.perf_counter() - started
        results = self._evaluate(scorer)
        payload = {
            "model": model,
            "n_tasks": n,
            "all_tasks": n == len(self.pool),
            "seed": seed,
            "train_tasks": names,
            "train_groups": len(train),
            "train_records": sum(len(t) for t in train),
            "settings": settings,
            "results": results,
            "seconds": {
                "train": round(trained, 1),
                "eval": round(sum(sum(r["seconds"].values()) for r in results.values()), 1),
            },
            "date": time.strftime("%Y-%m-%d"),
            "commit": _commit(),
            "machine": self.args.machine,
        }
        _write_json(path, payload)
        s = {part: r["summary"]["0"] for part, r in results.items()}
        _log(
            f"{model} N={n} seed {seed}: held-out pairwise {s['held_out']['pairwise']:.3f} "
            f"top-1 {s['held_out']['top1']:.3f}; variant pairwise {s['variant']['pairwise']:.3f} "
            f"top-1 {s['variant']['top1']:.3f} ({trained:.0f}s train)"
        )
        return path

    def _gnn(self, n: int, seed: int, train: list):
        import torch

        from ms_meta.cli.progress import Progress
        from ms_meta.errors import MsMetaError
        from ms_meta.model.gnn import GNNConfig
        from ms_meta.model.meta import AdaptConfig, AdaptingScorer
        from ms_meta.model.pretrain import pretrain
        from ms_meta.model.train import init_model
        from ms_meta.train.adapt import AdaptRecipe

        recipe = AdaptRecipe(steps=self.args.steps, inner_steps=5, inner_lr=1e-3)
        n_records = sum(len(t) for t in train)
        config = recipe.pretrain_config(n_records, GNNConfig(hidden=64), seed=seed)
        stem = self.work / f"gnn_n{n:03d}_seed{seed}"
        weights, state, info = (
            stem.with_suffix(".pt"),
            stem.with_suffix(".state.pt"),
            stem.with_suffix(".json"),
        )
        model = init_model(config.gnn, seed=seed)
        if weights.is_file() and info.is_file():
            model.load_state_dict(torch.load(weights, weights_only=True))
            model.eval()
            steps = json.loads(info.read_text())["steps"]
        else:
            bar = Progress(0, "steps")
            counted = {"done": 0}

            def follow(done: int, total: int, note: str) -> None:
                counted["done"] = done
                bar.follow(done, total, f"gnn N={n} seed {seed} {note}")

            _log(f"gnn N={n} seed {seed}: {config.epochs} epochs of {n_records} records")
            try:
                result = pretrain(train, [], config, state_path=state, progress=follow)
            except MsMetaError as err:  # the pinned data changed under a half-trained state
                _log(f"restarting gnn N={n} seed {seed}: {err}")
                state.unlink(missing_ok=True)
                result = pretrain(train, [], config, state_path=state, progress=follow)
            model = result.model
            # A resumed run counts only this process's steps; whole epochs give the rest.
            steps = counted["done"]
            torch.save(model.state_dict(), weights)
            _write_json(info, {"steps": steps, "epochs": config.epochs})
            state.unlink(missing_ok=True)
        settings = {
            "init": f"fresh, seed {seed}",
            "method": config.method,
            "target_steps": self.args.steps,
            "epochs": config.epochs,
            "steps": steps,
            "batch_size": config.batch_size,
            "lr": config.outer_lr,
            "regression_weight": config.regression_weight,
            "listwise_weight": config.listwise_weight,
            "hidden": config.gnn.hidden,
            "weights": str(weights),
        }
        return AdaptingScorer("gnn", model, AdaptConfig(steps=5, lr=1e-3)), settings

    def _xgb(self, n: int, seed: int, train: list):
        from ms_meta.eval.xgb_baseline import XGBPretrained, pretrain_xgb

        path = self.work / f"xgb_n{n:03d}_seed{seed}.tar"
        if not path.is_file():
            _log(f"xgb N={n} seed {seed}: fitting on {sum(len(t) for t in train)} records")
            pretrain_xgb(train, path, features=self.features, seed=seed)
        manifest = json.loads(path.with_name(path.name + ".json").read_text())
        settings = {
            "model": "XGBModel pretrained on every record of the training tasks (pretrain_xgb)",
            "boosting_rounds": manifest["boosting_rounds"],
            "fit_seconds": manifest["train_seconds"],
        }
        return XGBPretrained.load(path, self.features, seed=seed), settings

    def run_shipped(self) -> Path:
        """The shipped rocketlake weights on the same two sets (they were trained on most of
        the committed records, held-out tasks included: an optimistic reference)."""
        from ms_meta.model.meta import AdaptConfig, AdaptingScorer
        from ms_meta.model.train import init_model
        from ms_meta.model.weights import load_checkpoint

        path = self.args.out / "shipped.json"
        if path.is_file():
            return path
        checkpoint = load_checkpoint(SHIPPED)
        model = init_model(checkpoint.gnn_config)
        model.load_state_dict(checkpoint.state_dict)
        model.eval()
        results = self._evaluate(AdaptingScorer("shipped", model, AdaptConfig(steps=5, lr=1e-3)))
        seen = sorted(checkpoint.meta.get("data", {}).get("train_tasks", []))
        payload = {
            "model": "shipped",
            "weights": str(SHIPPED.relative_to(ROOT)),
            "trained_on": seen,
            "results": results,
            "date": time.strftime("%Y-%m-%d"),
            "commit": _commit(),
            "machine": self.args.machine,
        }
        _write_json(path, payload)
        _log(
            "shipped: held-out pairwise "
            f"{results['held_out']['summary']['0']['pairwise']:.3f}, variant pairwise "
            f"{results['variant']['summary']['0']['pairwise']:.3f}"
        )
        return path


# ---- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder of the per-point JSON.")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/tmp/ms-meta-task-count"),
        help="Trained models and training state.",
    )
    parser.add_argument("--records", type=Path, nargs="+", default=[DEEP, BREADTH])
    parser.add_argument("--sizes", nargs="+", default=["25", "50", "100", "200", "all"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--models", nargs="+", choices=["gnn", "xgb"], default=["gnn", "xgb"])
    parser.add_argument("--steps", type=int, default=1200, help="GNN minibatches per point.")
    parser.add_argument("--variant", default="R=5,S=5", help="The held-out operator variant.")
    parser.add_argument("--no-shipped", action="store_true", help="Skip the shipped weights.")
    parser.add_argument("--machine", default="rocketlake, 2-core Intel Xeon VM")
    parser.add_argument("--report", action="store_true", help="Aggregate, plot, print, stop.")
    parser.add_argument(
        "--save-candidate",
        type=Path,
        help="With --report: write the all-task GNN (seed 0) here as weights if it ranks the "
        "held-out tasks the shipped weights never saw better than they do.",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        from report import report  # the sibling module, beside this script

        return report(args.out, candidate=args.save_candidate, work_dir=args.work_dir)
    import torch

    from ms_meta.cli.progress import Progress

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    tasks = load_tasks(list(args.records), args.out / "records.json")
    sides = make_sides(tasks, args.variant, args.out)
    curve = Curve(args, tasks, sides)
    _log(
        f"pool {len(curve.pool)} training tasks; held-out {len(sides['held_out'])} tasks "
        f"({len(curve.eval_sets['held_out'])} groups); variant {sides['variant_rule']}: "
        f"{len(sides['variant'])} tasks ({len(curve.eval_sets['variant'])} groups)"
    )
    if not args.no_shipped:
        curve.run_shipped()
    points = curve.plan()
    bar = Progress(len(points), "points", log_every=0)
    for model, n, seed in points:
        curve.run(model, n, seed)
        bar.update(1, f"{model} N={n} seed {seed}")
    _log("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
