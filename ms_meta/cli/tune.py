"""``ms-meta tune``: tune one workload and print its latency.

Both modes learn from the record store (``--store``): measured tuning's MetaCostModel adapts to
the store's records of the task before measuring, and One-Shot takes the store's record of a
task measured before (else adds the store's schedules to its library); both record what they
measure into it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import click

from ms_meta.cli.options import (
    any_cpu_weights_option,
    library_errors,
    none_or,
    quiet_meta_schedule,
    seed_option,
    store_option,
    target_option,
    work_dir_option,
)

__all__ = ["tune"]

# Options that only the one-shot mode reads. --population and --generations default to None
# (SearchSettings' defaults), so that their help can name them without importing TVM.
_ONE_SHOT_ONLY = (
    "verify", "verify_uncertain", "no_measure", "weights", "any_cpu_weights", "library",
    "population", "generations",
)  # fmt: skip


@click.command(
    epilog="""\b
Examples:
  ms-meta tune dense:128,768,768 --trials 32
  ms-meta tune r18_c1_3x3_64 --cost-model xgb --trials 64
  ms-meta tune conv2d_nchw:1,64,56,56,64,3,3,1,1 --work-dir runs/conv
  ms-meta tune conv2d_nchw:1,64,56,56,64,3,3,1,1 --mode one-shot
  ms-meta tune dense:128,768,768 --mode one-shot --verify 4
  ms-meta tune dense:4096,64,64 --mode one-shot --verify-uncertain 4
  ms-meta tune dense:128,768,768 --mode one-shot --store none   # ignore the record store
"""
)
@click.argument("workload")
@click.option(
    "--mode",
    type=click.Choice(["measured", "one-shot"]),
    default="measured",
    show_default=True,
    help="measured: MetaSchedule tuning that builds and times every trial. one-shot: the "
    "pre-trained model picks the schedule with no measurement at all (see --verify).",
)
@click.option("--trials", type=click.IntRange(1), default=32, show_default=True,
              help="Measured trials (max_trials_global).")  # fmt: skip
@click.option("--trials-per-iter", type=click.IntRange(1), default=16, show_default=True)
@click.option(
    "--cost-model",
    type=click.Choice(["meta", "meta-online", "xgb", "random"]),  # model.factory.COST_MODELS
    default="meta",
    show_default=True,
    help="meta: MetaCostModel with shipped weights; meta-online: untrained MetaCostModel; "
    "xgb: MetaSchedule's stock XGBModel. (measured mode)",
)
@click.option("--verify", type=click.IntRange(0), default=0, show_default=True,
              help="One-shot: measure the K best-predicted schedules and keep the fastest "
                   "(the record is then measured).")  # fmt: skip
@click.option("--verify-uncertain", type=click.IntRange(0), default=0, show_default=True,
              help="One-shot: measure the K best-ranked schedules only when the task is far "
                   "from the schedule library (confidence far or none) and keep the "
                   "fastest.")  # fmt: skip
@click.option("--no-measure", is_flag=True,
              help="One-shot: skip the post-hoc measurement of the pick.")  # fmt: skip
@click.option("--weights", default="default", show_default=True, metavar="PATH|default|none",
              help="One-shot: MetaCostModel weights (none: an untrained model).")  # fmt: skip
@click.option("--library", default="default", show_default=True, metavar="PATH|default|none",
              help="One-shot: the schedule library to pick from (`ms-meta library build`); "
                   "default: the one shipped for the target; none: search the design "
                   "space instead.")  # fmt: skip
@any_cpu_weights_option
@store_option
@click.option("--population", type=click.IntRange(2), default=None,
              help="One-shot: search population [default: 128].")  # fmt: skip
@click.option("--generations", type=click.IntRange(0), default=None,
              help="One-shot: generations of mutation [default: 2].")  # fmt: skip
@target_option
@work_dir_option
@seed_option
@library_errors
@click.pass_context
def tune(ctx, workload, mode, trials, trials_per_iter, cost_model, verify, verify_uncertain,
         no_measure, weights, library, any_cpu_weights, store, population, generations, target_json,
         work_dir: Path | None, seed):  # fmt: skip
    """Tune WORKLOAD (a spec like conv2d_nchw:1,64,56,56,64,3,3,1,1, or a named task) with
    MetaSchedule and print the best measured latency, or, with --mode one-shot, the schedule
    the pre-trained model picks without measuring anything."""
    started = time.perf_counter()
    from ms_meta.workloads import resolve_one

    wl = resolve_one(workload)  # bad specs fail here, before TVM is imported
    if mode == "measured":
        from_command_line = click.core.ParameterSource.COMMANDLINE
        given = [n for n in _ONE_SHOT_ONLY if ctx.get_parameter_source(n) == from_command_line]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            verb = "applies" if len(given) == 1 else "apply"
            raise click.UsageError(f"{flags} {verb} only to --mode one-shot")
        result = _tune_measured(wl, trials, trials_per_iter, cost_model, target_json, work_dir,
                                seed, store)  # fmt: skip
    else:
        result = _tune_one_shot(wl, verify=verify, verify_uncertain=verify_uncertain,
                       measure_pick=not no_measure, weights=weights,
                       any_cpu_weights=any_cpu_weights, library=library,
                       population=population, generations=generations,
                       target_json=target_json, work_dir=work_dir, seed=seed, store=store,
                       started=started)  # fmt: skip
    if result.store_report is not None:
        click.echo(f"record store: +{result.store_report.added} records", err=True)


def _tune_measured(wl, trials, trials_per_iter, cost_model, target_json, work_dir, seed, store):
    from ms_meta.model.factory import make_cost_model
    from ms_meta.tuning.measured_tuning import tune_workload
    from ms_meta.tuning.target import parse_target

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
        cost_model=make_cost_model(cost_model, target=target, seed=seed, store=store),
        seed=seed,
        quiet=True,
        store=store,
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
    return result


@contextlib.contextmanager
def _model_warning_shown_once():
    """The command prints the untrained-model warning itself (in red): drop its log line."""
    from ms_meta.one_shot.run import MODEL_WARNING_ATTR
    from ms_meta.one_shot.run import logger as one_shot_logger

    def keep(record: logging.LogRecord) -> bool:
        return not getattr(record, MODEL_WARNING_ATTR, False)

    one_shot_logger.addFilter(keep)
    try:
        yield
    finally:
        one_shot_logger.removeFilter(keep)


def _latency(wl, seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us ({wl.flops / seconds / 1e9:.1f} GFLOP/s)"


def _tune_one_shot(wl, *, verify, verify_uncertain, measure_pick, weights, any_cpu_weights,
                   library, population, generations, target_json, work_dir, seed, store,
                   started):  # fmt: skip
    from ms_meta.one_shot import SearchSettings, run_tir
    from ms_meta.tuning.target import parse_target

    quiet_meta_schedule()
    target = parse_target(target_json)
    defaults = SearchSettings()
    settings = SearchSettings(
        population_size=population or defaults.population_size,
        genetic_num_iters=defaults.genetic_num_iters if generations is None else generations,
        verify_uncertain=verify_uncertain,
    )
    mod = wl.build()
    library = none_or(library)
    source = "the schedule library, else a search" if library is not None else "a search"
    click.echo(f"one-shot {wl.spec} ({wl.flops / 1e9:.3f} GFLOP) on {target}: from {source} "
               f"(population {settings.population_size}, {settings.genetic_num_iters} "
               "generations)"
               + (f", verifying the top {verify}" if verify
                  else f", verifying the top {verify_uncertain} if far from the library"
                  if verify_uncertain else ", no measurement")
               + " ...", err=True)  # fmt: skip
    imported = time.perf_counter()
    with _model_warning_shown_once():
        result = run_tir(mod, target, work_dir, weights=none_or(weights),
                         allow_other_cpu=any_cpu_weights, library=library, verify=verify,
                         seed=seed, settings=settings, store=store)  # fmt: skip
    if result.model_warning:
        click.secho(f"WARNING: {result.model_warning}", fg="red", bold=True, err=True)
    _print_pick(wl, result, startup=(imported - started) + result.startup_seconds)
    _print_confidence(result)
    failed_check = None
    if measure_pick and not result.tasks[0].measured:
        failed_check = _post_hoc_check(wl, result, mod, target)
    _print_files(result)
    if failed_check is not None:
        raise click.ClickException(f"the picked schedule did not build or run: {failed_check}")
    return result


def _print_pick(wl, result, *, startup: float) -> None:
    task = result.tasks[0]
    finalists = f"rank {task.predicted_rank} of {task.finalists} finalists"
    population_note = f"{task.scored} candidates scored"
    if task.source == "store":
        click.echo(
            f"{wl.spec}: {_latency(wl, task.measured_seconds)}, MEASURED earlier: the record "
            "store's fastest record of this task (no search; --store none to search)"
        )
        click.echo(f"  start-up, once per process (imports, intrinsics, model load): "
                   f"{startup:.2f} s")  # fmt: skip
        return
    if task.source == "library":
        finalists = (f"rank {task.predicted_rank} of {task.finalists} library schedules "
                     f"(from {task.origin}; neighbours {', '.join(task.neighbours)})")  # fmt: skip
    if task.score_median is not None:
        population_note += f", median score {task.score_median:.4g}"
    if task.measured:
        verified_ok = sum(m.median_seconds is not None for m in task.verified)
        click.echo(
            f"{wl.spec}: {_latency(wl, task.measured_seconds)}, MEASURED (fastest of the "
            f"{len(task.verified)} best-predicted, {verified_ok} ran); predicted {finalists}, "
            f"score {task.score:.4g} ({population_note})"
        )
    else:
        how = ("this task's fastest schedule in the library (measured earlier, not in this run)"
               if task.own_measurement
               else "picked by the model, predicted, not measured")  # fmt: skip
        click.echo(f"{wl.spec}: {how}: score {task.score:.4g}, {finalists} ({population_note})")
    click.echo(
        f"  search + featurize + predict: {task.search_seconds:.2f} s "
        f"(featurize + predict {task.predict_seconds:.2f} s, CPU {task.cpu_seconds:.2f} s)"
    )
    click.echo(f"  start-up, once per process (imports, intrinsics, model load): {startup:.2f} s")
    if task.verify_seconds is not None:
        click.echo(f"  verification (build + measure {len(task.verified)}): "
                   f"{task.verify_seconds:.2f} s")  # fmt: skip


def _print_confidence(result) -> None:
    """The task's confidence, the count per label, and how many tasks were measured."""
    task = result.tasks[0]
    counts = ", ".join(f"{label} {n}" for label, n in result.confidence_counts.items() if n)
    click.echo(f"  confidence: {task.confidence.describe()}")
    click.echo(f"  tasks by confidence: {counts}; measured in this run: {result.tasks_measured}"
               f" of {len(result.tasks)}")  # fmt: skip
    if task.confidence.uncertain and not task.verified:
        click.echo("  far from the library's measured schedules: this pick is the least sure; "
                   "--verify-uncertain K measures the K best")  # fmt: skip


def _post_hoc_check(wl, result, mod, target) -> str | None:
    """Measure the pick once, after the search; the error message if it fails."""
    from ms_meta.one_shot.check import measure_applied

    label = "  post-hoc check (measured once after the search, not part of it):"
    check = measure_applied(result.database, mod, target)
    if check is None or check.median_seconds is None:
        error = check.error if check else "compile_tir found no record"
        click.echo(f"{label} FAILED: {error}")
        return error
    click.echo(f"{label} {_latency(wl, check.median_seconds)}")
    return None


def _print_files(result) -> None:
    from ms_meta.one_shot.store import MEASURED_RECORD_FILE, PREDICTED_RECORD_FILE, SUMMARY_FILE

    work_dir = result.work_dir
    if any(t.verified for t in result.tasks):
        click.echo(f"  records: measured {work_dir / MEASURED_RECORD_FILE}, predicted "
                   f"{work_dir / PREDICTED_RECORD_FILE} (fallback)")  # fmt: skip
    else:
        click.echo(f"  records: {work_dir / PREDICTED_RECORD_FILE} (predicted)")
    click.echo(f"  summary: {work_dir / SUMMARY_FILE}")
    if result.model_warning and not result.pretrained:
        click.secho("  the model is UNTRAINED: this pick is no better than a random schedule",
                    fg="red", bold=True)  # fmt: skip
    elif result.model_warning:
        click.secho("  the model's weights were trained on another CPU (see the warning above)",
                    fg="yellow", bold=True)  # fmt: skip
