"""``ms-meta adapt``: weights for a CPU that ships none, from a few hundred of its records.

Starts from the nearest shipped weights and applies the recipe of
:mod:`ms_meta.train.adapt` (measured in ``benchmarks/cross_cpu``); with ``--report`` it first
scores the starting weights and the adapted ones on held-out tasks of the user's records.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ms_meta.cli.options import (
    FILE_PATH,
    command_line,
    from_store_option,
    library_errors,
    load_parts,
    none_or,
    plain_target,
    records_argument,
    records_target,
    seed_option,
    shots_option,
    target_option,
)

__all__ = ["adapt"]


def _cpu_target(target_json: str | None) -> dict:
    """The CPU ``--target`` names (this machine's when None), as weights record it."""
    from ms_meta.tuning.target import parse_target, target_summary

    return plain_target(target_summary(parse_target(target_json)))


def _check_same_cpu(given: dict, measured: dict) -> None:
    from ms_meta.labels import cpu_label

    if cpu_label(given) != cpu_label(measured) or given.get("kind") != measured.get("kind"):
        raise click.UsageError(
            f"the records were measured on {cpu_label(measured)} ({measured.get('kind')}), "
            f"but --target says {cpu_label(given)} ({given.get('kind')})"
        )


def _store_tasks(store: str, target: dict) -> list:
    """The record store's tasks of ``target``, featurized from a temporary export (not cached:
    the export's paths are gone afterwards)."""
    from ms_meta.data.dataset import build_dataset
    from ms_meta.labels import target_label
    from ms_meta.train.adapt import export_store_records

    with tempfile.TemporaryDirectory(prefix="ms-meta-adapt-") as exported:
        written = export_store_records(None if store == "default" else store, target, exported)
        click.echo(f"record store: {len(written)} tasks of {target_label(target)}")
        return build_dataset([exported], cache_dir=None).tasks


@click.command(
    epilog="""\b
Examples:
  ms-meta adapt tuning_records/llvm-mycpu-8c --out mycpu.pt
  ms-meta adapt my_tune_runs/ other_runs/ --out mycpu.pt --report
  ms-meta adapt --from-store default --out mycpu.pt      # this CPU's records in the store
  ms-meta adapt runs/ --target '{"kind": "llvm", "mcpu": "znver5", "num-cores": 8}' --out z5.pt
"""
)
@records_argument
@from_store_option
@target_option
@click.option(
    "--init",
    "init_path",
    type=FILE_PATH,
    default=None,
    help="Weights to start from. Default: the nearest shipped weights (this CPU's own if "
    "shipped, else the same mcpu with another vector width, else the first of the kind).",
)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=None,
    help="Optimizer steps of the fine-tuning, whatever the number of records.  "
    "[default: the recipe's, 150]",
)
@click.option(
    "--report",
    is_flag=True,
    default=False,
    help="Before training the written weights, hold out a share of the tasks and print the "
    "starting and the adapted weights' pairwise accuracy and top-1 on them.",
)
@click.option(
    "--report-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="--report: share of the tasks held out (stratified by operator kind).",
)
@shots_option("0,8", help="--report: shots, comma-separated (0 = zero-shot).")
@click.option(
    "--out",
    type=FILE_PATH,
    required=True,
    help="Where to write the adapted weights (atomically).",
)
@seed_option
@library_errors
def adapt(paths, from_store, target_json, init_path, steps, report, report_fraction, ks, out, seed):
    """Adapt shipped weights to this CPU from its tuning records.

    RECORDS are MetaSchedule database directories or trees of them (`ms-meta collect`,
    `ms.tune_tir` work directories), all measured on one CPU. A few hundred records over a
    few dozen tasks are enough to start; more tasks help more than more records per task.
    """
    import torch

    from ms_meta.cli.progress import Progress
    from ms_meta.labels import target_label
    from ms_meta.model.weights import save_checkpoint
    from ms_meta.train.adapt import (
        DEFAULT_RECIPE,
        AdaptRecipe,
        adapt_to_cpu,
        nearest_weights,
    )

    torch.set_num_threads(1)
    store = none_or(from_store)
    if not paths and store is None:
        raise click.UsageError("give record directories (RECORDS) or --from-store")
    given = None if target_json is None else _cpu_target(target_json)
    tasks, measured, sources = [], None, [str(p) for p in paths]
    if paths:
        dataset, _, _ = load_parts(list(paths), None)
        tasks += dataset.tasks
        measured = records_target(dataset)
        if given is not None and measured is not None:
            _check_same_cpu(given, measured)
    if store is not None:
        tasks += _store_tasks(store, given or measured or _cpu_target(None))
        sources.append(f"store:{store}")
    target = given or measured or _cpu_target(None)
    if init_path is None:
        init_path, own = nearest_weights(target)
        how = "shipped for this CPU" if own else "shipped for another CPU"
    else:
        how = "given"
    if out.resolve() == Path(init_path).resolve():
        raise click.UsageError(f"--out {out} is the starting weights file; write elsewhere")
    recipe = DEFAULT_RECIPE if steps is None else AdaptRecipe(steps=steps)
    n_tasks = len({t.split_name for t in tasks})
    click.echo(
        f"adapting {init_path} ({how}) to {target_label(target)}: {n_tasks} tasks, "
        f"{sum(len(t) for t in tasks)} records, {recipe.steps} steps"
    )
    bar = Progress(0, "steps")
    result = adapt_to_cpu(
        tasks,
        target,
        init_path=init_path,
        recipe=recipe,
        seed=seed,
        report_fraction=report_fraction if report else 0.0,
        ks=ks,
        sources=sources,
        progress=bar.follow,
    )
    bar.close()
    if result.before is not None and result.after is not None:
        from ms_meta.eval import text_table

        click.echo(
            f"\nheld out: {len(result.held_out)} of {n_tasks} tasks; 'after' is the recipe "
            "trained on the other tasks (the written weights are trained on all)"
        )
        click.echo(text_table([result.before, result.after]))
    result.checkpoint.meta["command"] = command_line()
    save_checkpoint(result.checkpoint, out)
    click.echo(
        f"wrote {out}: MetaCostModel(weights={str(out)!r}) in a search, --weights {out} for "
        "ms-meta eval and One-Shot tuning"
    )
