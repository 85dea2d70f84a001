"""The online benchmark's summary and tables: points per budget, latency ratios to stock XGB,
trials to match its reference budget, and the plain-text tables ``ms-meta bench --online``
prints.

Pure functions of the result dictionary (no TVM), so that a recorded ``online.json`` can be
summarized and printed again anywhere.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from ms_meta.bench.online.history import step_at
from ms_meta.bench.online.plan import REFERENCE_MODEL

__all__ = ["format_tables", "geomean", "summarize", "wall_at"]


def geomean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Points, ratios and trials-to-match from ``result["runs"]`` and ``result["latency"]``.

    Every latency here is a re-measured one; the tuning-time database value of each point is
    kept beside it as ``db_secs``. Fills ``result["points"]`` and ``result["summary"]`` and
    returns ``result``.
    """
    latency = result["latency"]
    ref_budget = result["config"]["xgb_budget"]
    tolerance = result["config"]["match_tolerance"]
    points = []
    for run in result["runs"]:
        for budget in run["budgets"]:
            step = step_at(run["staircase"], budget)
            measured = latency.get(step["key"], {}) if step else {}
            points.append(
                {
                    "task": run["task"],
                    "model": run["model"],
                    "budget": budget,
                    "run_trials": run["max_trials"],
                    "trials_available": run["trials"],
                    "best_trial": step["trial"] if step else None,
                    "db_secs": step["db_secs"] if step else None,
                    "secs": measured.get("secs"),
                    "key": step["key"] if step else None,
                    "wall_seconds": wall_at(run, budget),
                }
            )
    by_point = {(p["task"], p["model"], p["budget"]): p for p in points}
    for p in points:
        same = by_point.get((p["task"], REFERENCE_MODEL, p["budget"]))
        ref = by_point.get((p["task"], REFERENCE_MODEL, ref_budget))
        p["ratio_vs_xgb"] = _ratio(p["secs"], same["secs"]) if same else None
        p["ratio_vs_xgb_ref"] = _ratio(p["secs"], ref["secs"]) if ref else None
    tasks = list(dict.fromkeys(r["task"] for r in result["runs"]))
    summary: dict[str, Any] = {
        "geomean_vs_xgb": {},
        "geomean_vs_xgb_ref": {},
        "trials_to_match": {},
        "trials_to_match_db": {},
    }
    for model in dict.fromkeys(p["model"] for p in points):
        for budget in sorted({p["budget"] for p in points if p["model"] == model}):
            rows = [by_point.get((t, model, budget)) for t in tasks]
            rows = [r for r in rows if r is not None]
            label = f"{model}@{budget}"
            summary["geomean_vs_xgb"][label] = _geo_entry([r["ratio_vs_xgb"] for r in rows])
            summary["geomean_vs_xgb_ref"][label] = _geo_entry([r["ratio_vs_xgb_ref"] for r in rows])
    for run in result["runs"]:
        ref = by_point.get((run["task"], REFERENCE_MODEL, ref_budget))
        match = _trials_to_match(run, latency, ref, tolerance)
        summary["trials_to_match"].setdefault(run["model"], {})[run["task"]] = match[0]
        summary["trials_to_match_db"].setdefault(run["model"], {})[run["task"]] = match[1]
    summary["one_shot_searches"] = _one_shot_searches(result["runs"], by_point, ref_budget)
    result["points"] = points
    result["summary"] = summary
    return result


def _one_shot_searches(runs, by_point, ref_budget: int) -> dict[str, Any]:
    """Per One-Shot weights label with more than one search: the geomean ratio to xgb@N over
    every pick (all tasks and searches), each search's geomean over the tasks, and each
    task's geomean over the searches."""
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    if not any(by_point.get((t, REFERENCE_MODEL, ref_budget)) for t in tasks):
        return {}  # no xgb@N point: no ratio to summarize
    searches: dict[str, list[str]] = {}
    for run in runs:
        if run["max_trials"] == 0:
            base = run["model"].partition("#")[0]
            searches.setdefault(base, [])
            if run["model"] not in searches[base]:
                searches[base].append(run["model"])
    out = {}
    for base, labels in searches.items():
        if len(labels) < 2:
            continue
        ratio = {
            (task, label): (by_point.get((task, label, 0)) or {}).get("ratio_vs_xgb_ref")
            for task in tasks
            for label in labels
        }
        picks = [r for r in ratio.values() if r is not None]
        out[base] = {
            "searches": len(labels),
            "picks": len(picks),
            "geomean": geomean(picks),
            "per_search": {
                label: geomean([r for t in tasks if (r := ratio[t, label]) is not None])
                for label in labels
            },
            "per_task": {
                task: geomean([r for lab in labels if (r := ratio[task, lab]) is not None])
                for task in tasks
            },
        }
    return out


def _geo_entry(ratios: Sequence[float | None]) -> dict[str, Any]:
    present = [r for r in ratios if r is not None]
    return {"geomean": geomean(present), "tasks": len(present)}


def wall_at(run: dict[str, Any], budget: int) -> float | None:
    """Tuning seconds until the batch that completed ``budget`` trials (the whole run when it
    ended earlier; the run's wall time for a zero-trial run)."""
    if run["max_trials"] == 0 or not run.get("batches"):
        return run.get("wall_seconds")
    for done, seconds in run["batches"]:
        if done >= budget:
            return seconds
    return run["batches"][-1][1]


def _trials_to_match(run, latency, ref, tolerance) -> tuple[int | None, int | None]:
    """First trial whose best schedule is within ``tolerance`` of xgb@N: by re-measured latency,
    and by the database's ``run_secs`` (whose values come from different times of the run)."""
    if ref is None or ref["secs"] is None:
        return None, None
    measured = next(
        (
            s["trial"]
            for s in run["staircase"]
            if (lat := latency.get(s["key"], {}).get("secs")) is not None
            and lat <= ref["secs"] * (1 + tolerance)
        ),
        None,
    )
    by_db = None
    if ref["db_secs"] is not None:
        by_db = next(
            (
                s["trial"]
                for s in run["staircase"]
                if s["db_secs"] <= ref["db_secs"] * (1 + tolerance)
            ),
            None,
        )
    return measured, by_db


def _us(secs: float | None) -> str:
    return "-" if secs is None else f"{secs * 1e6:,.1f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.3f}"


def format_tables(result: dict[str, Any]) -> str:
    """The benchmark's tables as plain text (what ``ms-meta bench --online`` prints)."""
    ref = result["reference"]
    tasks = list(dict.fromkeys(r["task"] for r in result["runs"]))
    points = {(p["task"], p["model"], p["budget"]): p for p in result["points"]}
    labels = list(dict.fromkeys(f"{p['model']}@{p['budget']}" for p in result["points"]))
    width = max([len(t) for t in tasks] + [24])
    # model labels grow with weights names (one-shot:NAME@0)
    lw = max([len(label) for label in labels] + [len(r["model"]) for r in result["runs"]] + [16])
    lines = ["Which run each point comes from:"]
    lines += [f"  {note}" for note in result["notes"]]
    for item in result.get("skipped", []):
        lines.append(f"  skipped {item['model']}: {item['reason']}")
    lines += [f"  {line}" for line in _model_lines(result)]
    library = result["config"].get("one_shot_library")
    if library:
        lines.append(f"  one-shot picks among the transferred schedules of {library['path']} "
                     f"(sha256 {library['sha256']})")  # fmt: skip
    lines.append("")
    remeasured = result.get("remeasure", {})
    lines.append(
        f"Re-measured best latency (us; one process, {remeasured.get('rounds', '?')} "
        f"interleaved rounds, per round the fastest of {remeasured.get('repeat', '?')} "
        "repeats, median over rounds):"
    )
    cw = {label: max(16, len(label)) for label in labels}
    lines.append(f"  {'task':{width}s} " + " ".join(f"{lab:>{cw[lab]}s}" for lab in labels))
    for task in tasks:
        cells = []
        for label in labels:
            model, budget = label.rsplit("@", 1)
            p = points.get((task, model, int(budget)))
            cells.append(f"{_us(p['secs'] if p else None):>{cw[label]}s}")
        lines.append(f"  {task:{width}s} " + " ".join(cells))
    for title, column, key in (
        (
            "Latency ratio to stock xgb at the same budget (< 1: faster than xgb)",
            "ratio_vs_xgb",
            "geomean_vs_xgb",
        ),
        (
            f"Latency ratio to {ref} (< 1: faster than {ref})",
            "ratio_vs_xgb_ref",
            "geomean_vs_xgb_ref",
        ),
    ):
        lines += ["", f"{title}:"]
        lines.append(
            f"  {'model@budget':{lw}s} "
            + " ".join(f"{t[:14]:>14s}" for t in tasks)
            + f" {'geomean':>9s}"
        )
        for label in labels:
            model, budget = label.rsplit("@", 1)
            cells = [
                _x(points[(t, model, int(budget))][column])
                if (t, model, int(budget)) in points
                else "-"
                for t in tasks
            ]
            geo = result["summary"][key].get(label, {})
            lines.append(
                f"  {label:{lw}s} "
                + " ".join(f"{c:>14s}" for c in cells)
                + f" {_x(geo.get('geomean')):>9s}"
            )
    repeated = result["summary"].get("one_shot_searches") or {}
    if repeated:
        lines += [
            "",
            f"One-Shot over repeated searches (seeds seed, seed + 1, ...): latency ratio to {ref}, "
            "geomean over every pick; each search's geomean over the tasks; each task's geomean "
            "over the searches:",
        ]
        for base, entry in repeated.items():
            per_search = [v for v in entry["per_search"].values() if v is not None]
            span = f"{min(per_search):.3f}-{max(per_search):.3f}" if per_search else "-"
            lines.append(
                f"  {base:{lw}s} {_x(entry['geomean'])} over {entry['picks']} picks "
                f"({entry['searches']} searches); single searches {span}"
            )
            lines.append(
                f"  {'':{lw}s} per task: "
                + ", ".join(f"{t[:20]} {_x(v)}" for t, v in entry["per_task"].items())
            )
    tolerance = result["config"]["match_tolerance"]
    lines += [
        "",
        f"Trials needed to reach {ref} (re-measured best within {tolerance:.0%}; "
        "in brackets the same from tuning-time run_secs; '-' = not within the run):",
    ]
    lines.append(f"  {'model':{lw}s} " + " ".join(f"{t[:14]:>14s}" for t in tasks))
    for model, per_task in result["summary"]["trials_to_match"].items():
        db = result["summary"]["trials_to_match_db"].get(model, {})
        cells = [f"{_n(per_task.get(t))} [{_n(db.get(t))}]" for t in tasks]
        lines.append(f"  {model:{lw}s} " + " ".join(f"{c:>14s}" for c in cells))
    lines += [
        "",
        "Tuning wall time (s) until the batch holding each budget's last trial completed; "
        "in brackets the seconds spent inside the cost model over the whole run:",
    ]
    lines.append(
        f"  {'task':{width}s} {'model':{lw}s} "
        + " ".join(f"{b:>8d}" for b in sorted({p["budget"] for p in result["points"]}))
    )
    all_budgets = sorted({p["budget"] for p in result["points"]})
    for run in result["runs"]:
        cells = [
            f"{wall_at(run, b):8.0f}" if b in run["budgets"] else f"{'':8s}" for b in all_budgets
        ]
        inside = run.get("model_seconds")
        extra = f" [{inside:.1f}]" if inside is not None else ""
        reused = " (reused)" if run.get("reused") else ""
        lines.append(
            f"  {run['task']:{width}s} {run['model']:{lw}s} " + " ".join(cells) + extra + reused
        )
    spreads = [v["spread"] for v in result["latency"].values() if v.get("spread") is not None]
    errors = [k for k, v in result["latency"].items() if v.get("error")]
    if spreads:
        load = [x for x in remeasured.get("load_average", []) if x is not None]
        lines += [
            "",
            f"Re-measurement: {len(result['latency'])} schedules, median round-to-"
            f"round spread {statistics.median(spreads):.1%}, worst {max(spreads):.1%}"
            + (f"; {len(errors)} failed to build/run" if errors else "")
            + (
                f"; load average {max(load):.1f} on {remeasured.get('cores')} logical cores"
                if load
                else ""
            ),
        ]
    return "\n".join(lines)


def _model_lines(result: dict[str, Any]) -> list[str]:
    """What each learned model started from, once per model label (``meta:NAME``)."""
    named = result["config"].get("named_weights") or {}
    lines = {}
    for run in result["runs"]:
        info = run.get("model_info") or {}
        label = run["model"]
        model, _, name = label.partition(":")
        if model == "meta" and "pretrained" in info:
            lines[label] = (
                f"{label}: MetaCostModel with weights {info.get('weights_source')}"
                if info["pretrained"]
                else f"{label}: MetaCostModel WITHOUT pre-trained weights (none shipped or given)"
            )
        elif model == "one-shot" and name in named:
            lines[label] = f"{label}: One-Shot with weights {(named[name] or {}).get('path')}"
        elif run["model"] == "xgb-pretrained" and "pretrained_samples" in info:
            lines["xgb-pretrained"] = (
                f"xgb-pretrained: XGBModel.load({result['config']['xgb_pretrained']}), "
                f"{info['pretrained_samples']} pre-training samples"
            )
    return list(lines.values())


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
