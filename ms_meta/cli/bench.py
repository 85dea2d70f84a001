"""``ms-meta bench``: cost-model overhead and tuning wall time, side by side with stock XGB."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ms_meta.cli.options import library_errors, quiet_meta_schedule, seed_option, target_option


@click.command(
    epilog="""\b
Examples:
  ms-meta bench                                  # ResNet-18 conv2d, 512 candidates, 32 trials
  ms-meta bench --trials 0                       # throughput only
  ms-meta bench --workload dense:128,768,768 --json bench.json
"""
)
@click.option("--workload", default="conv2d_nchw:1,64,56,56,64,3,3,1,1", show_default=True,
              help="Workload whose design space is sampled and tuned.")  # fmt: skip
@click.option("--candidates", type=click.IntRange(16), default=512, show_default=True,
              help="Sampled candidates for the throughput figures.")  # fmt: skip
@click.option("--trials", type=click.IntRange(0), default=32, show_default=True,
              help="Trials of each tune_tir run (0 skips the tuning comparison).")  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the figures as JSON.")  # fmt: skip
@target_option
@seed_option
@library_errors
def bench(workload, candidates, trials, json_path, target_json, seed):
    """Print extraction and prediction throughput, and the wall time of ms.tune_tir with
    MetaCostModel vs the stock XGBModel at the same trial count, in one run."""
    from ms_meta.bench.overhead import as_dict, measure_throughput, measure_tuning
    from ms_meta.tuning.target import parse_target
    from ms_meta.workloads import resolve_one

    resolve_one(workload)
    quiet_meta_schedule()
    target = parse_target(target_json)
    click.echo(f"target {target}\nworkload {workload}\n")
    tp = measure_throughput(workload, candidates, target, seed=seed + 1)
    click.echo(f"throughput over {tp.candidates} sampled candidates (candidates/s, best of 3):")
    rows = [
        ("GraphFeatureExtractor (extract)", tp.graph_extract_per_s),
        ("MetaCostModel.predict (extract + GNN)", tp.meta_predict_per_s),
        ("PerStoreFeature (extract)", tp.per_store_extract_per_s),
        ("XGBModel.predict (extract + booster)", tp.xgb_predict_per_s),
    ]
    for name, rate in rows:
        click.echo(f"  {name:40s} {rate:10.0f}")
    click.echo(f"  {'predict speed-up, MetaCostModel / XGBModel':40s} "
               f"{tp.meta_predict_per_s / tp.xgb_predict_per_s:9.1f}x")  # fmt: skip
    report = {"throughput": as_dict([tp])[0], "tuning": []}
    if trials:
        click.echo(f"\nms.tune_tir, {trials} trials each, same builder and runner:")
        timings = measure_tuning(workload, trials, target, seed=seed)
        click.echo(f"  {'cost model':12s} {'wall s':>8s} {'in model s':>11s} {'valid':>6s} "
                   f"{'best us':>10s}")  # fmt: skip
        for t in timings:
            best = f"{t.best_us:10.1f}" if t.best_us else "         -"
            click.echo(f"  {t.cost_model:12s} {t.wall_seconds:8.1f} {t.model_seconds:11.2f} "
                       f"{t.valid_trials:>3d}/{t.trials:<3d}{best}")  # fmt: skip
        by_name = {t.cost_model: t for t in timings}
        if "meta" in by_name and "xgb" in by_name:
            m, x = by_name["meta"], by_name["xgb"]
            click.echo(
                f"  wall-time ratio meta/xgb {m.wall_seconds / x.wall_seconds:.2f}, "
                f"time-in-model ratio {m.model_seconds / max(x.model_seconds, 1e-9):.2f}"
            )
        report["tuning"] = as_dict(timings)
    if json_path:
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        click.echo(f"\nwrote {json_path}")
