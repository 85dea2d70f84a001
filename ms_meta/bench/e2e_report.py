"""Figures of the end-to-end benchmark from its raw samples: latency summaries, per-round
ratios to the fastest anchor, the text table and the bar chart.

Kept apart from the process orchestration (:mod:`ms_meta.bench.e2e`) so that a result JSON
can be summarized and plotted again without running anything; matplotlib is optional.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.atomic import atomic_write

__all__ = ["fastest_anchor", "format_table", "plot_result", "round_ratios", "summarize"]


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """Median, p10/p90, quartiles, min/max and mean of latency samples, in milliseconds."""
    values = np.asarray(samples_s, dtype=np.float64) * 1e3
    if values.size == 0:
        return {"runs": 0}
    p10, q1, median, q3, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    return {
        "runs": int(values.size),
        "median_ms": float(median),
        "p10_ms": float(p10),
        "p90_ms": float(p90),
        "q1_ms": float(q1),
        "q3_ms": float(q3),
        "iqr_ms": float(q3 - q1),
        "min_ms": float(values.min()),
        "max_ms": float(values.max()),
        "mean_ms": float(values.mean()),
    }


def fastest_anchor(contenders: dict[str, dict[str, Any]], anchors: Sequence[str]) -> str | None:
    """The anchor with the lowest median latency among those timed with correct outputs; None
    when no anchor was timed."""
    timed = {
        name: entry["latency"]["median_ms"]
        for name, entry in contenders.items()
        if name in anchors and entry.get("numerics_ok") and entry.get("latency", {}).get("runs")
    }
    return min(timed, key=timed.get) if timed else None


def round_ratios(
    round_medians: dict[str, list[float | None]], reference: str
) -> dict[str, dict[str, Any]]:
    """Per contender, its median latency over ``reference``'s in each round (both timed in the
    same round, minutes apart at most), and the median, minimum and maximum of those ratios.

    A ratio above 1 is slower than the reference. Rounds in which either was not timed are left
    out.
    """
    base = round_medians.get(reference, [])
    ratios: dict[str, dict[str, Any]] = {}
    for name, medians in round_medians.items():
        per_round = [
            m / b
            for m, b in zip(medians, base, strict=False)
            if m is not None and b is not None and b > 0
        ]
        if not per_round:
            continue
        ratios[name] = {
            "median": float(np.median(per_round)),
            "min": float(min(per_round)),
            "max": float(max(per_round)),
            "per_round": [round(r, 4) for r in per_round],
        }
    return ratios


def _cell(value, width: int, spec: str) -> str:
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}s}"


def _ratio(value: float) -> str:
    """A latency ratio with two decimals (three significant digits below 0.1, none above 100)."""
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"


def format_table(result: dict[str, Any]) -> str:
    """The benchmark result as a plain-text table, one row per contender."""
    anchor = result.get("fastest_anchor")
    header = (
        f"{'contender':16s} {'compile s':>9s} {'median ms':>10s} {'p10-p90 ms':>16s} "
        f"{'min-max ms':>16s} {'x ' + (anchor or 'anchor'):>16s} {'ratio range':>12s} "
        f"{'max abs diff':>12s} {'others':>6s}"
    )
    meta = result["machine"]
    lines = [
        f"{result['network']}: {meta.get('cpu_model') or '?'} (LLVM {meta.get('llvm_cpu') or '?'}),"
        f" {result['threads']} threads, {result['rounds']} rounds x {result['runs']} runs "
        f"(+{result['warmup']} warm-up) per contender, {result['created'][:10]}, "
        f"commit {(result.get('git_commit') or '?')[:10]}",
        header,
    ]
    for name, entry in result["contenders"].items():
        if "skipped" in entry or "failed" in entry:
            why = entry.get("skipped") or entry.get("failed")
            lines.append(f"{name:16s} {'skipped' if 'skipped' in entry else 'FAILED'}: {why}")
            continue
        lat = entry.get("latency", {})
        ratio = entry.get("ratio_to_fastest_anchor") or {}
        spread = f"{_ratio(ratio['min'])}-{_ratio(ratio['max'])}" if ratio else "-"
        p10_p90 = f"{lat['p10_ms']:.2f}-{lat['p90_ms']:.2f}" if lat.get("runs") else "-"
        min_max = f"{lat['min_ms']:.2f}-{lat['max_ms']:.2f}" if lat.get("runs") else "-"
        median_ratio = _ratio(ratio["median"]) if ratio else "-"
        diff = entry.get("max_abs_diff")
        flag = "" if entry.get("numerics_ok") else "  WRONG OUTPUT"
        foreign = [r["foreign_cores"] for r in entry.get("rounds", [])
                   if r.get("foreign_cores") is not None]  # fmt: skip
        others = max(foreign) if foreign else None
        lines.append(
            f"{name:16s} {_cell(entry.get('compile_seconds'), 9, '.1f')} "
            f"{_cell(lat.get('median_ms'), 10, '.2f')} {p10_p90:>16s} {min_max:>16s} "
            f"{median_ratio:>16s} {spread:>12s} {_cell(diff, 12, '.1e')} "
            f"{_cell(others, 6, '.2f')}{flag}"
        )
    if anchor:
        lines.append(
            f"x {anchor}: median over rounds of (contender median / {anchor} median in the same "
            "round); above 1 is slower"
        )
    lines.append(
        "others: the most cores other processes took while a timing process of that contender "
        "ran (Linux accounting); above about 0.25 the figures are disturbed"
    )
    for name, entry in result["contenders"].items():
        if entry.get("tasks") is not None and name.startswith("one-shot"):
            confidence = entry.get("confidence") or {}
            sure = ", ".join(f"{label} {n}" for label, n in confidence.items() if n)
            lines.append(
                f"{name}: {entry.get('tasks_from_library')} of {entry['tasks']} tasks from the "
                f"schedule library, {entry.get('measurements', 0)} measurements "
                f"({entry.get('measurements_per_task', 0):.1f} per task)"
                + (f"; confidence: {sure}" if sure else "")
            )
        if name == "xgb" and entry.get("trials") is not None:
            how = (
                f"database {entry['reused_database']} (tuned in an earlier run)"
                if entry.get("reused_database")
                else f"{entry.get('trials_per_task')} trials per task"
            )
            lines.append(f"xgb: {entry['trials']} records, {how}")
    if result.get("numerics_failures"):
        lines.append(f"WRONG OUTPUTS: {', '.join(result['numerics_failures'])}")
    return "\n".join(lines)


_COLORS = {"tvm": "tab:green", "torch": "tab:orange", "onnxruntime": "tab:blue"}


def plot_result(result: dict[str, Any], path: Path) -> Path | None:
    """A bar chart of median latency (p10-p90 whiskers) per contender, with compile times in
    the labels; None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = [n for n, e in result["contenders"].items() if e.get("latency", {}).get("runs")]
    if not names:
        return None
    entries = [result["contenders"][n] for n in names]
    medians = [e["latency"]["median_ms"] for e in entries]
    lower = [e["latency"]["median_ms"] - e["latency"]["p10_ms"] for e in entries]
    upper = [e["latency"]["p90_ms"] - e["latency"]["median_ms"] for e in entries]
    colors = [_COLORS.get(e.get("runtime"), "tab:gray") for e in entries]
    labels = []
    for name, entry in zip(names, entries, strict=True):
        compile_s = entry.get("compile_seconds")
        label = name if compile_s is None else f"{name}\n(compile {compile_s:.0f} s)"
        labels.append(label + ("\nWRONG OUTPUT" if not entry.get("numerics_ok") else ""))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4.8))
    x = np.arange(len(names))
    ax.bar(x, medians, yerr=[lower, upper], capsize=4, color=colors)
    for i, entry in enumerate(entries):
        ax.text(i, entry["latency"]["p90_ms"], f"{medians[i]:.2f} ms", ha="center",
                va="bottom", fontsize=8)  # fmt: skip
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("latency (ms): median, p10-p90 whiskers")
    meta = result["machine"]
    ax.set_title(
        f"{result['network']}: {meta.get('cpu_model') or '?'}, {result['threads']} threads, "
        f"{result['rounds']}x{result['runs']} runs ({result['created'][:10]})",
        fontsize=9,
    )
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
