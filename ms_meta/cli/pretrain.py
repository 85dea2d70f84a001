"""``ms-meta pretrain``: meta-train (or transfer-train) the GNN on tuning records.

``--from-store`` trains on the record store's records of one target (this machine's CPU by
default), e.g. to make weights for a CPU that ships none: they are exported as MetaSchedule JSON
databases beside the store file and read by the same data path as any records.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from ms_meta.cli.options import (
    FILE_PATH,
    command_line,
    default_record_paths,
    find_split,
    from_store_option,
    library_errors,
    load_parts,
    plain_target,
    records_argument,
    records_target,
    seed_option,
    split_option,
    target_option,
)

__all__ = ["VAL_SHOTS", "pretrain"]

VAL_SHOTS = 16  # support size of the per-epoch few-shot validation score


@click.command(
    epilog="""\b
Examples:
  ms-meta pretrain tuning_records/llvm-rocketlake-2c --out weights.pt   # committed split
  ms-meta pretrain tuning_records/llvm-rocketlake-2c --method transfer --out transfer.pt
  ms-meta pretrain tuning_records/llvm-rocketlake-2c --split none --out all_tasks.pt
  ms-meta pretrain ~/my_db tuning_records/llvm-rocketlake-2c --out mine.pt  # add your own
  ms-meta pretrain --from-store --out mine.pt     # the record store's records of this CPU
  ms-meta pretrain --from-store --init ms_meta/weights/llvm-rocketlake.pt --out mine.pt
"""
)
@records_argument
@split_option
@click.option(
    "--method",
    type=click.Choice(["fomaml", "reptile", "transfer"]),
    default="fomaml",
    show_default=True,
    help="First-order MAML, Reptile, or plain transfer pretraining.",
)
@click.option(
    "--epochs",
    type=click.IntRange(1),
    default=30,
    show_default=True,
    help="Most epochs (early stopping may end sooner).",
)
@click.option(
    "--patience",
    type=click.IntRange(0),
    default=6,
    show_default=True,
    help="Epochs without a better validation score before stopping (0: never).",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.15,
    show_default=True,
    help="Share of the training tasks set aside for validation and early stopping "
    "(0: none; then all --epochs run).",
)
@click.option(
    "--val-after-line",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Validate only on the records after this line of each task's record file, support "
    "first in record-file order (e.g. 64: the guided records after a 64-trial stock search); "
    "validation tasks are then drawn from the tasks that have enough of them. 0: a random "
    "support and query from all records.",
)
@click.option(
    "--val-metric",
    type=click.Choice(["pairwise", "top1"]),
    default="pairwise",
    show_default=True,
    help="What early stopping watches (mean of zero-shot and few-shot): pairwise ranking "
    "accuracy or top-1 score.",
)
@click.option(
    "--inner-steps",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Inner-loop gradient steps (also used at tuning time).",
)
@click.option(
    "--inner-lr",
    type=float,
    default=3e-3,
    show_default=True,
    help="Inner-loop learning rate (also used at tuning time).",
)
@click.option(
    "--lr",
    "outer_lr",
    type=float,
    default=1e-3,
    show_default=True,
    help="Meta (outer) learning rate.",
)
@click.option("--hidden", type=click.IntRange(4), default=64, show_default=True, help="GNN width.")
@click.option(
    "--listwise-weight",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="--method transfer: weight of a ListNet top-one loss beside the pairwise loss.",
)
@click.option(
    "--episodes",
    "episode_order",
    type=click.Choice(["random", "search"]),
    default="random",
    show_default=True,
    help="--method fomaml/reptile: an episode's support and query drawn at random from a "
    "task, or ('search') consecutive records of its record file and the records measured "
    "right after them, as a search adapts and then ranks.",
)
@click.option(
    "--out",
    type=FILE_PATH,
    required=True,
    help="Where to write the weights (atomically).",
)
@click.option(
    "--init",
    "init_path",
    type=FILE_PATH,
    default=None,
    help="Start from these weights (e.g. a --method transfer run) instead of a fresh model; "
    "its width is used.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue an interrupted run from OUT.state.pt.",
)
@click.option(
    "--eval/--no-eval",
    "run_eval",
    default=True,
    show_default=True,
    help="Evaluate on the held-out tasks at the end (as `ms-meta eval`).",
)
@from_store_option
@target_option
@seed_option
@library_errors
def pretrain(
    paths,
    split_path,
    method,
    epochs,
    patience,
    val_fraction,
    val_after_line,
    val_metric,
    inner_steps,
    inner_lr,
    outer_lr,
    hidden,
    listwise_weight,
    episode_order,
    out,
    init_path,
    resume,
    run_eval,
    from_store,
    target_json,
    seed,
):
    """Pretrain the GNN cost model across the tasks of tuning databases.

    RECORDS are tuning-record trees or MetaSchedule database directories (default:
    tuning_records/). Held-out tasks of the split are never trained on; a share of the
    training tasks validates each epoch. The run state is saved after each epoch, so an
    interrupted run resumes; one seed reproduces a run.
    """
    import torch

    from ms_meta.cli.progress import Progress
    from ms_meta.data.split import make_task_split
    from ms_meta.model.gnn import GNNConfig
    from ms_meta.model.pretrain import PretrainConfig, validation_records
    from ms_meta.model.pretrain import pretrain as run_pretrain
    from ms_meta.model.weights import Checkpoint, save_checkpoint

    torch.set_num_threads(1)  # measured faster than 2 on this 2-core machine beside a collector
    store_source = store_target = None
    if from_store is not None:
        exported, store_source, store_target = _export_store(from_store, target_json)
        paths = [*paths, exported]
    elif target_json is not None:
        raise click.UsageError("--target applies only to --from-store")
    paths = list(paths) or default_record_paths()
    split_file = find_split(paths, split_path)
    dataset, parts, _ = load_parts(paths, split_file)
    tasks = parts["train"].tasks if parts is not None else dataset.tasks
    held_out = parts["held_out"].tasks if parts is not None else []
    if not tasks:
        raise click.ClickException("the split leaves no training task with records")
    train_tasks, val_tasks = tasks, []
    pool = tasks
    if val_after_line:  # only tasks with enough records after the line can validate
        pool = [t for t in tasks if len(validation_records(t, val_after_line)) >= VAL_SHOTS + 2]
    if val_fraction > 0 and len(pool) >= 4:
        inner = make_task_split({t.split_name: t.op for t in pool}, val_fraction, seed=seed)
        val_names = set(inner["held_out"])
        train_tasks = [t for t in tasks if t.split_name not in val_names]
        val_tasks = [t for t in tasks if t.split_name in val_names]
    init_state, gnn_config = None, GNNConfig(hidden=hidden)
    if init_path is not None:
        from ms_meta.model.weights import load_checkpoint

        init_checkpoint = load_checkpoint(init_path)
        init_state, gnn_config = init_checkpoint.state_dict, init_checkpoint.gnn_config
    config = PretrainConfig(
        method=method,
        epochs=epochs,
        patience=patience,
        inner_steps=inner_steps,
        inner_lr=inner_lr,
        outer_lr=outer_lr,
        listwise_weight=listwise_weight,
        episode_order=episode_order,
        val_shots=VAL_SHOTS,
        val_after_line=val_after_line,
        val_metric=val_metric,
        seed=seed,
        gnn=gnn_config,
    )

    needed = config.support_min + 2  # an episode's smallest support and query
    if method != "transfer" and not any(len(t) >= needed for t in train_tasks):
        raise click.ClickException(
            f"no training task has the {needed} records a {method} episode needs (support "
            "and query); measure more records, or use --method transfer"
        )

    def names(part) -> list[str]:
        return sorted({t.split_name for t in part})

    groups_note = (
        f", {len(train_tasks)} measurement groups"
        if len(train_tasks) != len(names(train_tasks))
        else ""
    )
    click.echo(
        f"{method}: {len(names(train_tasks))} training tasks "
        f"({sum(len(t) for t in train_tasks)} records{groups_note}), "
        f"{len(names(val_tasks))} validation tasks, {len(names(held_out))} held out"
        + (f" (split {split_file})" if split_file else " (no split)")
    )
    state_path = out.with_name(out.name + ".state.pt")
    bar = Progress(0, "steps")
    where = f" after line {val_after_line}" if val_after_line else ""

    def on_epoch(report) -> None:
        bar.close()
        validation = (
            f"val {val_metric}{where} zero-shot {report.val_zero_shot:.3f}  "
            f"{config.val_shots}-shot {report.val_few_shot:.3f}  "
            if val_tasks
            else ""  # --val-fraction 0: nothing to report, not "nan"
        )
        click.echo(
            f"epoch {report.epoch:3d}  loss {report.train_loss:.4f}  {validation}"
            f"{report.seconds:.0f}s"
        )

    started = time.perf_counter()
    result = run_pretrain(
        train_tasks,
        val_tasks,
        config,
        state_path=state_path,
        resume=resume,
        init_state=init_state,
        progress=bar.follow,
        on_epoch=on_epoch,
    )
    bar.close()
    summary = result.summary()
    if result.resumed_from:
        click.echo(f"(resumed after epoch {result.resumed_from})")
    click.echo(
        f"best epoch {result.best_epoch} of {len(result.history)}"
        + (" (stopped early)" if result.stopped_early else "")
        + f"; {time.perf_counter() - started:.0f}s in this process"
    )
    meta = {
        "method": method,
        "init": str(init_path) if init_path else None,
        "pretrain_config": config.to_dict(),
        "adapt": {"steps": inner_steps, "lr": inner_lr},
        "data": {
            **dataset.summary(),
            "train_tasks": names(train_tasks),
            "val_tasks": names(val_tasks),
            "held_out_tasks": names(held_out),
            "sources": sorted({str(p) for p in paths}),
            "record_store": store_source,
            "split": str(split_file) if split_file else None,
        },
        "training": {**summary, "history": [vars(r) for r in result.history]},
        "command": command_line(),
    }
    save_checkpoint(
        Checkpoint(
            gnn_config=config.gnn,
            state_dict={k: v.detach().clone() for k, v in result.model.state_dict().items()},
            # weights made from the store are for its target, whatever other records joined
            target=store_target or records_target(dataset),
            meta=meta,
        ),
        out,
    )
    state_path.unlink(missing_ok=True)
    click.echo(f"wrote {out}")
    if run_eval and held_out:
        from ms_meta.cli.eval import print_evaluation

        print_evaluation(out, held_out, seed=seed)


def _export_store(from_store: str, target_json: str | None) -> tuple[Path, str, dict]:
    """Export the record store's records of the target as MetaSchedule JSON databases into
    ``<store file>.pretrain/`` (replacing an earlier export: a stable path lets the data set
    cache reuse what it featurized before); returns that directory, a description and the
    target (as the weights record it)."""
    from ms_meta.errors import DatabaseError
    from ms_meta.labels import target_label
    from ms_meta.store import SqlStore, export_json_databases, target_key
    from ms_meta.store.access import resolve_store_path
    from ms_meta.tuning.target import parse_target, target_summary

    path = resolve_store_path(from_store)
    if path is None or not path.is_file():
        raise DatabaseError(f"no record store at {path or from_store}")
    target = target_summary(parse_target(target_json))
    key = target_key(target)
    out = path.with_name(path.name + ".pretrain")
    with SqlStore(path) as store:
        count = store.count(key)
        if not count:
            raise DatabaseError(
                f"the record store {path} holds no records of {target_label(target)} "
                f"(key {key}); `ms-meta store stats {path}` lists its targets"
            )
        shutil.rmtree(out, ignore_errors=True)
        written = export_json_databases(store, out, key=key)
    click.echo(f"record store {path}: {count} records of {len(written)} tasks for "
               f"{target_label(target)}", err=True)  # fmt: skip
    return out, f"{path} ({key}, {count} records)", plain_target(target)
