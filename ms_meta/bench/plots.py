"""Figures of the online benchmark: convergence of the best latency against trials.

matplotlib is part of the optional ``bench`` extra (:mod:`ms_meta.bench.extras`): it is
imported only when a figure is drawn, and the benchmark skips its figure with a note where it
is not installed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ms_meta.atomic import atomic_write
from ms_meta.bench.extras import PLOT_MODULES, skipped_note
from ms_meta.bench.online import REFERENCE_MODEL, step_at
from ms_meta.errors import MsMetaError

__all__ = ["plot_convergence", "plot_skipped_note"]

_COLORS = {
    "xgb": "tab:blue",
    "xgb-pretrained": "tab:green",
    "meta": "tab:red",
    "one-shot": "tab:purple",
}
#: With several weights sets (``meta:NAME``), the n-th set's colour per model (the first is the
#: colour of the unnamed run), and its line style (meta) or marker (one-shot, a single point).
_WEIGHTS_COLORS = {
    "meta": ("tab:red", "tab:orange", "tab:brown", "tab:pink"),
    "one-shot": ("tab:purple", "tab:cyan", "tab:olive", "tab:gray"),
}
_WEIGHTS_LINESTYLES = ("-", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
_WEIGHTS_MARKERS = ("*", "P", "X", "D")


def _style(label: str, weights_names: list[str]) -> dict[str, Any]:
    """Colour, line style and marker of a run labelled ``model`` or ``model:NAME`` (repeated
    One-Shot searches, ``model:NAME#k``, share their weights' style)."""
    model, _, name = label.partition("#")[0].partition(":")
    if model not in _WEIGHTS_COLORS:
        return {"color": _COLORS.get(model), "linestyle": "-", "marker": "*"}
    i = weights_names.index(name) if name in weights_names else 0
    colors = _WEIGHTS_COLORS[model]
    return {
        "color": colors[i % len(colors)],
        "linestyle": _WEIGHTS_LINESTYLES[i % len(_WEIGHTS_LINESTYLES)],
        "marker": _WEIGHTS_MARKERS[i % len(_WEIGHTS_MARKERS)],
    }


def _remeasured_curve(run: dict[str, Any], latency: dict[str, Any]) -> tuple[list, list]:
    """(trials, latency in us) of the run's re-measured best schedule after each improvement,
    held until the end of the run (a step plot)."""
    xs, ys = [], []
    for step in run["staircase"]:
        secs = latency.get(step["key"], {}).get("secs")
        if secs is not None:
            xs.append(step["trial"])
            ys.append(secs * 1e6)
    if xs and run["max_trials"] > xs[-1]:
        xs.append(run["max_trials"])
        ys.append(ys[-1])
    return xs, ys


def plot_convergence(result: dict[str, Any], path: str | Path) -> Path:
    """Write a PNG: one panel per task, re-measured best latency so far against trials, one
    line per cost model label (solid, or dash-dotted and dashed for further ``meta:NAME``
    weights; the tuning-time ``run_secs`` curve dotted beside it), and the re-measured xgb@N
    reference as a horizontal line.

    Parameters
    ----------
    result : dict
        What :func:`ms_meta.bench.online.run_online_benchmark` returns (or its JSON file).
    path : path
        The PNG to write.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    MsMetaError
        When matplotlib is not installed (see :func:`plot_skipped_note`).
    """
    note = plot_skipped_note()
    if note is not None:
        raise MsMetaError(note)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    latency = result["latency"]
    ref_budget = result["config"]["xgb_budget"]
    tasks = list(dict.fromkeys(r["task"] for r in result["runs"]))
    cols = min(2, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.2 * rows), squeeze=False)
    budgets = sorted({b for r in result["runs"] for b in r["budgets"]} | {0})
    names = (r["model"].partition("#")[0].partition(":")[2] for r in result["runs"])
    weights_names = [name for name in dict.fromkeys(names) if name]
    for ax, task in zip(axes.flat, tasks, strict=False):
        for run in (r for r in result["runs"] if r["task"] == task):
            style = _style(run["model"], weights_names)
            color = style["color"]
            xs, ys = _remeasured_curve(run, latency)
            if run["max_trials"] == 0:
                if ys:
                    ax.plot(
                        [0],
                        ys[:1],
                        marker=style["marker"],
                        markersize=12 if style["marker"] == "*" else 9,
                        linestyle="none",
                        color=color,
                        # repeated searches: one legend entry per weights set
                        label=None if "#" in run["model"] else f"{run['model']} (0 trials)",
                        alpha=0.6 if "#" in run["model"] else 1.0,
                    )
                continue
            if xs:
                ax.step(
                    xs,
                    ys,
                    where="post",
                    color=color,
                    linestyle=style["linestyle"],
                    linewidth=1.8,
                    label=run["model"],
                )
            db = [(i + 1, s * 1e6) for i, s in enumerate(run["curve_db"]) if s is not None]
            if db:
                ax.step(
                    [t for t, _ in db],
                    [v for _, v in db],
                    where="post",
                    color=color,
                    linewidth=0.9,
                    linestyle=":",
                    alpha=0.7,
                )
        ref_run = next(
            (r for r in result["runs"] if r["task"] == task and r["model"] == REFERENCE_MODEL), None
        )
        ref_step = step_at(ref_run["staircase"], ref_budget) if ref_run else None
        ref_secs = latency.get(ref_step["key"], {}).get("secs") if ref_step else None
        if ref_secs is not None:
            ax.axhline(
                ref_secs * 1e6,
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"{REFERENCE_MODEL}@{ref_budget}",
            )
        ax.set_xscale("symlog", base=2, linthresh=max(1, min(b for b in budgets if b) // 2))
        ax.set_xticks(budgets)
        ax.set_xticklabels([str(b) for b in budgets])
        ax.set_yscale("log")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("trials")
        ax.set_ylabel("best latency so far (us)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    fig.suptitle(
        "Best latency vs trials: thick = re-measured side by side, dotted = tuning-time run_secs",
        fontsize=10,
    )
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return path


def plot_skipped_note() -> str | None:
    """Why figures cannot be drawn here (matplotlib missing), or ``None`` when they can."""
    return skipped_note("plot", PLOT_MODULES)
