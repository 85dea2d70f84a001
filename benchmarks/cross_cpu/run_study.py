"""Cross-CPU adaptation study: how best to bring the cost model to a CPU it was not trained on.

Each of the two CPUs with committed records plays the new CPU in turn, the other the known one.
Every model is scored on the new CPU's held-out tasks of the committed task split
(``tuning_records/llvm-rocketlake-2c/split.json``; the same task names on both CPUs) with the
k-shot protocol of ``ms-meta eval`` (pairwise accuracy, top-1, at k = 0 and k = 32). Cells:

``zero_shipped``
    The known CPU's shipped weights as they are. They were trained on every task of that CPU,
    the new CPU's held-out tasks included (on the other CPU): an optimistic reference.
``zero_source``
    Transfer-trained on the known CPU's training tasks only (the start of the fine-tuned cells).
``zero_fomaml``
    ``zero_source`` meta-trained further with first-order MAML on the same tasks.
``ft_source_k{K}``, ``ft_fomaml_k{K}``, ``scratch_k{K}``
    ``ms_meta.train.adapt.train_recipe`` on K records of the new CPU's training tasks (8
    records from each of K/8 tasks, seeded), from ``zero_source``, from ``zero_fomaml``, or
    from a fresh model; ``_steps{S}`` cells vary the recipe's step count.
``full_scratch``, ``full_ft``
    Every record of the new CPU's training tasks: transfer-trained from a fresh model (the
    recipe of the known CPU's source model), and ``zero_source`` fine-tuned on them.

One JSON file per cell under ``OUT/<known>_to_<new>/``; a cell whose file exists is skipped,
and the models behind several cells are kept under ``--work-dir`` with resumable training
state, so an interrupted run continues. ``--table`` prints the Markdown table of the results.

Usage::

    nohup nice -n 5 python benchmarks/cross_cpu/run_study.py \\
        --out benchmarks/cross_cpu/2026-12-05-rocketlake > study.log 2>&1 &
    python benchmarks/cross_cpu/run_study.py --table \\
        --out benchmarks/cross_cpu/2026-12-05-rocketlake
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORDS = {
    "rocketlake": ROOT / "tuning_records" / "llvm-rocketlake-2c",
    "znver4-noavx512": ROOT / "tuning_records" / "llvm-znver4-noavx512-2c",
}
SHIPPED = {cpu: ROOT / "ms_meta" / "weights" / f"llvm-{cpu}.pt" for cpu in RECORDS}
SPLIT = RECORDS["rocketlake"] / "split.json"

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


class Study:
    """The data, the shared models and the cell runner of one known -> new CPU direction."""

    def __init__(self, args, data, known: str, new: str) -> None:
        self.args, self.data, self.known, self.new = args, data, known, new
        self.out = args.out / f"{known}_to_{new}"
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = args.work_dir
        self.work.mkdir(parents=True, exist_ok=True)

    # ---- models shared by several cells -------------------------------------------------

    def _pretrained(self, name: str, tasks, config, init_state=None):
        """Train (or load) a model kept under the work directory, resumable per epoch."""
        import torch

        from ms_meta.model.pretrain import pretrain
        from ms_meta.model.train import init_model

        path = self.work / f"{name}.pt"
        model = init_model(config.gnn, seed=config.seed)
        if path.is_file():
            model.load_state_dict(torch.load(path, weights_only=True))
            model.eval()
            return model
        _log(f"training {name}: {config.method}, {config.epochs} epochs, {len(tasks)} tasks")
        result = pretrain(
            tasks,
            [],
            config,
            state_path=self.work / f"{name}.state.pt",
            init_state=init_state,
            on_epoch=lambda r: _log(f"  {name} epoch {r.epoch} loss {r.train_loss:.4f}"),
        )
        torch.save(result.model.state_dict(), path)
        (self.work / f"{name}.state.pt").unlink(missing_ok=True)
        return result.model

    def source(self, cpu: str):
        """Transfer-trained on ``cpu``'s training tasks (the shipped rocketlake recipe, fewer
        epochs); also the full-data scratch reference when ``cpu`` is the new CPU."""
        from ms_meta.model.gnn import GNNConfig
        from ms_meta.model.pretrain import PretrainConfig

        config = PretrainConfig(
            method="transfer",
            epochs=self.args.source_epochs,
            patience=0,
            inner_steps=20,
            inner_lr=1e-3,
            batch_size=64,
            gnn=GNNConfig(hidden=64),
        )
        return self._pretrained(f"{cpu}-train-transfer", self.data[cpu]["train"], config), config

    def fomaml(self):
        """``source(known)`` meta-trained with first-order MAML on the known training tasks."""
        from dataclasses import replace

        base, config = self.source(self.known)
        config = replace(
            config,
            method="fomaml",
            epochs=self.args.fomaml_epochs,
            episodes_per_task=1,
            inner_steps=self.args.fomaml_inner_steps,
        )
        return self._pretrained(
            f"{self.known}-train-fomaml", self.data[self.known]["train"], config, base.state_dict()
        )

    # ---- cells --------------------------------------------------------------------------

    def run(self, cell: str, make) -> None:
        """Run one cell unless its JSON exists: ``make()`` returns (model, settings)."""
        from ms_meta.atomic import atomic_write_text
        from ms_meta.model.meta import AdaptConfig
        from ms_meta.train.adapt import evaluate_model

        path = self.out / f"{cell}.json"
        if path.is_file() or (self.args.cells and not any(c in cell for c in self.args.cells)):
            return
        started = time.perf_counter()
        model, settings = make()
        trained = time.perf_counter() - started
        adapt = AdaptConfig(steps=20, lr=1e-3, regression_weight=0.5)
        result = evaluate_model(
            model, self.data[self.new]["held_out"], adapt, name=cell, ks=self.args.eval_ks
        )
        summary = result.to_dict()["summary"]
        payload = {
            "cell": cell,
            "known_cpu": self.known,
            "new_cpu": self.new,
            "settings": settings,
            "eval": {
                "tasks": "held-out tasks of the new CPU (" + str(SPLIT.relative_to(ROOT)) + ")",
                "ks": list(self.args.eval_ks),
                "adapt": {"steps": adapt.steps, "lr": adapt.lr},
                "skip_counts": result.skip_counts(),
            },
            "summary": summary,
            "seconds": {"train": round(trained, 1), "eval": round(sum(result.seconds.values()), 1)},
            "date": time.strftime("%Y-%m-%d"),
            "commit": _commit(),
            "machine": self.args.machine,
        }
        atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
        k0, kmax = summary[str(self.args.eval_ks[0])], summary[str(self.args.eval_ks[-1])]
        _log(
            f"{self.known}->{self.new} {cell}: pairwise {k0['pairwise']:.3f}/"
            f"{kmax['pairwise']:.3f} top1 {k0['top1']:.3f}/{kmax['top1']:.3f} "
            f"({trained:.0f}s train)"
        )

    def plan(self) -> list[tuple[int, str, object]]:
        """Every cell as ``(priority, name, make)``: the main comparison first (both
        directions), then meta-training, the full-data references, the recipe's step sweep
        and variants, and more sample seeds, so that a run cut short still holds the cells
        that matter most."""
        args = self.args
        new_train = self.data[self.new]["train"]

        def shipped():
            from ms_meta.model.weights import load_checkpoint

            checkpoint = load_checkpoint(SHIPPED[self.known])
            model = _model(checkpoint.gnn_config, checkpoint.state_dict)
            return model, {"weights": str(SHIPPED[self.known].relative_to(ROOT))}

        def source_settings(config, tasks: str) -> dict:
            return {
                "method": config.method,
                "epochs": config.epochs,
                "lr": config.outer_lr,
                "batch_size": config.batch_size,
                "listwise_weight": config.listwise_weight,
                "tasks": tasks,
            }

        def zero_source():
            model, config = self.source(self.known)
            return model, source_settings(config, f"{self.known} training tasks")

        def zero_fomaml():
            return self.fomaml(), {
                "method": "fomaml",
                "init": "zero_source",
                "epochs": args.fomaml_epochs,
                "inner_steps": args.fomaml_inner_steps,
            }

        def sampled(k: int, seed: int, init: str, steps: int, **overrides):
            def make():
                import torch

                from ms_meta.model.gnn import GNNConfig
                from ms_meta.train.adapt import AdaptRecipe, sample_records, train_recipe

                tasks = sample_records(new_train, k, per_task=args.per_task, seed=seed)
                recipe = AdaptRecipe(steps=steps, **overrides)
                start = None
                if init == "source":
                    start = _checkpoint(self.source(self.known)[0])
                elif init == "fomaml":
                    start = _checkpoint(self.fomaml())
                torch.manual_seed(seed)
                model, config = train_recipe(
                    tasks, recipe, init=start, gnn=GNNConfig(hidden=64), seed=seed
                )
                return model, {
                    "init": init,
                    "records": sum(len(t) for t in tasks),
                    "tasks": len(tasks),
                    "per_task": args.per_task,
                    "sample_seed": seed,
                    "recipe": recipe.to_dict(),
                    "epochs": config.epochs,
                }

            return make

        def full_scratch():
            model, config = self.source(self.new)
            return model, source_settings(config, f"{self.new} training tasks, all records")

        def full_ft():
            from dataclasses import replace

            base, config = self.source(self.known)
            config = replace(config, epochs=args.full_ft_epochs, listwise_weight=1.0)
            model = self._pretrained(
                f"{self.known}-train-to-{self.new}-train", new_train, config, base.state_dict()
            )
            settings = source_settings(config, f"{self.new} training tasks, all records")
            return model, {**settings, "init": "zero_source"}

        cells = [(0, "zero_shipped", shipped), (0, "zero_source", zero_source)]
        first, *others = args.seeds
        for k in args.records:
            cells.append(
                (1, f"ft_source_k{k}_seed{first}", sampled(k, first, "source", args.steps))
            )
            cells.append((1, f"scratch_k{k}_seed{first}", sampled(k, first, "scratch", args.steps)))
        cells.append((2, "full_scratch", full_scratch))
        cells.append((3, "zero_fomaml", zero_fomaml))
        for k in args.records:
            cells.append(
                (3, f"ft_fomaml_k{k}_seed{first}", sampled(k, first, "fomaml", args.steps))
            )
        cells.append((4, "full_ft", full_ft))
        for seed in others:
            for k in args.records:
                for init, prefix in (
                    ("source", "ft_source"),
                    ("scratch", "scratch"),
                    ("fomaml", "ft_fomaml"),
                ):
                    cells.append(
                        (6, f"{prefix}_k{k}_seed{seed}", sampled(k, seed, init, args.steps))
                    )
        for steps in args.sweep_steps:
            for k in args.records:
                cells.append(
                    (
                        5,
                        f"ft_source_k{k}_steps{steps}_seed{first}",
                        sampled(k, first, "source", steps),
                    )
                )
        for name, overrides in args.variants:
            for k in args.records:
                make = sampled(k, first, "source", args.steps, **overrides)
                cells.append((5, f"ft_source_k{k}_{name}_seed{first}", make))
        return cells


def _variant(text: str) -> tuple[str, dict]:
    """``NAME:key=value,...`` -> (NAME, AdaptRecipe overrides), e.g. ``lr3e-4:lr=3e-4``."""
    name, _, pairs = text.partition(":")
    overrides = {}
    for pair in filter(None, pairs.split(",")):
        key, _, value = pair.partition("=")
        overrides[key] = float(value) if "." in value or "e" in value else int(value)
    return name, overrides


def _model(gnn_config, state_dict):
    from ms_meta.model.train import init_model

    model = init_model(gnn_config)
    model.load_state_dict(state_dict)
    model.eval()
    return model


def _checkpoint(model):
    from ms_meta.model.weights import Checkpoint

    return Checkpoint(gnn_config=model.config, state_dict=model.state_dict())


def load_data() -> dict:
    """Both CPUs' data sets (cached featurization), split into training and held-out tasks."""
    from ms_meta.data.dataset import build_dataset
    from ms_meta.data.split import read_split

    split = read_split(SPLIT)
    data = {}
    for cpu, path in RECORDS.items():
        started = time.perf_counter()
        parts = build_dataset([path]).split(split)
        data[cpu] = {"train": parts["train"].tasks, "held_out": parts["held_out"].tasks}
        _log(
            f"{cpu}: {len(parts['train'].tasks)} training and {len(parts['held_out'].tasks)} "
            f"held-out measurement groups ({time.perf_counter() - started:.0f}s)"
        )
    return data


# ---- the table --------------------------------------------------------------------------------

ROWS = [
    ("zero_shipped", "(a) shipped weights of the known CPU (trained on all its tasks)"),
    ("zero_source", "(a) known CPU, training tasks only"),
    ("zero_fomaml", "(a) known CPU, + FOMAML"),
]


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def table(out: Path, ks: tuple[int, ...]) -> str:
    """The Markdown table of the cells under ``out``: mean over sample seeds per row."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(out.glob("*_to_*/*.json")):
        payload = json.loads(path.read_text())
        name = payload["cell"]
        base = re.sub(r"_seed[0-9]+$", "", name)
        cells.setdefault((path.parent.name, base), []).append(payload)
    directions = sorted({d for d, _ in cells})
    rows = [(cell, label) for cell, label in ROWS]
    labels = {
        "ft_source": "(b) fine-tuned from known-CPU weights",
        "ft_fomaml": "(c) fine-tuned from FOMAML init",
        "scratch": "(d) from scratch",
    }
    bases = sorted({b for _, b in cells}, key=lambda b: (len(b), b))
    for prefix, label in labels.items():
        for base in sorted(
            (b for b in bases if b.startswith(prefix + "_k")),
            key=lambda b: (int(b.split("_k")[1].split("_")[0]), b),
        ):
            k, _, extra = base.split("_k")[1].partition("_")
            extra = extra.replace("steps", "") + " steps" if extra.startswith("steps") else extra
            rows.append((base, f"{label}, {k} records" + (f", {extra}" if extra else "")))
    rows += [
        ("full_ft", "(e) known-CPU weights fine-tuned on all training records"),
        ("full_scratch", "(e) from scratch on all training records"),
    ]
    k0, k1 = str(ks[0]), str(ks[-1])
    head = "| model | " + " | ".join(
        f"{d.replace('_to_', ' → ')}: pairwise k={k0} / {k1} | top-1 k={k0} / {k1}"
        for d in directions
    )
    lines = [head + " |", "|---|" + "---|---|" * len(directions)]
    for base, label in rows:
        cells_here = []
        for d in directions:
            runs = cells.get((d, base), [])
            if not runs:
                cells_here += ["", ""]
                continue
            seeds = f" (n={len(runs)})" if len(runs) > 1 else ""

            def fmt(metric: str, runs=runs) -> str:
                a = _mean([r["summary"][k0][metric] for r in runs])
                b = _mean([r["summary"][k1][metric] for r in runs])
                return f"{a:.3f} / {b:.3f}"

            cells_here += [fmt("pairwise") + seeds, fmt("top1")]
        lines.append(f"| {label} | " + " | ".join(cells_here) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder of the per-cell JSON.")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/tmp/ms-meta-cross-cpu"),
        help="Models shared by several cells, and their training state.",
    )
    parser.add_argument("--records", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--per-task", type=int, default=8)
    parser.add_argument("--steps", type=int, default=150, help="The recipe's optimizer steps.")
    parser.add_argument("--sweep-steps", type=int, nargs="*", default=[50, 400])
    parser.add_argument(
        "--variants",
        type=_variant,
        nargs="*",
        default=[],
        help="Recipe variants of the fine-tuned cells, NAME:key=value,... (AdaptRecipe fields).",
    )
    parser.add_argument("--source-epochs", type=int, default=12)
    parser.add_argument("--fomaml-epochs", type=int, default=3)
    parser.add_argument("--fomaml-inner-steps", type=int, default=5)
    parser.add_argument("--full-ft-epochs", type=int, default=6)
    parser.add_argument("--eval-ks", type=int, nargs="+", default=[0, 32])
    parser.add_argument(
        "--directions",
        nargs="+",
        default=["rocketlake:znver4-noavx512", "znver4-noavx512:rocketlake"],
    )
    parser.add_argument("--cells", nargs="*", default=[], help="Only cells containing these.")
    parser.add_argument("--machine", default="rocketlake, 2-core Intel Xeon VM")
    parser.add_argument("--table", action="store_true", help="Print the table and stop.")
    args = parser.parse_args(argv)
    args.eval_ks = tuple(sorted(args.eval_ks))
    if args.table:
        print(table(args.out, args.eval_ks))
        return 0
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    data = load_data()
    studies = [Study(args, data, *direction.split(":")) for direction in args.directions]
    queue = [(p, i, name, make) for i, st in enumerate(studies) for p, name, make in st.plan()]
    for _, i, name, make in sorted(queue, key=lambda c: (c[0], c[1])):
        studies[i].run(name, make)
    _log("done")
    print(table(args.out, args.eval_ks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
