"""The task-count curve's report: aggregate the per-point JSON, plot, tabulate, compare.

Reads what ``run_curve.py`` wrote under ``OUT``; writes ``OUT/curve.json`` (means over the
replicate seeds), ``OUT/curve.png`` and ``OUT/table.md``, and prints the table. With a
candidate path, the all-task GNN of seed 0 is written there as ms-meta weights when it ranks
the held-out tasks better (pairwise) than the shipped weights do.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BREADTH = ROOT / "tuning_records" / "llvm-rocketlake-2c-breadth"
PARTS = {"held_out": "held-out tasks", "variant": "held-out variant"}
SETS = {
    **PARTS,
    "held_out_deep": "held-out tasks with deep records",
    "held_out_breadth": "held-out tasks with breadth-sampled records",
}
METRICS = {"pairwise": "pairwise", "top1": "top-1", "top5": "top-5", "tau": "tau"}
MODELS = {"gnn": "GNN", "xgb": "XGB"}

__all__ = ["report"]


def _points(out: Path) -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text()) for p in sorted(out.glob("*_n*_seed*.json")) if "_n" in p.name
    ]


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def _subset_summary(result: dict[str, Any], names: set[str] | None) -> dict[str, float]:
    """The k = 0 macro averages of an ``EvalResult`` dict over the measurement groups whose
    task (split name) is in ``names`` (all when ``None``)."""
    from ms_meta.eval import EvalResult

    evaluated = EvalResult.from_dict(result)
    if names is not None:
        evaluated.per_task = {
            k: {t: row for t, row in rows.items() if t.split("@", 1)[0] in names}
            for k, rows in evaluated.per_task.items()
        }
    return evaluated.summary()[0]


def breadth_tasks(root: Path = BREADTH) -> set[str]:
    """The task names of the breadth-first parts (their manifests list them)."""
    names: set[str] = set()
    for manifest in sorted(root.glob("part-*.json")):
        names |= set(json.loads(manifest.read_text()).get("tasks", {}))
    return names


def set_filters() -> dict[str, tuple[str, set[str] | None, bool]]:
    """Evaluation set -> (result part, task names kept or ``None`` for all, keep or drop)."""
    breadth = breadth_tasks()
    return {
        "held_out": ("held_out", None, True),
        "held_out_deep": ("held_out", breadth, False),
        "held_out_breadth": ("held_out", breadth, True),
        "variant": ("variant", None, True),
    }


def _summaries(point: dict[str, Any], filters) -> dict[str, dict[str, float]]:
    out = {}
    for label, (part, names, keep) in filters.items():
        result = point["results"][part]
        if names is not None and not keep:
            every = {t.split("@", 1)[0] for t in result["per_task"]["0"]}
            names = every - names
        out[label] = _subset_summary(result, names)
    return out


def _spread(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": math.nan, "min": math.nan, "max": math.nan}
    return {"mean": _mean(finite), "min": min(finite), "max": max(finite)}


def aggregate(points: list[dict[str, Any]], filters) -> list[dict[str, Any]]:
    """One row per (model, N) and evaluation set: the mean, lowest and highest value of each
    metric over the replicate seeds."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for p in points:
        row = rows.setdefault(
            (p["model"], p["n_tasks"]),
            {"model": p["model"], "n_tasks": p["n_tasks"], "all_tasks": p["all_tasks"], "runs": []},
        )
        row["runs"].append(
            {"seed": p["seed"], "train_records": p["train_records"], **_summaries(p, filters)}
        )
    out = []
    for (_, _), row in sorted(rows.items()):
        runs = row["runs"]
        row["train_records"] = round(_mean([r["train_records"] for r in runs]))
        for label in filters:
            row[label] = {m: _spread([r[label][m] for r in runs]) for m in METRICS}
            row[label]["tasks"] = runs[0][label]["tasks"]
        out.append(row)
    return out


def _cell(entry: dict[str, float], n_runs: int) -> str:
    if not math.isfinite(entry["mean"]):
        return ""
    text = f"{entry['mean']:.3f}"
    if n_runs > 1:
        text += f" ±{(entry['max'] - entry['min']) / 2:.3f}"
    return text


def table(rows: list[dict[str, Any]], part: str) -> str:
    """The Markdown table of one evaluation set: a row per N, GNN and XGB side by side."""
    sizes = sorted({r["n_tasks"] for r in rows})
    by = {(r["model"], r["n_tasks"]): r for r in rows}
    head = ["training tasks", "records"]
    head += [f"{MODELS[m]} {label}" for m in MODELS for label in METRICS.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for n in sizes:
        any_row = next(r for r in rows if r["n_tasks"] == n)
        label = f"{n} (all)" if any_row["all_tasks"] else str(n)
        cells = [label, f"{any_row['train_records']:,}"]
        for m in MODELS:
            row = by.get((m, n))
            cells += [_cell(row[part][k], len(row["runs"])) if row else "" for k in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def record_kind_table(rows: list[dict[str, Any]]) -> str:
    """Pairwise and top-1 on the held-out tasks with deep records and on those with
    breadth-sampled records, GNN and XGB, a row per N."""
    sizes = sorted({r["n_tasks"] for r in rows})
    by = {(r["model"], r["n_tasks"]): r for r in rows}
    sets = ("held_out_deep", "held_out_breadth")
    first = rows[0]
    kinds = {s: f"{s.rsplit('_', 1)[1]} ({first[s]['tasks']})" for s in sets}
    head = ["training tasks"]
    head += [
        f"{MODELS[m]} {METRICS[k]} {kinds[s]}"
        for k in ("pairwise", "top1")
        for m in MODELS
        for s in sets
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for n in sizes:
        cells = [str(n)]
        for k in ("pairwise", "top1"):
            for m in MODELS:
                row = by.get((m, n))
                cells += [_cell(row[s][k], len(row["runs"])) if row else "" for s in sets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def long_points(out: Path, filters, min_epochs: int = 40) -> list[tuple[int, dict]]:
    """``(N, summaries)`` of the seed-0 GNN points trained for at least ``min_epochs`` epochs,
    in ``OUT`` and its sub-folders, by N (the longest run where there are several)."""
    found = [*_points(out), *(p for d in sorted(out.glob("*/")) for p in _points(d))]
    best: dict[int, dict[str, Any]] = {}
    for p in found:
        if p["model"] == "gnn" and p["seed"] == 0 and p["settings"]["epochs"] >= min_epochs:
            if (
                p["n_tasks"] not in best
                or p["settings"]["steps"] > best[p["n_tasks"]]["settings"]["steps"]
            ):
                best[p["n_tasks"]] = p
    return [(n, _summaries(best[n], filters)) for n in sorted(best)]


def plot(
    rows: list[dict[str, Any]],
    shipped: dict[str, Any] | None,
    path: Path,
    long: list[tuple[int, dict]] = (),
) -> Path:
    """Pairwise accuracy and top-1 against N, one panel per evaluation set; ``long``: the GNN
    trained for a number of epochs instead of steps (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    sizes = sorted({r["n_tasks"] for r in rows})

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    styles = {"gnn": {"color": "tab:blue", "marker": "o"}, "xgb": {"color": "tab:orange"}}
    styles["xgb"]["marker"] = "s"
    for col, part in enumerate(PARTS):
        for row_i, metric in enumerate(("pairwise", "top1")):
            ax = axes[row_i][col]
            for model, style in styles.items():
                mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["n_tasks"])
                if not mine:
                    continue
                xs = [r["n_tasks"] for r in mine]
                ax.plot(xs, [r[part][metric]["mean"] for r in mine], label=MODELS[model], **style)
                for r in mine:
                    for run in r["runs"]:
                        ax.scatter(r["n_tasks"], run[part][metric], s=12, alpha=0.4, **style)
            if long:
                ax.plot(
                    [n for n, _ in long],
                    [v[part][metric] for _, v in long],
                    color="tab:green",
                    marker="^",
                    linestyle="--",
                    label="GNN, 43-45 epochs (seed 0)",
                )
            if shipped is not None:
                value = shipped["results"][part]["summary"]["0"][metric]
                ax.axhline(value, color="grey", linestyle=":", label="shipped weights (see README)")
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{PARTS[part]}: {METRICS[metric]}")
            ax.grid(alpha=0.3)
            if row_i == 1:
                ax.set_xlabel("distinct training tasks")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Zero-shot ranking of unseen tasks against training tasks (rocketlake)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def budget_table(out: Path, filters) -> str:
    """The seed-0 GNN points of the curve and every GNN point of the longer runs in ``OUT``'s
    sub-folders, a row per (N, epochs, seed): what the step budget does at each size."""
    found = [(".", p) for p in _points(out)]
    found += [(d.name, p) for d in sorted(out.glob("*/")) for p in _points(d)]
    rows = sorted(
        (
            (folder, p)
            for folder, p in found
            if p["model"] == "gnn" and (p["seed"] == 0 or folder != ".")
        ),
        key=lambda fp: (fp[1]["n_tasks"], fp[1]["settings"]["epochs"], fp[1]["seed"]),
    )
    sets = {"held_out": "held-out", "held_out_deep": "deep", "held_out_breadth": "breadth"}
    sets["variant"] = "variant"
    head = ["training tasks", "epochs", "steps", "seed", "folder"]
    head += [f"{label} {METRICS[k]}" for label in sets.values() for k in ("pairwise", "top1")]
    lines = [
        "| " + " | ".join(head) + " |",
        "|---:|---:|---:|---:|---|" + "---:|" * (len(head) - 5),
    ]
    for folder, p in rows:
        summaries = _summaries(p, filters)
        settings = p["settings"]
        cells = [str(p["n_tasks"]), str(settings["epochs"]), f"{settings['steps']:,}"]
        cells += [str(p["seed"]), folder]
        for s in sets:
            cells += [f"{summaries[s][k]:.3f}" for k in ("pairwise", "top1")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def full_points(out: Path, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The all-task GNN points: the curve's, and those of longer training runs kept in
    ``OUT/all-tasks-*-steps/`` (the same tasks and records, another step budget)."""
    longer = [p for d in sorted(out.glob("all-tasks-*-steps")) for p in _points(d)]
    full = [p for p in [*points, *longer] if p["model"] == "gnn" and p["all_tasks"]]
    return sorted(full, key=lambda p: (p["settings"]["target_steps"], p["seed"]))


def _label(point: dict[str, Any]) -> str:
    return f"GNN, {point['settings']['target_steps']} steps, seed {point['seed']}"


def compare_shipped(
    out: Path, full: list[dict[str, Any]], shipped: dict[str, Any]
) -> dict[str, Any]:
    """Shipped weights against each all-task GNN: on each evaluation set, all of it and only
    the tasks the shipped weights were not trained on."""
    seen = set(shipped["trained_on"])
    split = json.loads((out / "split.json").read_text())
    table: dict[str, Any] = {}
    for part in PARTS:
        unseen = {n for n in split[part] if n not in seen}
        for label, names in ((part, None), (f"{part}, unseen by shipped", unseen)):
            entry = {"shipped": _subset_summary(shipped["results"][part], names)}
            for p in full:
                entry[_label(p)] = _subset_summary(p["results"][part], names)
            entry["tasks"] = entry["shipped"]["tasks"]
            table[label] = entry
    return table


def _save_candidate(out: Path, point: dict[str, Any], path: Path, figures: dict) -> Path:
    import torch

    from ms_meta.model.gnn import GNNConfig
    from ms_meta.model.weights import Checkpoint, load_checkpoint, save_checkpoint

    settings = point["settings"]
    shipped = load_checkpoint(ROOT / "ms_meta" / "weights" / "llvm-rocketlake.pt")
    state = torch.load(settings["weights"], weights_only=True)
    meta = {
        "method": "transfer",
        "pretrain_settings": settings,
        "adapt": {"steps": 5, "lr": 1e-3},
        "data": {
            "train_tasks": point["train_tasks"],
            "records": point["train_records"],
            "split": str(out / "split.json"),
        },
        "figures": figures,
        "commit": point["commit"],
    }
    path.mkdir(parents=True, exist_ok=True)
    target = path / "llvm-rocketlake.pt"
    save_checkpoint(
        Checkpoint(
            gnn_config=GNNConfig(hidden=settings["hidden"]),
            state_dict=state,
            target=shipped.target,
            meta=meta,
        ),
        target,
    )
    (path / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    return target


def report(out: Path, *, candidate: Path | None = None, work_dir: Path | None = None) -> int:
    """Aggregate, plot and print; write the candidate weights if asked and earned."""
    points = _points(out)
    if not points:
        print(f"no points under {out}")
        return 1
    rows = aggregate(points, set_filters())
    shipped_path = out / "shipped.json"
    shipped = json.loads(shipped_path.read_text()) if shipped_path.is_file() else None
    tables = {part: table(rows, part) for part in PARTS}
    full = full_points(out, points)
    comparison = compare_shipped(out, full, shipped) if shipped else {}
    payload = {
        "rows": rows,
        "shipped_comparison": comparison,
        "commits": sorted({p["commit"] for p in points}),
        "dates": sorted({p["date"] for p in points}),
        "written": time.strftime("%Y-%m-%d %H:%M"),
    }
    (out / "curve.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(rows, shipped, out / "curve.png", long_points(out, set_filters()))
    text = []
    for part, label in PARTS.items():
        groups = rows[0][part]["tasks"]
        text += [f"### {label.capitalize()} ({groups} measurement groups)", "", tables[part], ""]
    text += ["### Held-out tasks by kind of records", "", record_kind_table(rows), ""]
    text += ["### GNN step budget", "", budget_table(out, set_filters()), ""]
    if comparison:
        text += ["### Shipped weights against the all-task GNN", ""]
        text += ["| evaluation set | tasks | model | pairwise | top-1 | top-5 | tau |"]
        text += ["|---|---:|---|---:|---:|---:|---:|"]
        for label, entry in comparison.items():
            for name, s in entry.items():
                if name == "tasks":
                    continue
                cells = [label, str(s["tasks"]), name]
                cells += [f"{s[m]:.3f}" if math.isfinite(s[m]) else "" for m in METRICS]
                text.append("| " + " | ".join(cells) + " |")
        text.append("")
    (out / "table.md").write_text("\n".join(text))
    print("\n".join(text))
    if candidate is not None and comparison and full:
        # Only the held-out tasks that neither model trained on compare ranking of unseen
        # tasks: the shipped weights were trained on the others.
        fair = comparison["held_out, unseen by shipped"]
        best = max(full, key=lambda p: fair[_label(p)]["pairwise"])
        mine, theirs = fair[_label(best)]["pairwise"], fair["shipped"]["pairwise"]
        if mine > theirs:
            where = _save_candidate(out, best, candidate, comparison)
            print(
                f"candidate weights: {where} ({_label(best)}: pairwise {mine:.3f} > {theirs:.3f}"
                " on the held-out tasks the shipped weights never saw)"
            )
        else:
            print(
                f"no candidate: best all-task GNN ({_label(best)}) pairwise {mine:.3f}"
                f" <= shipped {theirs:.3f} on the held-out tasks the shipped weights never saw"
            )
    return 0
