"""``ms-meta collect``: measure schedules into tuning_records/ (resumable, shardable).

Exit status: 0 when every task was collected or skipped for a reason the summary line names
(another collector holds it, its design space is exhausted); 130 when Ctrl-C or SIGTERM
stopped the run (the batch in flight is dropped, and the same command measures as many in
its place); 1 for bad input.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ms_meta.cli.options import (
    DIR_PATH,
    any_cpu_weights_option,
    feed_store,
    library_errors,
    quiet_meta_schedule,
    seed_option,
    store_option,
    target_option,
)

__all__ = [
    "INTERRUPTED_EXIT",
    "collect",
    "learned_models",
    "stop_on_first_interrupt",
    "summary_line",
]


def _select_shard(items: list, shard: str | None, start: int, end: int | None, step: int):
    if shard:
        try:
            index, count = (int(v) for v in shard.split("/"))
        except ValueError:
            raise click.BadParameter(
                "expected INDEX/COUNT, e.g. 0/4", param_hint="--shard"
            ) from None
        if not 0 <= index < count:
            raise click.BadParameter("INDEX must be in [0, COUNT)", param_hint="--shard")
        return items[index::count]
    return items[start:end:step]


def _interleave_by_operator(workloads: list) -> list:
    """Round-robin over operator kinds, so an interrupted run has covered every kind."""
    by_op: dict[str, list] = {}
    for w in workloads:
        by_op.setdefault(w.op, []).append(w)
    out = []
    while any(by_op.values()):
        for op in list(by_op):
            if by_op[op]:
                out.append(by_op[op].pop(0))
    return out


def _rpc_settings(tracker: str | None, key: str | None, workers: int | None):
    from ms_meta.tuning.rpc import RPCError, RPCSettings

    if tracker is None and key is None:
        if workers is not None:
            raise click.UsageError("--rpc-workers needs --rpc-tracker and --rpc-key")
        return None
    if tracker is None or key is None:
        raise click.UsageError("--rpc-tracker and --rpc-key go together")
    try:
        return RPCSettings.parse(tracker, key, workers)
    except RPCError as err:
        raise click.BadParameter(str(err), param_hint="--rpc-tracker") from None


class _OneShotSearch:
    """One-Shot searches with the collection's weights (see :class:`ms_meta.data.collect.
    OneShotSearch`)."""

    def __init__(self, config, target, allow_other_cpu: bool = False) -> None:
        from ms_meta.model.cost_model import MetaCostModel
        from ms_meta.one_shot.settings import SearchSettings

        weights = config.one_shot_weights or "default"
        # no scoring process: it must not run beside the timed runs
        self.model = MetaCostModel(
            weights=weights, target=target, scoring_process=False, seed=config.seed,
            allow_other_cpu=allow_other_cpu,
        )  # fmt: skip
        self.label = f"one-shot:{Path(weights).name if config.one_shot_weights else 'shipped'}"
        self.settings = SearchSettings()
        self.target = target

    def finalists(self, mod, task_name: str, rand_state: int) -> list[tuple[Any, Any]]:
        from ms_meta.one_shot.search import search_task

        found = search_task(
            mod, self.target, self.model, task_name=task_name, settings=self.settings,
            rand_state=rand_state,
        )  # fmt: skip
        return [(finalist.trace, finalist.candidate) for finalist in found.finalists]


def _meta_cost_model(target, seed: int, store="default"):
    from ms_meta.model.cost_model import MetaCostModel

    # no scoring process: its start-up, once per task, would cost more than it saves,
    # and it must not run beside the timed runs
    return MetaCostModel(target=target, seed=seed, scoring_process=False, store=store)


def learned_models(allow_other_cpu: bool = False, store="default"):
    """The shipped learned models for :func:`ms_meta.data.collect.collect`: the meta-learned
    cost model (``--cost-model meta``, warm-started from the record store ``store``; None or
    ``"none"``: from the task's own records alone) and One-Shot searches
    (``--one-shot-picks``, whose ``--one-shot-weights`` may be of another CPU with
    ``allow_other_cpu``)."""
    from ms_meta.data.collect import LearnedModels

    return LearnedModels(
        meta_cost_model=functools.partial(_meta_cost_model, store=store),
        one_shot_search=functools.partial(_OneShotSearch, allow_other_cpu=allow_other_cpu),
    )


def summary_line(summary) -> str:
    """The last line of a run: records, time, rate, and tasks left to another collector."""
    rate = summary.measured / summary.seconds if summary.seconds else 0.0
    line = f"measured {summary.measured} records in {summary.seconds:.0f} s ({rate:.2f}/s)"
    if summary.locked:
        line += f"; {len(summary.locked)} task(s) skipped: locked by another collector"
    return line


INTERRUPTED_EXIT = 130  # the shell's code for a run ended by Ctrl-C: the job is not complete


def _abort_now() -> None:
    """End the process at once, quietly: no traceback from whatever was running."""
    click.echo(
        "aborted; the batch in flight was not recorded, and the same command continues "
        "where this one stopped",
        err=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)


@contextlib.contextmanager
def stop_on_first_interrupt() -> Iterator[threading.Event]:
    """A first Ctrl-C (or SIGTERM) asks the collector to stop after the batch in flight,
    which it drops; a second Ctrl-C aborts at once (once records being written are
    complete).

    An interrupt raised while TVM's C++ search calls back into Python can abort the whole
    process with a traceback; a flag checked between batches cannot, and an abort ends the
    process without unwinding through TVM.
    """
    from ms_meta.data.collect import StopRequest

    stop = StopRequest(on_abort=_abort_now)

    def request_stop(signum, frame) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            stop.abort()
            return
        stop.set()
        click.echo("\nstopping after the batch in flight (Ctrl-C again to abort now)", err=True)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            # A stopped run is about to exit: a late Ctrl-C must not end it with a traceback
            # or another status.
            signal.signal(sig, signal.SIG_IGN if stop.is_set() else handler)


def _report_task(progress) -> None:
    if progress.skipped:
        click.echo(f"\n{progress.task}: skipped, {progress.skipped}", err=True)
        return
    click.echo(
        f"\n{progress.task}: +{progress.measured} records ({progress.failed} failed, "
        f"{progress.duplicates} duplicate) in {progress.seconds:.0f} s "
        f"({progress.records_per_second:.2f}/s), best {progress.best_us or float('nan'):.1f} us"
        + (
            f"; {progress.timing_reruns} batch(es) re-timed, {progress.disturbed_batches} kept "
            "disturbed"
            if progress.timing_reruns
            else ""
        ),
        err=True,
    )


@click.command(
    epilog="""\b
Examples:
  ms-meta collect resnet18 bert-base --trials-per-task 128
  ms-meta collect all --shard 0/2          # this machine takes every other task
  ms-meta collect dense:128,768,768 --out /tmp/records
  ms-meta collect resnet18 --trials-per-task 256 --cost-model meta --retry-exhausted  # top up
  ms-meta collect resnet18 --trials-per-task 0 --one-shot-picks 16   # the model's own picks

\b
Breadth-first: thousands of sampled tasks, few records each, packed as they finish:
  ms-meta collect sampled:2000:0 --out breadth_work --trials-per-task 16 --cost-model meta \\
      --realtime --skip-packed tuning_records/llvm-rocketlake-2c-breadth
  ms-meta db pack breadth_work/llvm-rocketlake-2c   # -> tuning_records/llvm-rocketlake-2c-breadth


Measure on remote devices (builds stay on this machine):
  python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190
  python -m tvm.exec.rpc_server --tracker HOST:9190 --key xeon   # on each device
  ms-meta collect all --rpc-tracker HOST:9190 --rpc-key xeon \\
      --target '{"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 8}'

\b
Exit status: 0 when every task was collected or skipped for a reason the last line names
(e.g. "1 task(s) skipped: locked by another collector"); 130 after Ctrl-C or SIGTERM (the
batch in flight is dropped; re-running the command measures as many in its place); 1 for
bad input.
"""
)
@click.argument("workloads", nargs=-1)
@click.option(
    "--out",
    "root",
    type=DIR_PATH,
    default=Path("tuning_records"),
    show_default=True,
    help="Root of the record tree; records go to OUT/<target-key>/<task>/.",
)
@click.option("--trials-per-task", type=int, default=192, show_default=True)
@click.option(
    "--random-fraction",
    type=click.FloatRange(0, 1),
    default=0.33,
    show_default=True,
    help="Share of uniform random design-space samples; the rest are model-guided.",
)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--cost-model",
    type=click.Choice(["xgb", "meta", "random"]),
    default="xgb",
    show_default=True,
    help="Model guiding the evolutionary samples.",
)
@click.option(
    "--population-size",
    type=click.IntRange(min=2),
    default=256,
    show_default=True,
    help="Population of the evolutionary search.",
)
@click.option(
    "--one-shot-picks",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also measure this many schedules per task that One-Shot searches (the pre-trained "
    "model alone, no measurement) rank best: what the model is surest of, its mistakes "
    "among them, to train it on. "
    "Counted apart from --trials-per-task; use --trials-per-task 0 for these alone.",
)
@click.option(
    "--one-shot-per-search",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Best-scored unmeasured schedules taken from each One-Shot search (each search has "
    "its own seed).",
)
@click.option(
    "--one-shot-weights",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Weights of the One-Shot searches. Default: the shipped weights for the target.",
)
@click.option(
    "--rpc-tracker",
    default=None,
    metavar="HOST:PORT",
    help="Time candidates with TVM's RPCRunner on the devices registered at this tracker.",
)
@click.option(
    "--rpc-key", default=None, metavar="KEY", help="Key the RPC devices registered under."
)
@click.option(
    "--rpc-workers",
    type=click.IntRange(min=1),
    default=None,
    show_default="one per device registered under the key",
    help="RPC sessions at a time.",
)
@click.option(
    "--contention-guard/--no-contention-guard",
    default=True,
    show_default=True,
    help="Re-time a batch measured while other processes took more than a quarter of a core "
    "(or the hypervisor more than half a core); local runner only.",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="Time each candidate in a SCHED_FIFO process (needs root or CAP_SYS_NICE; local "
    "runner only), so that other processes cannot preempt it: on a busy machine the records' "
    "latencies are otherwise off by up to 2x, and the fastest ones are flukes.",
)
@click.option(
    "--cache-flush",
    is_flag=True,
    help="Flush the CPU caches before each timed run (local runner only), as a model's layers "
    "meet their weights: warm timings rank weight-heavy schedules wrongly.",
)
@click.option(
    "--retry-exhausted",
    is_flag=True,
    help="Also measure tasks an earlier run marked as having no unmeasured schedule left "
    "(e.g. to top them up guided by another cost model).",
)
@click.option("--shard", default=None, metavar="I/N", help="Take tasks I, I+N, I+2N, ...")
@click.option("--start", type=int, default=0, show_default=True, help="First task index.")
@click.option("--end", type=int, default=None, help="Stop before this task index.")
@click.option("--step", type=int, default=1, show_default=True, help="Task index step.")
@click.option(
    "--skip-packed",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PACK_DIR",
    help="Leave out the tasks already packed there (`ms-meta db pack`), e.g. "
    "tuning_records/<target-key>-breadth.",
)
@click.option("--list", "list_only", is_flag=True, help="Print the task list and exit.")
@any_cpu_weights_option
@store_option
@target_option
@seed_option
@library_errors
def collect(
    workloads, root, trials_per_task, random_fraction, batch_size, cost_model, population_size,
    one_shot_picks, one_shot_per_search, one_shot_weights, rpc_tracker, rpc_key, rpc_workers,
    contention_guard, realtime, cache_flush, retry_exhausted, shard, start, end, step,
    skip_packed, list_only, any_cpu_weights, store, target_json, seed,
):  # fmt: skip
    """Measure schedules of WORKLOADS (specs, named tasks, presets, `all`, or sampled sets
    `sampled:COUNT:SEED`) on this machine, or with --rpc-tracker/--rpc-key on every device
    registered under the key.

    Resumable: re-running continues each task where it stopped; records are appended after
    every measured batch, so a kill loses at most the batch in flight.
    """
    from ms_meta.workloads import all_named, resolve

    rpc = _rpc_settings(rpc_tracker, rpc_key, rpc_workers)
    names = list(workloads) or ["all"]
    selected = all_named() if names == ["all"] else resolve(names)
    selected = _select_shard(_interleave_by_operator(selected), shard, start, end, step)
    if skip_packed is not None:
        from ms_meta.data.pack import packed_tasks

        packed = packed_tasks(skip_packed)
        selected = [w for w in selected if w.name not in packed]
    if list_only:
        for w in selected:
            click.echo(f"{w.name}\t{w.spec}")
        return

    from ms_meta.cli.progress import Progress
    from ms_meta.data.collect import collect as run_collect
    from ms_meta.data.layout import RECORD_FILE
    from ms_meta.data.task_files import count_lines
    from ms_meta.data.task_meta import CollectConfig, records_wanted
    from ms_meta.tuning.target import parse_target, target_key

    quiet_meta_schedule()
    target = parse_target(target_json)
    config = CollectConfig(
        trials_per_task=trials_per_task,
        random_fraction=random_fraction,
        batch_size=batch_size,
        cost_model=cost_model,
        population_size=population_size,
        seed=seed,
        rpc=rpc,
        contention_guard=contention_guard,
        realtime=realtime,
        cache_flush=cache_flush,
        retry_exhausted=retry_exhausted,
        one_shot_picks=one_shot_picks,
        one_shot_per_search=one_shot_per_search,
        one_shot_weights=one_shot_weights,
    )
    key_dir = root / target_key(target)

    def records_to_measure(task_dir: Path) -> int:
        return records_wanted(task_dir, count_lines(task_dir / RECORD_FILE), config)

    todo = sum(records_to_measure(key_dir / w.name) for w in selected)
    click.echo(
        f"collecting {len(selected)} tasks for {target_key(target)} into {key_dir} "
        f"({todo} records to measure, {rpc.describe() if rpc else 'local runner'})",
        err=True,
    )
    bar = Progress(todo, unit="records")
    with stop_on_first_interrupt() as stop:
        summary = run_collect(
            selected,
            root,
            target,
            config,
            on_progress=lambda task, n, failed: bar.update(n, note=task),
            on_task_done=_report_task,
            stop=stop,
            models=learned_models(any_cpu_weights, store),
        )
    bar.close()
    click.echo(summary_line(summary))
    # what this run measured (and earlier runs of these tasks: importing again adds nothing)
    feed_store(store, *(key_dir / w.name for w in selected))
    if stop.is_set():
        click.echo(
            "stopped on request; the same command continues where this one stopped", err=True
        )
        raise SystemExit(INTERRUPTED_EXIT)
