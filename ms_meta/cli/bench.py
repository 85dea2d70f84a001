"""``ms-meta bench``: cost-model overhead and tuning wall time side by side with stock XGB
(default), the in-search benchmark of best latency per trial budget (``--online``), and the
end-to-end model benchmark (``--model``)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import click

from ms_meta.atomic import atomic_write_text
from ms_meta.cli.options import (
    library_errors,
    none_or,
    quiet_meta_schedule,
    seed_option,
    target_option,
)


def _int_list(ctx, param, value: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive trial counts, got {value!r}")
    return values


def _name_list(ctx, param, value: tuple[str, ...]) -> tuple[str, ...]:
    # specs hold commas (dense:16,16,16), so names are separated by ';' or whitespace
    return tuple(n for v in value for n in re.split(r"[;\s]+", v) if n)


def _weights_list(ctx, param, value: tuple[str, ...]) -> tuple[tuple[str | None, str], ...]:
    from ms_meta.bench.online import parse_weights
    from ms_meta.errors import MsMetaError

    try:
        return parse_weights(value)
    except MsMetaError as err:
        raise click.BadParameter(str(err)) from None


STEAL_WARNING = 0.05  # CPU steal above which the throughput figures get a note


@click.command(
    epilog="""\b
Examples:
  ms-meta bench                                  # ResNet-18 conv2d, 512 candidates, 32 trials
  ms-meta bench --trials 0                       # throughput only
  ms-meta bench --workload dense:128,768,768 --json bench.json
  ms-meta bench --online --work-dir runs/online --json online.json   # hours; resumable
  ms-meta bench --online --tasks dense_128_3072_768 --budgets 8,16 --xgb-budget 32 \\
      --work-dir runs/smoke                      # a small smoke run
  ms-meta bench --online --xgb-pretrained xgb.tar --weights meta.pt --work-dir runs/online
  ms-meta bench --online --weights ft=a.pt --weights rl=b.pt --work-dir runs/cmp
                                                 # meta:ft, meta:rl, ... re-measured together
  ms-meta bench --online --models xgb,one-shot --weights ft=a.pt --one-shot-searches 6 \\
      --work-dir runs/oneshot                    # six One-Shot picks per task, seeds 0-5
  ms-meta bench --model resnet18 --work-dir runs/resnet18   # each contender in its own process
  ms-meta bench --model resnet18 --contenders one-shot,torch,onnxruntime --rounds 1 --runs 10
  ms-meta bench --model resnet18 --xgb-database runs/resnet18/resnet18-work/xgb/xgb
  ms-meta bench --model resnet18 --gap --work-dir runs/resnet18-gap   # per-operator gap table
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
@click.option(
    "--online",
    is_flag=True,
    help="Best latency per trial budget with each cost model on held-out tasks, "
    "re-measured side by side.",
)
@click.option(
    "--tasks",
    multiple=True,
    callback=_name_list,
    metavar="NAMES",
    help="--online: tasks (specs, named tasks or task directory names), separated "
    "by ';' or spaces, or the option repeated. Default: four held-out tasks.",
)
@click.option(
    "--budgets",
    default="16,32,64",
    show_default=True,
    callback=_int_list,
    help="--online: trial budgets of every cost model.",
)
@click.option(
    "--xgb-budget",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="--online: the stock XGBModel's reference budget.",
)
@click.option(
    "--models",
    default="xgb,xgb-pretrained,meta,one-shot",
    show_default=True,
    help="--online: cost models to run (xgb is required).",
)
@click.option(
    "--xgb-pretrained",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="--online: an XGBModel.save file for the xgb-pretrained row.",
)
@click.option(
    "--weights",
    multiple=True,
    callback=_weights_list,
    metavar="[NAME=]default|PATH",
    help="MetaCostModel / One-Shot weights (--online, --model); default: the shipped ones. "
    "--online takes several as NAME=PATH (repeated): meta and one-shot then run once per "
    "weights, labelled meta:NAME and one-shot:NAME, all re-measured side by side.",
)
@click.option(
    "--any-cpu-weights",
    is_flag=True,
    help="--online: accept --weights trained for another CPU of the same target kind "
    "(with a warning), e.g. to measure how weights carry over to this machine.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="--online/--model: where runs and results go; re-running --online with the "
    "same directory reuses finished runs. Default: a new temporary directory.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="--online: the convergence PNG (default: WORK_DIR/convergence.png).",
)
@click.option(
    "--trials-per-iter",
    type=click.IntRange(1, 20),
    default=16,
    show_default=True,
    help="--online: batch size of the search (<= 20 keeps budgets exact prefixes).",
)
@click.option(
    "--population-size",
    type=click.IntRange(2),
    default=512,
    show_default=True,
    help="--online: EvolutionarySearch population.",
)
@click.option(
    "--one-shot-searches",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="--online: One-Shot searches per weights, with seeds SEED, SEED+1, ...; the tables "
    "add the geomean over every pick (a single search's pick is close to a lottery).",
)
@click.option(
    "--one-shot-library",
    default=None,
    metavar="PATH|default|none",
    help="One-Shot's schedule library. --online: default none (it searches; never give it the "
    "shipped library, which holds the held-out tasks: build one with `ms-meta library build "
    "--split ...`); use distinct --weights names for runs with and without one. --model: "
    "default the shipped library; none searches every task.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="--online: interleaved re-measurement rounds. --model: rounds of timing processes "
    "(one per contender each round, in the same order).",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    metavar="NAME",
    help="Benchmark a whole network end to end, each contender compiled and timed in its own "
    "processes (resnet18, resnet50, mobilenet-v2, bert-layer, small-convnet).",
)
@click.option(
    "--contenders",
    default=None,
    metavar="NAMES",
    help="--model: comma-separated, from one-shot, one-shot-verify, one-shot-plain (One-Shot "
    "in the model's own convolution layout), xgb, untuned, torch, torch-compile, onnxruntime. "
    "Default: all but one-shot-plain, untuned (seconds per run) and xgb (xgb too with "
    "--xgb-database).",
)
@click.option(
    "--runs",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="--model: timed runs per timing process.",
)
@click.option(
    "--warmup",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="--model: warm-up runs per timing process (the first checks the outputs).",
)
@click.option(
    "--reruns",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="--model: times a timing process is run again while other processes take more than "
    "a quarter of a core (the least disturbed run counts).",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="--model: time every contender as a SCHED_FIFO process (needs root or CAP_SYS_NICE), "
    "so that other processes cannot preempt it: the way to measure on a busy machine.",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="--model: threads of every contender. Default: the target's num-cores, else the "
    "physical cores.",
)
@click.option(
    "--verify",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="--model: candidates measured per task by the one-shot-verify contender.",
)
@click.option(
    "--gap",
    is_flag=True,
    help="--model: the per-operator gap table instead (share of the model's time and GFLOP/s "
    "of each task: One-Shot, stock MetaSchedule with --xgb-database, PyTorch, the CPU's peak).",
)
@click.option(
    "--xgb-trials-per-task",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="--model: trials per task of the stock MetaSchedule (XGBModel) tuning.",
)
@click.option(
    "--xgb-database",
    "xgb_database",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="--model: compile the xgb contender from this MetaSchedule tuning database (e.g. "
    "<work-dir>/<model>-work/xgb/xgb of an earlier run) instead of tuning again.",
)
@click.option(
    "--layout",
    type=click.Choice(["blocked", "plain"]),
    default=None,
    help="--model: One-Shot's convolution layout: blocked (NCHW16c) or plain (as the model "
    "is written). Default: the package's (ms_meta.one_shot.blocked.BLOCKED_DEFAULT). Stock "
    "MetaSchedule always compiles the plain layout.",
)
@target_option
@seed_option
@library_errors
def bench(
    workload,
    candidates,
    trials,
    json_path,
    online,
    tasks,
    budgets,
    xgb_budget,
    models,
    xgb_pretrained,
    weights,
    any_cpu_weights,
    work_dir,
    plot_path,
    trials_per_iter,
    population_size,
    one_shot_searches,
    one_shot_library,
    rounds,
    model_name,
    contenders,
    runs,
    warmup,
    reruns,
    realtime,
    threads,
    verify,
    gap,
    xgb_trials_per_task,
    xgb_database,
    layout,
    target_json,
    seed,
):
    """Print extraction and prediction throughput, and the wall time of ms.tune_tir with
    MetaCostModel vs the stock XGBModel at the same trial count, in one run.

    With --online: tune held-out tasks with the stock XGBModel, a pre-trained XGBModel,
    MetaCostModel and One-Shot (each once per named --weights) at several trial budgets (each
    budget a prefix of one run per model), re-measure every best schedule side by side, and
    print latency ratios to xgb, the trials each model needs to reach xgb@256, and tuning
    wall times.

    With --model NAME: the end-to-end benchmark of a whole network (One-Shot, stock
    MetaSchedule and untuned TVM against PyTorch eager, torch.compile and ONNX Runtime), each
    contender compiled and timed in its own processes; with --gap, the per-operator gap table.
    """
    if online and model_name:
        raise click.UsageError("--online and --model are separate benchmarks; give one of them")
    if model_name and len(weights) > 1:
        raise click.UsageError("--model takes one --weights; several are for --online only")
    if online:
        from ms_meta.bench.online import OnlineConfig

        config = OnlineConfig(
            tasks=tasks or OnlineConfig.tasks,
            budgets=budgets,
            xgb_budget=xgb_budget,
            models=tuple(m.strip() for m in models.split(",") if m.strip()),
            xgb_pretrained=xgb_pretrained,
            weights=weights[0][1] if weights[0][0] is None else "default",
            named_weights=() if weights[0][0] is None else weights,
            allow_other_cpu=any_cpu_weights,
            num_trials_per_iter=trials_per_iter,
            population_size=population_size,
            seed=seed,
            one_shot_searches=one_shot_searches,
            one_shot_library=_online_library(one_shot_library),
            rounds=rounds,
        )
        _online(config, work_dir, json_path, plot_path, target_json)
        return
    if model_name:
        _model(
            model_name, work_dir, json_path, target_json, gap=gap,
            contenders=contenders, runs=runs, warmup=warmup, rounds=rounds, threads=threads,
            reruns=reruns, realtime=realtime,
            weights=weights[0][1], library=_model_library(one_shot_library), verify=verify,
            xgb_trials_per_task=xgb_trials_per_task, xgb_database=xgb_database, layout=layout,
        )  # fmt: skip
        return
    from ms_meta.bench.overhead import as_dict, measure_throughput, measure_tuning
    from ms_meta.tuning.target import parse_target
    from ms_meta.workloads import resolve_one

    resolve_one(workload)
    quiet_meta_schedule()
    target = parse_target(target_json)
    click.echo(f"target {target}\nworkload {workload}\n")
    tp = measure_throughput(workload, candidates, target, seed=seed + 1)
    click.echo(_throughput_table(tp))
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
        atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
        click.echo(f"\nwrote {json_path}")


def _throughput_table(tp) -> str:
    """The throughput figures as printed: median and best of the same timed runs per model."""
    from ms_meta.bench.overhead import THROUGHPUT_ROWS

    lines = [
        f"throughput over {tp.candidates} sampled candidates (candidates/s; every model: "
        f"{tp.meta_predict.warmup} untimed warm-up run, then the median and the best of "
        f"{tp.meta_predict.repeats} timed runs):",
        f"  {'':40s} {'median':>10s} {'best':>10s}",
    ]
    for field, name in THROUGHPUT_ROWS:
        rate = getattr(tp, field)
        if field == "meta_predict" and tp.gnn_in_child_process:
            name += " *"
        lines.append(f"  {name:40s} {rate.median_per_s:10.0f} {rate.best_per_s:10.0f}")
    lines.append(
        f"  {'predict speed-up, MetaCostModel / XGBModel':40s} "
        f"{tp.speedup('median'):9.1f}x {tp.speedup('best'):9.1f}x"
    )
    if tp.gnn_in_child_process:
        lines.append("  * the GNN ran in MetaCostModel's scoring process, beside the encoder")
    if tp.load_average is not None:
        one, five, fifteen = tp.load_average
        lines.append(
            f"  load average before the timing: {one:.2f} / {five:.2f} / {fifteen:.2f} "
            f"(1 / 5 / 15 min) on {os.cpu_count()} logical cores"
        )
    if tp.cpu_steal_fraction is not None:
        note = (
            "; absolute rates are depressed, ratios hold"
            if tp.cpu_steal_fraction >= STEAL_WARNING
            else ""
        )
        lines.append(
            f"  hypervisor steal during the timing: {tp.cpu_steal_fraction:.0%} of CPU time{note}"
        )
    return "\n".join(lines)


def _online(
    config, work_dir: Path | None, json_path: Path | None, plot_path: Path | None, target_json
) -> None:
    from ms_meta.bench.online import PLOT_FILE, RESULT_FILE, format_tables, run_online_benchmark
    from ms_meta.bench.plots import plot_convergence, plot_skipped_note
    from ms_meta.tuning.target import parse_target

    config = config.checked()  # bad options fail before anything is tuned
    quiet_meta_schedule()
    target = parse_target(target_json)
    if work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix="ms-meta-online-"))
        click.echo(f"work dir {work_dir} (pass --work-dir to make the run resumable)", err=True)
    click.echo(f"target {target}\ntasks {', '.join(config.tasks)}\n", err=True)
    result = run_online_benchmark(
        config, work_dir, target=target, progress=lambda m: click.echo(m, err=True)
    )
    click.echo(format_tables(result))
    note = plot_skipped_note()
    if note is None:
        plot = plot_convergence(result, plot_path or work_dir / PLOT_FILE)
        click.echo(f"\nplot {plot}\nresult {work_dir / RESULT_FILE}")
    else:
        click.echo(f"\n{note}\nresult {work_dir / RESULT_FILE}")
    if json_path:
        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
        click.echo(f"wrote {json_path}")


def _online_library(value: str | None) -> Path | None:
    value = none_or(value)
    if value is None:
        return None
    if value == "default":
        raise click.UsageError(
            "--online cannot use the shipped library: it holds the held-out tasks' own "
            "schedules; build one from the training tasks (ms-meta library build --split ...)"
        )
    return Path(value)


def _model_library(value: str | None):
    if value is None or value == "default":
        return "default"
    path = none_or(value)
    return None if path is None else Path(path)


def _model(
    name: str, work_dir: Path | None, json_path: Path | None, target_json, *, gap: bool, **options
) -> None:
    from ms_meta.bench.e2e import NumericsError, format_table, run_model_benchmark

    out_dir = work_dir or Path(tempfile.mkdtemp(prefix=f"ms-meta-e2e-{name}-"))
    if gap:
        from ms_meta.bench.gap import format_gap_table, run_gap_table

        for key in ("contenders", "reruns"):
            options.pop(key)
        result = run_gap_table(name, out_dir=out_dir, target=target_json, **options)
        click.echo(format_gap_table(result))
    else:
        try:
            result = run_model_benchmark(name, out_dir=out_dir, target=target_json, **options)
        except NumericsError as err:
            click.echo(format_table(err.result))
            raise
        click.echo(format_table(result))
    click.echo(f"\nresults in {out_dir}")
    if json_path:
        json_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
        click.echo(f"wrote {json_path}")
