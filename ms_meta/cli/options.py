"""Options, arguments and small routines shared by the ms-meta commands: each is defined once
(as in pip-tools' ``scripts/options.py``), so that one option reads, parses and explains the
same way in every command that takes it."""

from __future__ import annotations

import functools
import json
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ms_meta.data.layout import META_FILE, RECORD_FILE, RECORDS_DIR, SPLIT_FILE
from ms_meta.errors import MsMetaError

__all__ = [
    "ANY_CPU_WEIGHTS_FLAG",
    "DEFAULT_RECORDS",
    "DIR_PATH",
    "FILE_PATH",
    "TARGET_KEYS",
    "any_cpu_weights_option",
    "command_line",
    "default_record_paths",
    "feed_store",
    "find_split",
    "from_store_option",
    "json_option",
    "library_errors",
    "load_parts",
    "none_or",
    "parse_shots",
    "paths_argument",
    "plain_target",
    "quiet_meta_schedule",
    "records_argument",
    "records_target",
    "seed_option",
    "shots_option",
    "split_option",
    "store_option",
    "target_option",
    "work_dir_option",
]

logger = logging.getLogger(__name__)

DEFAULT_RECORDS = Path(RECORDS_DIR)

#: A file the command reads or writes (``--out weights.pt``, ``--json eval.json``, ...).
FILE_PATH = click.Path(dir_okay=False, path_type=Path)
#: A folder the command reads or writes (``--work-dir``, ``--out merged/``, ...).
DIR_PATH = click.Path(file_okay=False, path_type=Path)

#: The target keys that tell CPUs apart (as weights and records name their target).
TARGET_KEYS = ("kind", "mcpu", "num-cores", "mattr")

target_option = click.option(
    "--target",
    "target_json",
    default=None,
    metavar="JSON",
    help='Target as a JSON dict, e.g. \'{"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2}\'. '
    "Default: this machine's CPU.",
)

work_dir_option = click.option(
    "--work-dir",
    type=DIR_PATH,
    default=None,
    help="Where MetaSchedule writes its database and logs. Default: a new temporary directory.",
)

seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")

ANY_CPU_WEIGHTS_FLAG = "--any-cpu-weights"


def any_cpu_weights_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--any-cpu-weights`` to a command that takes weights: the command receives
    ``any_cpu_weights: bool`` and passes it on as ``allow_other_cpu`` (``MetaCostModel``,
    :func:`ms_meta.model.weights.check_target`).

    Weights trained for another CPU of the same target kind are refused without it (their
    ranking carries over only in part); with it they are used, with a warning.

    Examples
    --------
    ::

        @click.command()
        @click.option("--weights", ...)
        @any_cpu_weights_option
        def tune(weights, any_cpu_weights):
            MetaCostModel(weights=weights, allow_other_cpu=any_cpu_weights)
    """
    return click.option(
        ANY_CPU_WEIGHTS_FLAG,
        "any_cpu_weights",
        is_flag=True,
        default=False,
        help="Accept weights trained for another CPU of the same target kind (with a warning); "
        "without it they are refused.",
    )(func)


store_option = click.option(
    "--store",
    "store",
    default="default",
    show_default=True,
    metavar="PATH|default|none",
    help="Record store that receives every measured record and that One-Shot and "
    "MetaCostModel learn from (ms_meta.store; default: $MS_META_STORE, else "
    "~/.cache/ms-meta/records.sqlite); none: neither record nor learn.",
)


from_store_option = click.option(
    "--from-store",
    "from_store",
    is_flag=False,
    flag_value="default",
    default=None,
    metavar="[PATH]",
    help="Also take the target's records from the record store (PATH: another store file than "
    "$MS_META_STORE / ~/.cache/ms-meta/records.sqlite); with no RECORDS, those alone.",
)

paths_argument = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="PATH..."
)

json_option = click.option(
    "--json", "as_json", is_flag=True, default=False, help="Print machine-readable JSON."
)


def parse_shots(ctx: click.Context | None, param: click.Parameter | None, value: str):
    """``--ks`` as sorted distinct shot counts: ``"0,8,16"`` -> ``(0, 8, 16)``; a
    ``click.BadParameter`` for anything but integers of 0 or more."""
    try:
        shots = tuple(sorted({int(k) for k in value.split(",") if k.strip()}))
    except ValueError:
        raise click.BadParameter(
            f"takes integers like 0,8, not {value!r}", ctx, param, param_hint="--ks"
        ) from None
    if not shots or shots[0] < 0:
        raise click.BadParameter(
            f"takes shots of 0 or more, got {value!r}", ctx, param, param_hint="--ks"
        )
    return shots


def shots_option(default: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--ks``: the support sizes a cost model is scored at (0 = zero-shot), parsed by
    :func:`parse_shots` into ``ks: tuple[int, ...]``."""
    return click.option("--ks", default=default, show_default=True, callback=parse_shots, help=help)


def command_line() -> str:
    """The command as the user ran it (``ms-meta ...``), for the files it writes to record."""
    return shlex.join(["ms-meta", *sys.argv[1:]])


def plain_target(target: dict[str, Any]) -> dict[str, Any]:
    """``target`` reduced to the keys that tell CPUs apart (:data:`TARGET_KEYS`), those set."""
    return {k: target[k] for k in TARGET_KEYS if target.get(k)}


def feed_store(store: str | None, *paths: Path) -> None:
    """Add the MetaSchedule databases at ``paths`` to the record store ``store`` (a
    ``--store`` value), and say how many records it gained; a store that cannot take them
    costs a warning, never the command (:func:`ms_meta.store.feed.feed_json_databases`)."""
    store = none_or(store)
    # a task folder a stopped run created before its first batch holds no records yet
    paths = tuple(p for p in paths if next(Path(p).glob("**/database_tuning_record.json*"), None))
    if store is None or not paths:
        return
    from ms_meta.store.feed import feed_json_databases

    report = feed_json_databases(*paths, store_path=None if store == "default" else store)
    if report is not None:
        click.echo(f"record store: +{report.added} records", err=True)


def none_or(value: str | None) -> str | None:
    """``None`` for the word ``none`` (any case) or no value, else the value: how the
    PATH|default|none options (``--weights``, ``--library``, ``--one-shot-library``) say "none"."""
    return None if value is None or value.lower() == "none" else value


def library_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ms-meta's own errors into a one-line message and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MsMetaError as err:
            raise click.ClickException(str(err)) from None

    return wrapper


def quiet_meta_schedule() -> None:
    """MetaSchedule prints INFO tables to stdout; keep the terminal for ms-meta's own output."""
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)


# ---- tuning records as input (``pretrain`` and ``eval``) -----------------------------------


def default_record_paths() -> list[Path]:
    """``tuning_records/`` when it holds the records of one target; a clear error otherwise.

    Latencies of different CPUs do not mix in one model, so with several target directories
    the user names the one to use.
    """
    root = DEFAULT_RECORDS
    targets = (
        sorted(
            child.name
            for child in root.iterdir()
            if child.is_dir() and next(child.glob(f"*/{RECORD_FILE}"), None)
        )
        if root.is_dir()
        else []
    )
    if len(targets) > 1:
        raise click.UsageError(
            f"{root}/ holds records of {len(targets)} targets ({', '.join(targets)}); "
            f"name the one to use, e.g. {root / targets[0]}"
        )
    return [root]


def records_argument(func: Callable[..., Any]) -> Callable[..., Any]:
    """The ``[RECORDS]...`` argument (``paths``): record trees or database directories."""
    return click.argument(
        "paths", nargs=-1, type=click.Path(path_type=Path), metavar="[RECORDS]..."
    )(func)


split_option = click.option(
    "--split",
    "split_path",
    type=FILE_PATH,
    default=None,
    help=f"Task split (JSON from `ms-meta db split`). Default: {SPLIT_FILE} inside the records "
    "tree if there is exactly one; `--split none` trains on every task.",
)


def find_split(paths: list[Path], split_path: Path | None) -> Path | None:
    """The split to use: the given one, ``None`` for ``none``, else the tree's only split file."""
    if split_path is not None:
        return None if str(split_path).lower() == "none" else split_path
    found = sorted({p for root in paths if root.is_dir() for p in root.rglob(SPLIT_FILE)})
    if len(found) > 1:
        raise click.UsageError(
            f"several {SPLIT_FILE} files under the records: pick one with --split "
            + ", ".join(map(str, found))
        )
    return found[0] if found else None


def load_parts(paths: list[Path], split_path: Path | None, *, quiet: bool = False):
    """Build the data set (cached) and split it: ``(dataset, parts or None, split)``."""
    from ms_meta.cli.progress import Progress
    from ms_meta.data.dataset import build_dataset
    from ms_meta.data.split import read_split

    bar = None if quiet else Progress(0, "records")
    dataset = build_dataset(paths, progress=None if bar is None else bar.follow)
    if bar is not None:
        bar.close()
    if not dataset.tasks:
        raise click.ClickException(
            "no usable tuning records in "
            + ", ".join(map(str, paths))
            + f" ({dataset.skips.summary()})"
        )
    split = read_split(split_path) if split_path is not None else None
    parts = dataset.split(split) if split is not None else None
    return dataset, parts, split


def records_target(dataset) -> dict | None:
    """The target named by the records' ``meta.json`` files, when they all agree."""
    targets = set()
    for task in dataset.tasks:
        meta = Path(task.source) / META_FILE
        try:
            target = json.loads(meta.read_text()).get("target")
            if isinstance(target, str):  # stored as a JSON string (MetaSchedule's own style)
                target = json.loads(target)
        except (OSError, ValueError, AttributeError):
            target = None
        if isinstance(target, dict) and target:
            kept = {k: target.get(k) for k in ("kind", "mcpu", "num-cores")}
            if target.get("mattr"):  # e.g. AVX-512 turned off: other kernels than the bare mcpu
                kept["mattr"] = target["mattr"]
            targets.add(json.dumps(kept, sort_keys=True))
    if len(targets) == 1:
        return json.loads(targets.pop())
    if len(targets) > 1:
        logger.warning("records of several targets: %s", ", ".join(sorted(targets)))
    return None
