"""``ms-meta store``: import, export, inspect and compact the record store (no TVM needed)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ms_meta.cli.options import library_errors
from ms_meta.cli.progress import Progress

__all__ = ["store"]

store_path_option = click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The store file. Default: $MS_META_STORE, else $XDG_CACHE_HOME/ms-meta/records.sqlite "
    "(~/.cache/ms-meta/records.sqlite).",
)


def _open(path: Path | None, *, must_exist: bool):
    from ms_meta.errors import DatabaseError
    from ms_meta.store import SqlStore, default_store_path

    path = path or default_store_path()
    if must_exist and not path.is_file():
        raise DatabaseError(f"no record store at {path}")
    return SqlStore(path)


@click.group("store")
def store() -> None:
    """The record store: every measured record in one SQLite file, filed by target.

    \b
    Examples:
      ms-meta store import tuning_records/
      ms-meta store stats
      ms-meta store export ~/.cache/ms-meta/records.sqlite --out exported/
      ms-meta store gc --drop-failed
    """


@store.command("import")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="DB_DIR..."
)
@store_path_option
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="Records per transaction: an interrupted import loses at most this many.",
)
@library_errors
def import_command(paths: tuple[Path, ...], store_path: Path | None, batch: int) -> None:
    """Import MetaSchedule JSON databases into the store.

    A DB_DIR is a database directory (database_workload.json and database_tuning_record.json,
    plain or .gz) or a tree of them such as tuning_records/<target>/<task>/. A record already
    in the store (same workload, trace and target) is counted, not added again; files
    imported before are skipped, and an interrupted import resumes where it stopped.
    """
    from ms_meta.store import import_json_databases, scan_json_databases

    sources = scan_json_databases(paths)
    with _open(store_path, must_exist=False) as sql:
        progress = Progress(sum(s.lines for s in sources), unit="records")
        try:
            report = import_json_databases(sql, sources, batch_size=batch, on_lines=progress.update)
        finally:
            progress.close()
        for problem in report.problems:
            click.echo(f"warning: {problem}", err=True)
        click.echo(
            f"{report.databases} databases, {report.records_read} records read: "
            f"{report.added} added, {report.duplicates} already stored, "
            f"{report.malformed} unreadable, {report.already_imported} imported before "
            f"-> {sql.path}"
        )


@store.command("export")
@click.argument("store_file", type=click.Path(dir_okay=False, path_type=Path), metavar="STORE_PATH")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for one MetaSchedule JSON database per target and task (<target>/<task>/).",
)
@library_errors
def export_command(store_file: Path, out_dir: Path) -> None:
    """Write the store as MetaSchedule JSON databases (never overwrites a file)."""
    from ms_meta.store import export_json_databases

    with _open(store_file, must_exist=True) as sql:
        written = export_json_databases(sql, out_dir)
    click.echo(f"{len(written)} databases written under {out_dir}")


@store.command("stats")
@click.argument(
    "store_file",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="[STORE_PATH]",
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print machine-readable JSON.")
@library_errors
def stats_command(store_file: Path | None, as_json: bool) -> None:
    """Records, workloads and targets in the store (default: the user's store)."""
    from ms_meta.store.targets import target_key_label

    with _open(store_file, must_exist=True) as sql:
        stats = sql.stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    click.echo(f"store      {stats['path']} ({stats['file_bytes'] / 1e6:,.1f} MB)")
    click.echo(
        f"records    {stats['records']:,} ({stats['valid']:,} valid, "
        f"{stats['duplicates']:,} repeats counted)"
    )
    click.echo(f"workloads  {stats['workloads']:,}")
    click.echo(f"targets    {len(stats['targets'])}")
    for target in stats["targets"]:
        label = target_key_label(target["key"], target["config"])
        click.echo(
            f"  {label:<28} {target['records']:>10,} records {target['valid']:>10,} valid "
            f"{target['workloads']:>7,} workloads  [{target['key']}]"
        )


@store.command("gc")
@click.argument(
    "store_file",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="[STORE_PATH]",
)
@click.option(
    "--drop-failed",
    is_flag=True,
    default=False,
    help="Also delete failed (build/run error) records.",
)
@click.option(
    "--keep-best",
    type=int,
    default=None,
    metavar="N",
    help="Also keep only the N fastest valid records of each workload and target.",
)
@library_errors
def gc_command(store_file: Path | None, drop_failed: bool, keep_best: int | None) -> None:
    """Compact the store file.

    By default nothing measured is deleted: unused trace data is dropped, the write-ahead log
    is checkpointed and the file is rewritten without free pages (VACUUM). --drop-failed and
    --keep-best N delete records (failed ones are training data for cost models; keep them
    unless space matters).
    """
    with _open(store_file, must_exist=True) as sql:
        result = sql.gc(drop_failed=drop_failed, keep_best=keep_best)
    click.echo(
        f"{result['records_deleted']:,} records deleted; "
        f"{result['bytes_before'] / 1e6:,.1f} MB -> {result['bytes_after'] / 1e6:,.1f} MB"
    )
