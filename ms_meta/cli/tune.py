"""``ms-meta tune``: tune one workload and print its latency."""

from __future__ import annotations

from pathlib import Path

import click

from ms_meta.cli.options import (
    library_errors,
    quiet_meta_schedule,
    seed_option,
    target_option,
    work_dir_option,
)


@click.command(
    epilog="""\b
Examples:
  ms-meta tune dense:128,768,768 --trials 32
  ms-meta tune r18_c1_3x3_64 --cost-model xgb --trials 64
  ms-meta tune conv2d_nchw:1,64,56,56,64,3,3,1,1 --work-dir runs/conv
"""
)
@click.argument("workload")
@click.option("--trials", type=click.IntRange(1), default=32, show_default=True,
              help="Measured trials (max_trials_global).")  # fmt: skip
@click.option("--trials-per-iter", type=click.IntRange(1), default=16, show_default=True)
@click.option(
    "--cost-model",
    type=click.Choice(["meta", "meta-online", "xgb", "random"]),
    default="meta",
    show_default=True,
    help="meta: MetaCostModel with shipped weights; meta-online: untrained MetaCostModel; "
    "xgb: MetaSchedule's stock XGBModel.",
)
@target_option
@work_dir_option
@seed_option
@library_errors
def tune(workload, trials, trials_per_iter, cost_model, target_json, work_dir: Path | None, seed):
    """Tune WORKLOAD (a spec like conv2d_nchw:1,64,56,56,64,3,3,1,1, or a named task) with
    MetaSchedule and print the best measured latency."""
    from ms_meta.workloads import resolve_one

    wl = resolve_one(workload)  # bad specs fail here, before TVM is imported

    from ms_meta.tuning.target import parse_target
    from ms_meta.tuning.tune import tune_workload

    quiet_meta_schedule()
    target = parse_target(target_json)
    click.echo(f"tuning {wl.spec} ({wl.flops / 1e9:.3f} GFLOP) on {target} with "
               f"{cost_model}, {trials} trials ...", err=True)  # fmt: skip
    result = tune_workload(
        wl.build(),
        target,
        work_dir,
        max_trials=trials,
        num_trials_per_iter=min(trials_per_iter, trials),
        cost_model=cost_model,
        seed=seed,
        quiet=True,
    )
    if result.best_seconds is None:
        raise click.ClickException(
            f"no valid schedule: all {result.trials} trials failed (see {result.work_dir}/logs)"
        )
    gflops = wl.flops / result.best_seconds / 1e9
    click.echo(
        f"{wl.spec}: best {result.best_us:.1f} us ({gflops:.1f} GFLOP/s), "
        f"{result.valid_trials}/{result.trials} valid trials, tuned in "
        f"{result.tuning_seconds:.0f} s; database: {result.work_dir}"
    )
