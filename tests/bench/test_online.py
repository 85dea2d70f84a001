"""The online benchmark: prefix budgets, re-measured ratios, tables, plot, resume, CLI."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import statistics
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ms_meta.bench.online import (
    DEFAULT_TASKS,
    MODELS,
    REFERENCE_MODEL,
    RUN_FILE,
    OnlineConfig,
    format_tables,
    one_shot_available,
    parse_weights,
    plan_runs,
    prefix_is_exact,
    staircase,
    step_at,
    summarize,
)
from ms_meta.bench.plots import plot_convergence
from ms_meta.cli.main import cli
from ms_meta.data.records import Record
from ms_meta.errors import MsMetaError

from ..conftest import RECORDS_ROOT

# Written by the harness: `ms-meta bench --online --tasks dense_128_3072_768 --budgets 8,16
# --xgb-budget 32` on a 2-core rocketlake machine, 2026-11-22.
RECORDED = Path(__file__).parent / "data" / "online_smoke.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def plotting():
    """The figures need matplotlib, of the optional bench extra (skipped without it)."""
    return pytest.importorskip("matplotlib")


# --------------------------------------------------------------------------------------------
# Plan and prefix logic
# --------------------------------------------------------------------------------------------


def _pick_with_eps_greedy(num: int, bests: list[str], rands: list[str], eps: float) -> list[str]:
    """MetaSchedule's PickWithEpsGreedy (evolutionary_search.cc), minus the de-duplication
    against measured schedules (the candidates here are all new)."""
    num_bests = num - int(num * eps)
    picks, i_best, i_rand = [], 0, 0
    for i in range(num):
        has_best, has_rand = i_best < len(bests), i_rand < len(rands)
        if (i < num_bests and has_best) or (i >= num_bests and not has_rand and has_best):
            picks.append(bests[i_best])
            i_best += 1
        elif has_rand:
            picks.append(rands[i_rand])
            i_rand += 1
        else:
            break
    return picks


def test_prefix_is_exact_agrees_with_a_simulation_of_the_last_batch():
    ranked = [f"best{i}" for i in range(64)]  # the evolved candidates, best score first
    rands = [f"rand{i}" for i in range(64)]  # the random unmeasured ones, in sampled order
    for per_iter in range(1, 41):
        for budget in range(1, 3 * per_iter):
            k = budget % per_iter or per_iter
            # a clipped batch keeps a heap of k: the top k of the same ranking
            clipped = _pick_with_eps_greedy(k, ranked[:k], rands, 0.05)
            full = _pick_with_eps_greedy(per_iter, ranked[:per_iter], rands, 0.05)[:k]
            assert prefix_is_exact(budget, per_iter) == (clipped == full), (budget, per_iter)
    assert all(prefix_is_exact(b, 16) for b in range(1, 300))


def test_plan_reads_every_budget_of_a_model_from_one_run(tmp_path):
    xgb_file = tmp_path / "xgb.tar"
    xgb_file.write_bytes(b"not read by plan_runs")
    config = OnlineConfig(budgets=(32, 16, 64, 16), xgb_budget=256, xgb_pretrained=xgb_file)
    plans, skipped = plan_runs(config.checked())
    by_model = {p.model: p for p in plans}
    assert by_model["xgb"].budgets == (16, 32, 64, 256) and by_model["xgb"].max_trials == 256
    assert by_model["meta"].budgets == (16, 32, 64) and by_model["meta"].max_trials == 64
    assert by_model["xgb-pretrained"].max_trials == 64
    has_one_shot, why = one_shot_available()
    assert ("one-shot" in by_model) == has_one_shot
    assert [s["model"] for s in skipped] == ([] if has_one_shot else ["one-shot"])
    assert all(s["reason"] for s in skipped) and (has_one_shot or why)


def test_xgb_pretrained_row_is_skipped_without_a_file():
    plans, skipped = plan_runs(OnlineConfig(models=("xgb", "xgb-pretrained")).checked())
    assert [p.model for p in plans] == ["xgb"]
    assert skipped == [{"model": "xgb-pretrained", "reason": "no --xgb-pretrained file given"}]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": ("meta",)}, "'xgb' must be among the models"),
        ({"models": ("xgb", "lightgbm")}, "unknown model"),
        ({"budgets": (0, 16)}, "positive trial counts"),
        ({"tasks": ("conv2d_nchw:1,2",)}, "expected 9 fields"),
        ({"xgb_pretrained": Path("/nonexistent/xgb.tar")}, "file not found"),
    ],
)
def test_bad_configurations_are_clear_errors(change, message):
    with pytest.raises(MsMetaError, match=message):
        OnlineConfig(**change).checked()


@pytest.mark.parametrize(
    "values, expected",
    [
        ((), ((None, "default"),)),
        (("default",), ((None, "default"),)),
        (("w/a.pt",), ((None, "w/a.pt"),)),
        (("ft=w/a.pt",), (("ft", "w/a.pt"),)),
        (("ft=w/a.pt", "rl_2-b=default"), (("ft", "w/a.pt"), ("rl_2-b", "default"))),
    ],
)
def test_parse_weights_named_and_unnamed(values, expected):
    assert parse_weights(values) == expected


@pytest.mark.parametrize(
    "values, message",
    [
        (("w/a.pt", "rl=b.pt"), "has no name"),
        (("ft=a.pt", "default"), "has no name"),
        (("a.pt", "b.pt"), "has no name"),
        (("ft=a.pt", "ft=b.pt"), "ft given twice"),
        (("f t=a.pt",), "letters, digits"),
        (("meta:ft=a.pt",), "letters, digits"),
        (("=a.pt",), "letters, digits"),
        (("ft=",), "no path after '='"),
    ],
)
def test_parse_weights_rejects_bad_values(values, message):
    with pytest.raises(MsMetaError, match=message):
        parse_weights(values)


def test_named_weights_are_checked(tmp_path):
    weights = tmp_path / "ft.pt"
    weights.write_bytes(b"checkpoint")
    good = OnlineConfig(named_weights=(("ft", weights), ("rl", "default"))).checked()
    assert good.weight_sets() == (("ft", weights), ("rl", "default"))
    assert OnlineConfig(weights=weights).checked().weight_sets() == ((None, weights),)
    for named, message in [
        ((("ft", weights), ("ft", "default")), "unique; ft given twice"),
        ((("f.t", weights),), "letters, digits"),
        ((("ft", weights), ("rl", tmp_path / "missing.pt")), r"not found \(rl\)"),
    ]:
        with pytest.raises(MsMetaError, match=message):
            OnlineConfig(named_weights=named).checked()
    with pytest.raises(MsMetaError, match="not both"):
        OnlineConfig(weights=weights, named_weights=(("ft", weights),)).checked()


def test_plan_runs_meta_and_one_shot_once_per_named_weights(tmp_path):
    ft, rl = tmp_path / "ft.pt", tmp_path / "rl.pt"
    ft.write_bytes(b"ft")
    rl.write_bytes(b"rl")
    config = OnlineConfig(budgets=(16, 32), named_weights=(("ft", ft), ("rl", rl))).checked()
    plans, _ = plan_runs(config)
    has_one_shot = one_shot_available()[0]
    expected = ["xgb", "meta:ft", "meta:rl"] + (["one-shot:ft", "one-shot:rl"] * has_one_shot)
    assert [p.label for p in plans] == expected
    by_label = {p.label: p for p in plans}
    assert by_label["xgb"].weights is None and by_label["xgb"].dir_name == "xgb"
    for name, weights in (("ft", ft), ("rl", rl)):
        meta = by_label[f"meta:{name}"]
        assert (meta.model, meta.weights, meta.dir_name) == ("meta", weights, f"meta.{name}")
        assert (meta.max_trials, meta.budgets) == (32, (16, 32))
        assert f"meta:{name}@16, meta:{name}@32" in meta.describe()
        if has_one_shot:
            one_shot = by_label[f"one-shot:{name}"]
            assert (one_shot.model, one_shot.weights) == ("one-shot", weights)
            assert (one_shot.dir_name, one_shot.max_trials) == (f"one-shot.{name}", 0)
    # unnamed weights: the labels and run folders of before
    plans, _ = plan_runs(OnlineConfig(weights=ft).checked())
    unnamed = [p for p in plans if p.model in ("meta", "one-shot")]
    assert [(p.label, p.dir_name, p.weights) for p in unnamed] == [
        (m, m, ft) for m in ("meta", "one-shot")[: 1 + has_one_shot]
    ]


@pytest.mark.skipif(not one_shot_available()[0], reason="ms_meta.one_shot does not import")
def test_repeated_one_shot_searches_get_own_labels_folders_and_seeds(tmp_path, target):
    from ms_meta.bench.online.run import _fingerprint

    ft = tmp_path / "ft.pt"
    ft.write_bytes(b"ft")
    config = OnlineConfig(
        tasks=(TINY,), budgets=(16,), named_weights=(("ft", ft),), one_shot_searches=3, seed=7
    ).checked()
    plans, _ = plan_runs(config)
    assert [p.label for p in plans] == ["xgb", "meta:ft", "one-shot:ft", "one-shot:ft#2",
                                        "one-shot:ft#3"]  # fmt: skip
    one_shot = [p for p in plans if p.model == "one-shot"]
    assert [p.dir_name for p in one_shot] == ["one-shot.ft", "one-shot.ft.search2",
                                              "one-shot.ft.search3"]  # fmt: skip
    assert {p.weights_label for p in one_shot} == {"one-shot:ft"}
    seeds = [_fingerprint(TINY, p, config, target)["seed"] for p in plans]
    assert seeds == [7, 7, 7, 8, 9]  # the first search's fingerprint is that of a single one
    assert "search 3 (seed + 2)" in one_shot[2].describe()
    unnamed = plan_runs(OnlineConfig(tasks=(TINY,), one_shot_searches=2).checked())[0]
    unnamed_dirs = [p.dir_name for p in unnamed if p.model == "one-shot"]
    assert unnamed_dirs == ["one-shot", "one-shot.search2"]
    with pytest.raises(MsMetaError, match="one_shot_searches"):
        OnlineConfig(one_shot_searches=0).checked()


def test_unnamed_fingerprint_is_unchanged_and_names_do_not_enter_it(tmp_path, target):
    from ms_meta.bench.online.run import _fingerprint
    from ms_meta.tuning.target import target_summary

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    config = OnlineConfig(tasks=(TINY,), weights=weights).checked()
    plans, _ = plan_runs(config)
    # the dicts the benchmark wrote before named weights existed: old work dirs stay valid
    identity = {
        "path": str(weights.resolve()),
        "sha256": hashlib.sha256(b"weights").hexdigest()[:16],
    }
    for plan in plans:
        assert _fingerprint(TINY, plan, config, target) == {
            "format": 1,
            "task": TINY,
            "model": plan.model,
            "num_trials_per_iter": 16,
            "population_size": 512,
            "seed": 0,
            "model_file": None if plan.model == "xgb" else identity,
            "target": target_summary(target),
        }
    default = OnlineConfig(tasks=(TINY,)).checked()
    meta = next(p for p in plan_runs(default)[0] if p.model == "meta")
    assert _fingerprint(TINY, meta, default, target)["model_file"] == {"path": "default"}
    named = OnlineConfig(tasks=(TINY,), named_weights=(("ft", weights),)).checked()
    named_meta = next(p for p in plan_runs(named)[0] if p.model == "meta")
    unnamed_meta = next(p for p in plans if p.model == "meta")
    assert named_meta.dir_name != unnamed_meta.dir_name
    assert _fingerprint(TINY, named_meta, named, target) == _fingerprint(
        TINY, unnamed_meta, config, target
    )


def test_default_tasks_are_held_out_and_of_four_operator_kinds():
    from ms_meta.data.split import read_split
    from ms_meta.workloads import resolve_one

    split = read_split(RECORDS_ROOT / "llvm-rocketlake-2c" / "split.json")
    assert set(DEFAULT_TASKS) <= set(split["held_out"])
    assert len({resolve_one(t).op for t in DEFAULT_TASKS}) == len(DEFAULT_TASKS) == 4


def _record(line: int, secs: float | None) -> Record:
    return Record(trace=[[], []], run_secs=None if secs is None else [secs, secs], target=None,
                  args_info=None, line=line)  # fmt: skip


def test_staircase_keeps_the_improvements_in_trial_order():
    seconds = [None, 5.0, 7.0, 4.0, 4.0, 1e10, 2.0, 3.0]  # None: no run_secs; 1e10: failed
    records = [_record(i + 1, s) for i, s in enumerate(seconds)]
    steps = staircase(records)
    assert [(s.trial, s.db_secs) for s in steps] == [(2, 5.0), (4, 4.0), (7, 2.0)]
    assert step_at(steps, 1) is None
    assert step_at(steps, 3).trial == 2 and step_at(steps, 6).trial == 4
    assert step_at(steps, 100).trial == 7
    zero = staircase(records, zero_trials=True)
    assert [(s.trial, s.db_secs) for s in zero] == [(0, 2.0)]


# --------------------------------------------------------------------------------------------
# Summary, tables and plot on a result the harness recorded
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(RECORDED.read_text())


def _points(result: dict) -> dict:
    return {(p["task"], p["model"], p["budget"]): p for p in result["points"]}


def test_recorded_summary_is_what_summarize_computes(recorded):
    raw = {k: v for k, v in copy.deepcopy(recorded).items() if k not in ("points", "summary")}
    fresh = summarize(raw)
    assert fresh["points"] == recorded["points"]
    assert fresh["summary"] == recorded["summary"]


def test_ratios_are_ratios_of_remeasured_latencies(recorded):
    points = _points(recorded)
    ref_budget = recorded["config"]["xgb_budget"]
    assert points, "the recorded result has no points"
    for (task, _model, budget), p in points.items():
        measured = recorded["latency"][p["key"]]
        assert p["secs"] == measured["secs"] == statistics.median(measured["round_secs"])
        ref = points[(task, REFERENCE_MODEL, ref_budget)]
        assert p["ratio_vs_xgb_ref"] == pytest.approx(p["secs"] / ref["secs"])
        same = points.get((task, REFERENCE_MODEL, budget))
        if same is None:
            assert p["ratio_vs_xgb"] is None
        else:
            assert p["ratio_vs_xgb"] == pytest.approx(p["secs"] / same["secs"])
    for label, entry in recorded["summary"]["geomean_vs_xgb_ref"].items():
        model, budget = label.rsplit("@", 1)
        ratios = [p["ratio_vs_xgb_ref"] for k, p in points.items() if k[1:] == (model, int(budget))]
        expected = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        assert entry["geomean"] == pytest.approx(expected) and entry["tasks"] == len(ratios)


def test_trials_to_match_come_from_the_remeasured_curve(recorded):
    ref_budget = recorded["config"]["xgb_budget"]
    tolerance = recorded["config"]["match_tolerance"]
    points = _points(recorded)
    for run in recorded["runs"]:
        ref = points[(run["task"], REFERENCE_MODEL, ref_budget)]["secs"]
        expected = None
        for step in run["staircase"]:
            if recorded["latency"][step["key"]]["secs"] <= ref * (1 + tolerance):
                expected = step["trial"]
                break
        assert recorded["summary"]["trials_to_match"][run["model"]][run["task"]] == expected
    # the reference run reaches its own end point by construction
    for task in {r["task"] for r in recorded["runs"]}:
        assert recorded["summary"]["trials_to_match"][REFERENCE_MODEL][task] <= ref_budget


def test_tables_show_every_point_and_the_prefix_notes(recorded):
    text = format_tables(recorded)
    for p in recorded["points"]:
        assert p["task"] in text and f"{p['model']}@{p['budget']}" in text
    assert f"Latency ratio to {recorded['reference']}" in text and "geomean" in text
    assert "exact prefix" in text
    for item in recorded["skipped"]:
        assert item["reason"] in text


def test_convergence_plot_is_a_png(recorded, tmp_path, plotting):
    import matplotlib.image

    path = plot_convergence(recorded, tmp_path / "sub" / "convergence.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 300 and height > 200


LONG_NAME = "rocketlake_split"


@pytest.fixture()
def named(recorded) -> dict:
    """The recorded result as if two named weights had run: meta:ft is the recorded meta run,
    meta:<LONG_NAME> the same run stopped after its second improvement; one-shot likewise."""
    result = {k: copy.deepcopy(v) for k, v in recorded.items() if k not in ("points", "summary")}
    result["config"]["named_weights"] = {
        "ft": {"path": "/w/ft.pt", "sha256": "0123456789abcdef"},
        LONG_NAME: {"path": "default"},
    }
    runs = []
    for run in result["runs"]:
        if run["model"] not in ("meta", "one-shot"):
            runs.append(run)
            continue
        for name in ("ft", LONG_NAME):
            copied = copy.deepcopy(run)
            copied["model"] = f"{run['model']}:{name}"
            if name == LONG_NAME and run["model"] == "meta":
                copied["staircase"] = copied["staircase"][:2]
            if run["model"] == "meta":
                copied["model_info"] = {"pretrained": True, "weights_source": f"{name}.pt"}
            runs.append(copied)
    result["runs"] = runs
    return summarize(result)


def test_summary_of_named_weights_keeps_each_label_apart(recorded, named):
    labels = ["xgb", "meta:ft", f"meta:{LONG_NAME}", "one-shot:ft", f"one-shot:{LONG_NAME}"]
    assert list(named["summary"]["trials_to_match"]) == labels
    assert {p["model"] for p in named["points"]} == set(labels)
    assert {f"meta:ft@{b}" for b in (8, 16)} <= set(named["summary"]["geomean_vs_xgb_ref"])
    before, after = _points(recorded), _points(named)
    for (task, model, budget), p in before.items():
        if model in ("meta", "one-shot"):
            # meta:ft is the recorded meta run under another label: the same figures
            assert after[(task, f"{model}:ft", budget)] | {"model": model} == p
    # the shortened run keeps its own best schedule
    task, short = named["runs"][0]["task"], f"meta:{LONG_NAME}"
    run = next(r for r in named["runs"] if r["model"] == short)
    expected = named["latency"][run["staircase"][-1]["key"]]["secs"]
    assert after[(task, short, 16)]["secs"] == expected


def test_tables_show_named_weights_labels_in_full(named):
    text = format_tables(named)
    for p in named["points"]:
        assert f"  {p['model']}@{p['budget']} " in text  # never cut short or run into a cell
    assert "meta:ft: MetaCostModel with weights ft.pt" in text
    assert f"meta:{LONG_NAME}: MetaCostModel with weights {LONG_NAME}.pt" in text
    assert "one-shot:ft: One-Shot with weights /w/ft.pt" in text
    assert f"one-shot:{LONG_NAME}: One-Shot with weights default" in text
    trials = text.split("Trials needed to reach")[1].split("Tuning wall time")[0]
    assert [line.split()[0] for line in trials.strip().splitlines()[2:]] == list(
        named["summary"]["trials_to_match"]
    )


def test_convergence_plot_of_two_named_meta_runs(named, tmp_path, plotting):
    from ms_meta.bench.plots import _style

    assert plot_convergence(named, tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC
    names = ["ft", LONG_NAME]
    styles = [_style(label, names) for label in ("meta:ft", f"meta:{LONG_NAME}")]
    assert styles[0]["color"] != styles[1]["color"]
    assert styles[0]["linestyle"] != styles[1]["linestyle"]
    one_shot = [_style(label, names) for label in ("one-shot:ft", f"one-shot:{LONG_NAME}")]
    assert one_shot[0]["marker"] != one_shot[1]["marker"]
    colors = {s["color"] for s in styles + one_shot} | {_style("xgb", names)["color"]}
    assert len(colors) == 5
    # unnamed runs look as before
    assert _style("meta", [])["color"] == "tab:red" and _style("meta", [])["linestyle"] == "-"
    assert _style("one-shot", [])["color"] == "tab:purple"


@pytest.fixture()
def repeated(recorded) -> dict:
    """The recorded result as if One-Shot had searched three times: searches 2 and 3 picked
    schedules 2x and 0.5x as slow as the recorded pick (re-measured under their own keys)."""
    result = {k: copy.deepcopy(v) for k, v in recorded.items() if k not in ("points", "summary")}
    one_shot = next(r for r in result["runs"] if r["model"] == "one-shot")
    for search, factor in ((2, 2.0), (3, 0.5)):
        run = copy.deepcopy(one_shot)
        run["model"] = f"one-shot#{search}"
        for step in run["staircase"]:
            measured = copy.deepcopy(result["latency"][step["key"]])
            measured["secs"] *= factor
            step["key"] = f"{step['key']}/search{search}"
            result["latency"][step["key"]] = measured
        result["runs"].append(run)
    return summarize(result)


def test_repeated_one_shot_searches_are_summarized_over_every_pick(recorded, repeated):
    first = _points(recorded)[(recorded["runs"][0]["task"], "one-shot", 0)]["ratio_vs_xgb_ref"]
    entry = repeated["summary"]["one_shot_searches"]["one-shot"]
    assert (entry["searches"], entry["picks"]) == (3, 3)
    # the geomean of r, 2r and r/2 is r; each search's own geomean is its single pick's ratio
    assert entry["geomean"] == pytest.approx(first)
    assert list(entry["per_search"]) == ["one-shot", "one-shot#2", "one-shot#3"]
    assert [entry["per_search"][k] for k in entry["per_search"]] == pytest.approx(
        [first, 2 * first, 0.5 * first]
    )
    assert list(entry["per_task"].values()) == pytest.approx([first])
    assert recorded["summary"]["one_shot_searches"] == {}  # a single search: no such entry
    text = format_tables(repeated)
    assert "One-Shot over repeated searches" in text
    assert f"{first:.3f} over 3 picks (3 searches); single searches {0.5 * first:.3f}-" in text
    assert "One-Shot over repeated searches" not in format_tables(recorded)


def test_convergence_plot_of_repeated_searches(repeated, tmp_path, plotting):
    from ms_meta.bench.plots import _style

    assert plot_convergence(repeated, tmp_path / "r.png").read_bytes()[:8] == PNG_MAGIC
    assert _style("one-shot:ft#2", ["ft"]) == _style("one-shot:ft", ["ft"])


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_bench_help_lists_the_online_and_model_benchmarks():
    result = CliRunner().invoke(cli, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--online", "--budgets", "--xgb-pretrained", "--model", "--plot"):
        assert option in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--online", "--model", "resnet18"], "separate benchmarks"),
        (["--online", "--models", "meta"], "'xgb' must be among the models"),
        (["--online", "--budgets", "8,x"], "comma-separated integers"),
        (["--online", "--tasks", "dense:1,2"], "expected 3 fields"),
        (["--online", "--weights", "a.pt", "--weights", "rl=b.pt"], "has no name"),
        (["--online", "--weights", "ft=a.pt", "--weights", "ft=b.pt"], "ft given twice"),
        (["--online", "--weights", "f/t=a.pt"], "letters, digits"),
        (["--online", "--weights", "ft=/nonexistent/ft.pt"], "not found (ft)"),
        (["--model", "resnet18", "--weights", "a=x.pt", "--weights", "b=y.pt"], "one --weights"),
    ],
)
def test_bad_online_options_fail_before_tuning(args, message, tmp_path):
    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["bench", *args, "--work-dir", str(tmp_path / "w")])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "w" / "runs").exists()
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize(
    "args, weights, named_weights",
    [
        ([], "default", ()),
        (["--weights", "w/a.pt"], "w/a.pt", ()),
        (["--weights", "ft=w/a.pt", "--weights", "rl=default"], "default",
         (("ft", "w/a.pt"), ("rl", "default"))),
    ],
)  # fmt: skip
def test_cli_weights_reach_the_online_config(args, weights, named_weights, monkeypatch):
    seen = []
    monkeypatch.setattr("ms_meta.cli.bench._online", lambda config, *rest: seen.append(config))
    result = CliRunner().invoke(cli, ["bench", "--online", *args])
    assert result.exit_code == 0, result.output
    assert (seen[0].weights, seen[0].named_weights) == (weights, named_weights)
    assert seen[0].one_shot_searches == 1


def test_cli_one_shot_searches_reach_the_online_config(monkeypatch):
    seen = []
    monkeypatch.setattr("ms_meta.cli.bench._online", lambda config, *rest: seen.append(config))
    result = CliRunner().invoke(cli, ["bench", "--online", "--one-shot-searches", "6"])
    assert result.exit_code == 0, result.output
    assert seen[0].one_shot_searches == 6
    result = CliRunner().invoke(cli, ["bench", "--online", "--one-shot-searches", "0"])
    assert result.exit_code == 2 and "--one-shot-searches" in result.output


def test_cli_model_benchmark_takes_the_path_of_one_weights(monkeypatch):
    seen = []
    monkeypatch.setattr("ms_meta.cli.bench._model", lambda *a, **kw: seen.append(kw["weights"]))
    for value, path in (("w/a.pt", "w/a.pt"), ("ft=w/b.pt", "w/b.pt"), (None, "default")):
        weights = ["--weights", value] if value else []
        result = CliRunner().invoke(cli, ["bench", "--model", "resnet18", *weights])
        assert result.exit_code == 0, result.output
        assert seen.pop() == path


def test_bench_help_has_a_named_weights_example():
    result = CliRunner().invoke(cli, ["bench", "--help"])
    assert "--weights ft=a.pt --weights rl=b.pt --work-dir runs/cmp" in result.output
    assert "[NAME=]default|PATH" in result.output


# --------------------------------------------------------------------------------------------
# The harness end to end on a tiny task (slow: real tuning runs)
# --------------------------------------------------------------------------------------------

TINY = "dense:16,16,16"


def _tiny_config(xgb_file: Path) -> OnlineConfig:
    return OnlineConfig(
        tasks=(TINY,), budgets=(4, 8), xgb_budget=8, models=MODELS, xgb_pretrained=xgb_file,
        weights="default", num_trials_per_iter=4, population_size=32, rounds=3, repeat=3,
        min_repeat_ms=5,
    )  # fmt: skip


def _write_pretrained_xgb(path: Path, target, sample_candidates) -> Path:
    """An XGBModel trained on eight measured random schedules of another shape, saved."""
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.builder import make_builder
    from ms_meta.tuning.measure import make_local_runner, measure

    context, candidates = sample_candidates("dense:32,32,32", 8, 5)
    results = measure(make_builder(), make_local_runner(), target, candidates)
    xgb = ms.cost_model.XGBModel(num_warmup_samples=0)
    xgb.update(context, candidates, results)
    xgb.save(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, target, sample_candidates):
    from ms_meta.bench.online import run_online_benchmark

    root = tmp_path_factory.mktemp("online")
    xgb_file = _write_pretrained_xgb(root / "xgb.tar", target, sample_candidates)
    config = _tiny_config(xgb_file)
    started = time.perf_counter()
    result = run_online_benchmark(config, root / "work", target=target)
    return config, root / "work", result, time.perf_counter() - started


def _record_lines(run_dir: Path) -> list[list]:
    lines = (run_dir / "database_tuning_record.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.slow
def test_harness_result_structure(tiny_run):
    config, work_dir, result, _ = tiny_run
    assert {"format", "config", "target", "reference", "notes", "skipped", "runs", "latency",
            "points", "summary"} <= set(result)  # fmt: skip
    assert json.loads((work_dir / "online.json").read_text()) == result
    expected_models = [m for m in MODELS if m != "one-shot" or one_shot_available()[0]]
    assert [r["model"] for r in result["runs"]] == expected_models
    assert result["reference"] == "xgb@8"
    labels = {f"{p['model']}@{p['budget']}" for p in result["points"]}
    assert {"xgb@4", "xgb@8", "xgb-pretrained@4", "xgb-pretrained@8", "meta@4",
            "meta@8"} <= labels  # fmt: skip
    pre = next(r for r in result["runs"] if r["model"] == "xgb-pretrained")
    assert pre["model_info"]["pretrained_samples"] > 0
    for run in result["runs"]:
        if run["max_trials"]:
            assert run["trials"] == 8 and run["valid_trials"] >= 6
            assert [done for done, _ in run["batches"]] == [4, 8]
            assert run["model_seconds"] > 0
    for entry in result["latency"].values():
        assert entry["error"] is None and len(entry["round_secs"]) == config.rounds
    assert set(result["summary"]["geomean_vs_xgb"]) == labels


@pytest.mark.slow
def test_harness_reads_smaller_budgets_as_prefixes_of_one_run(tiny_run):
    _, work_dir, result, _ = tiny_run
    for run in result["runs"]:
        if not run["max_trials"]:
            continue
        run_dir = Path(run["run_dir"])
        assert run_dir.parent.parent == work_dir / "runs"
        lines = _record_lines(run_dir)
        assert len(lines) == 8  # one run of 8 trials serves budgets 4 and 8
        means = [sum(r[1][1]) / len(r[1][1]) for r in lines]
        valid = [m if m < 1e9 else math.inf for m in means]
        for p in (p for p in result["points"] if p["model"] == run["model"]):
            assert p["run_trials"] == 8
            # the point's tuning-time latency is the best of the first `budget` lines
            assert p["db_secs"] == pytest.approx(min(valid[: p["budget"]]))
            assert p["best_trial"] <= p["budget"]
    assert any("first 4/8 trials of one 8-trial run" in n for n in result["notes"])


@pytest.mark.slow
def test_harness_ratios_use_remeasured_latencies(tiny_run):
    _, _, result, _ = tiny_run
    points = _points(result)
    for (task, _model, budget), p in points.items():
        assert p["secs"] == result["latency"][p["key"]]["secs"]
        same = points.get((task, REFERENCE_MODEL, budget))
        if same is not None:
            assert p["ratio_vs_xgb"] == pytest.approx(p["secs"] / same["secs"])
        ref = points[(task, REFERENCE_MODEL, 8)]
        assert p["ratio_vs_xgb_ref"] == pytest.approx(p["secs"] / ref["secs"])


@pytest.mark.slow
def test_harness_plot_and_tables(tiny_run, tmp_path, plotting):
    _, _, result, _ = tiny_run
    assert plot_convergence(result, tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC
    assert "dense_16_16_16" in format_tables(result)


def _tree_digest(work_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(work_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((work_dir / "runs").rglob("*"))
        if p.is_file() and p.name != RUN_FILE and "logs" not in p.parts
    }


@pytest.mark.slow
def test_resume_reuses_finished_runs_and_redoes_an_unfinished_one(tiny_run, target):
    from ms_meta.bench.online import run_online_benchmark

    config, work_dir, first, first_seconds = tiny_run
    before = _tree_digest(work_dir)
    started = time.perf_counter()
    again = run_online_benchmark(config, work_dir, target=target)
    assert all(r["reused"] for r in again["runs"])
    assert _tree_digest(work_dir) == before  # nothing was tuned again
    tuning = sum(r["wall_seconds"] for r in first["runs"])
    assert time.perf_counter() - started < tuning / 2 < first_seconds
    # a run without its run file was interrupted: it is tuned afresh, the others are reused
    meta_dir = work_dir / "runs" / "dense_16_16_16" / "meta"
    (meta_dir / RUN_FILE).unlink()
    third = run_online_benchmark(config, work_dir, target=target)
    reused = {r["model"]: r["reused"] for r in third["runs"]}
    assert reused.pop("meta") is False and all(reused.values())
    assert (meta_dir / RUN_FILE).is_file() and len(_record_lines(meta_dir)) == 8


@pytest.mark.slow
def test_cli_online_reuses_the_runs_and_writes_json_and_plot(tiny_run, tmp_path, plotting):
    config, work_dir, _, _ = tiny_run
    args = ["bench", "--online", "--tasks", TINY, "--budgets", "4,8", "--xgb-budget", "8",
            "--trials-per-iter", "4", "--population-size", "32", "--rounds", "2",
            "--xgb-pretrained", str(config.xgb_pretrained), "--work-dir", str(work_dir),
            "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "c.png")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(r["reused"] for r in report["runs"])
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC
    assert "Latency ratio to xgb@8" in result.output and "geomean" in result.output


def test_weights_of_another_cpu_only_with_any_cpu_weights(tmp_path):
    import tvm

    from ms_meta.bench.online import OnlineConfig
    from ms_meta.bench.online.run import _meta_cost_model
    from ms_meta.errors import WeightsError

    shipped = Path(__file__).resolve().parents[2] / "ms_meta" / "weights" / "llvm-rocketlake.pt"
    target = tvm.target.Target({"kind": "llvm", "mcpu": "icelake-server", "num-cores": 2})
    with pytest.raises(WeightsError, match="--any-cpu-weights"):
        _meta_cost_model(OnlineConfig(), target, shipped)
    model = _meta_cost_model(OnlineConfig(allow_other_cpu=True), target, shipped)
    assert model.pretrained and model.checkpoint_meta["other_cpu"] == "rocketlake"


def test_named_meta_run_builds_its_cost_model_from_the_plan_weights():
    import tvm

    from ms_meta.bench.online.run import _make_cost_model

    shipped = Path(__file__).resolve().parents[2] / "ms_meta" / "weights" / "llvm-rocketlake.pt"
    target = tvm.target.Target({"kind": "llvm", "mcpu": "icelake-server", "num-cores": 2})
    config = OnlineConfig(named_weights=(("rl", shipped),), allow_other_cpu=True).checked()
    plan = next(p for p in plan_runs(config)[0] if p.label == "meta:rl")
    model, facts = _make_cost_model(plan, target, config)
    assert model.pretrained and model.checkpoint_meta["other_cpu"] == "rocketlake"
    assert facts["pretrained"] is True


def test_a_one_shot_library_enters_only_one_shot_fingerprints(tmp_path, target):
    from ms_meta.bench.online.run import _fingerprint
    from ms_meta.one_shot.library import build_library
    from tests.conftest import SEED_RECORDS

    garbage = tmp_path / "bad.library.json.gz"
    garbage.write_bytes(b"not a library")
    with pytest.raises(MsMetaError, match="not a readable schedule library"):
        OnlineConfig(tasks=(TINY,), one_shot_library=garbage).checked()
    library = build_library([SEED_RECORDS], tasks=["mm_512"], per_task=1)
    path = library.save(tmp_path / "lib.library.json.gz")
    plain = OnlineConfig(tasks=(TINY,)).checked()
    with_library = OnlineConfig(tasks=(TINY,), one_shot_library=path).checked()
    for plan, same in zip(plan_runs(plain)[0], plan_runs(with_library)[0], strict=True):
        before = _fingerprint(TINY, plan, plain, target)
        after = _fingerprint(TINY, same, with_library, target)
        if plan.model == "one-shot":  # a changed library re-runs One-Shot ...
            assert after == {**before, "library": after["library"]}
            assert after["library"]["path"] == str(path.resolve())
        else:  # ... and nothing else: the stock XGB@256 runs stay reusable
            assert after == before


def test_cli_one_shot_library_defaults_differ_by_benchmark(monkeypatch, tmp_path):
    online, model = [], []
    monkeypatch.setattr("ms_meta.cli.bench._online", lambda config, *rest: online.append(config))
    monkeypatch.setattr("ms_meta.cli.bench._model", lambda *a, **kw: model.append(kw["library"]))
    # --online: no library unless one is named, and never the shipped one (it holds the
    # held-out tasks)
    assert CliRunner().invoke(cli, ["bench", "--online"]).exit_code == 0
    assert online.pop().one_shot_library is None
    refused = CliRunner().invoke(cli, ["bench", "--online", "--one-shot-library", "default"])
    assert refused.exit_code == 2 and "holds the held-out tasks" in refused.output
    given = tmp_path / "split.library.json.gz"  # checked by OnlineConfig.checked (tested above)
    named = CliRunner().invoke(cli, ["bench", "--online", "--one-shot-library", str(given)])
    assert named.exit_code == 0 and online.pop().one_shot_library == given
    # --model: the shipped library unless told otherwise
    for args, expected in (([], "default"), (["--one-shot-library", "none"], None),
                           (["--one-shot-library", "x.gz"], Path("x.gz"))):  # fmt: skip
        result = CliRunner().invoke(cli, ["bench", "--model", "resnet18", *args])
        assert result.exit_code == 0, result.output
        assert model.pop() == expected
