"""``ms-meta db``: inspect, merge, validate and split MetaSchedule tuning databases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ms_meta.cli.options import (
    DIR_PATH,
    FILE_PATH,
    json_option,
    library_errors,
    paths_argument,
    seed_option,
)

__all__ = ["db"]

# Problems listed per database before "... and N more".
_MAX_LISTED = 20


@click.group("db")
def db() -> None:
    """Inspect, merge, validate and split MetaSchedule tuning databases.

    A PATH is a database directory (database_workload.json and database_tuning_record.json,
    plain or .gz), a directory searched recursively for them (such as tuning_records/), or one
    record file whose workload file lies beside it. Input files are never modified.
    """


def _warn_skipped(skipped: int, kinds: dict[str, int]) -> None:
    if skipped:
        listing = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        click.echo(
            f"warning: {skipped} unreadable lines skipped ({listing}); "
            "run `ms-meta db validate` for details",
            err=True,
        )


def _format_us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _print_stats(result: dict[str, Any]) -> None:
    rows = [
        (
            t["task"],
            t["op"],
            str(t["records"]),
            str(t["failed"]),
            _format_us(t["best_us"]),
            t["target"],
        )
        for t in result["tasks"]
    ]
    header = ("task", "op", "records", "failed", "best µs (mean)", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3, 4}

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    if rows:
        click.echo(line(header))
    for row in rows:
        click.echo(line(row))
    totals = result["totals"]
    click.echo(
        f"\ntotal: {totals['tasks']} tasks, {totals['records']} records, "
        f"{totals['failed']} failed, {totals['databases']} databases, "
        f"{totals['targets']} targets"
    )
    click.echo("best µs: the lowest mean of run_secs over a task's records (MetaSchedule's order)")
    click.echo("\nper operator:")
    op_width = max([len("op"), len("total"), *(len(op) for op in result["operators"])])
    click.echo(f"  {'op'.ljust(op_width)}  {'tasks':>5}  {'records':>7}  {'hours':>6}")
    for op, counts in result["operators"].items():
        click.echo(
            f"  {op.ljust(op_width)}  {counts['tasks']:>5}  {counts['records']:>7}  "
            f"{counts['measure_hours']:>6.2f}"
        )
    click.echo(
        f"  {'total'.ljust(op_width)}  {totals['tasks']:>5}  {totals['records']:>7}  "
        f"{totals['measure_hours']:>6.2f}"
    )
    click.echo("hours: measuring time recorded in meta.json (collector and ingested sources)")


@db.command(
    epilog="""\b
Examples:
  ms-meta db stats tuning_records/
  ms-meta db stats tuning_records/llvm-rocketlake-2c/mm_512 --json
"""
)
@paths_argument
@json_option
@click.option(
    "--summary", is_flag=True, help="Only the totals per operator (for thousands of tasks)."
)
@library_errors
def stats(paths: tuple[Path, ...], as_json: bool, summary: bool) -> None:
    """Per-task record counts, failed runs and best latency, with totals per operator.

    A PATH may also be a folder of packed parts (``ms-meta db pack``) or one part."""
    from ms_meta.data.db_check import stats as compute_stats

    result = compute_stats(paths)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_stats({**result, "tasks": []} if summary else result)
    _warn_skipped(result["totals"]["skipped_lines"], result["skipped"])
    for folder in result["unreadable"]:
        click.echo(
            f"warning: unreadable folder left out: {folder['path']}: {folder['reason']}", err=True
        )


@db.command(
    epilog="""\b
Examples:
  ms-meta db merge run1/ run2/ --out merged/
  ms-meta db merge new_run/ --out tuning_records/llvm-rocketlake-2c/mm_512 --append
"""
)
@click.argument(
    "sources", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="SRC..."
)
@click.option(
    "--out",
    required=True,
    type=DIR_PATH,
    help="Directory to write the merged database to.",
)
@click.option(
    "--append",
    is_flag=True,
    default=False,
    show_default=True,
    help="Add the records not yet present to the database already in --out (append-only). "
    "Waits a few seconds for a collector writing --out, then refuses.",
)
@click.option(
    "--skip-unreadable",
    is_flag=True,
    default=False,
    help="Merge the rest when a source folder cannot be read (by default the merge is "
    "refused, since the result would lack its records).",
)
@library_errors
def merge(sources: tuple[Path, ...], out: Path, append: bool, skip_unreadable: bool) -> None:
    """Merge databases into one, dropping duplicate records (same workload, trace and target).

    Refused, writing nothing, when the sources hold no usable record."""
    from ms_meta.data.merge import merge_databases

    result = merge_databases(sources, out, append=append, skip_unreadable=skip_unreadable)
    click.echo(
        f"{result.out}: added {result.workloads_added} workloads and {result.records_added} "
        f"records ({result.duplicates} duplicates dropped"
        + (f", {result.existing_records} records already there" if append else "")
        + ")"
    )
    if result.skipped_lines:
        click.echo(
            f"warning: {result.skipped_lines} unreadable source lines were left out; "
            "run `ms-meta db validate` on the sources for details",
            err=True,
        )


@db.command(
    epilog="""\b
Exit status: 0 when every database is usable, 1 otherwise (a folder that cannot be read
counts as a database with a problem).

\b
Examples:
  ms-meta db validate tuning_records/
  ms-meta db validate my_work_dir/ --strict --deep
"""
)
@paths_argument
@click.option(
    "--strict",
    is_flag=True,
    default=False,
    show_default=True,
    help="Count failed runs (run_secs >= 1e9) as problems, not just report them.",
)
@click.option(
    "--deep",
    is_flag=True,
    default=False,
    show_default=True,
    help="Also decode every workload and rebuild every record with TVM (slow).",
)
@json_option
@click.pass_context
@library_errors
def validate(
    ctx: click.Context, paths: tuple[Path, ...], strict: bool, deep: bool, as_json: bool
) -> None:
    """Report malformed lines, unknown workloads, failed runs, mixed targets, empty databases."""
    from ms_meta.data.db_check import validate as run_validate

    reports = run_validate(paths, strict=strict, deep=deep)
    bad = [r for r in reports if not r.ok]
    if as_json:
        payload = [
            {
                "directory": str(r.files.directory),
                "ok": r.ok,
                "workloads": r.workloads,
                "records": r.records,
                "failed": r.failed,
                "problems": r.problems,
                "warnings": r.warnings,
            }
            for r in reports
        ]
        click.echo(json.dumps(payload, indent=2))
    else:
        for r in reports:
            status = "ok  " if r.ok else "FAIL"
            click.echo(
                f"{status} {r.files.directory}: {r.workloads} workloads, {r.records} records, "
                f"{r.failed} failed"
            )
            for text in r.problems[:_MAX_LISTED]:
                click.echo(f"  error: {text}")
            if len(r.problems) > _MAX_LISTED:
                click.echo(f"  ... and {len(r.problems) - _MAX_LISTED} more errors")
            for text in r.warnings:
                click.echo(f"  warning: {text}")
        click.echo(f"\n{len(reports)} databases checked, {len(bad)} with problems")
    if bad:
        ctx.exit(1)


@db.command(
    epilog="""\b
Examples:
  ms-meta db split tuning_records/ --out split.json
  ms-meta db split tuning_records/ --held-out-fraction 0.3 --seed 1 --out split.json
  ms-meta db split tuning_records/ --library --out tuning_records/llvm-rocketlake-2c/split.json
  ms-meta db split tuning_records/ --library --extend --out OLD_SPLIT.json  # adds new tasks
"""
)
@paths_argument
@click.option(
    "--library",
    is_flag=True,
    default=False,
    help="Also split every named task of the workload library, measured or not, so tasks "
    "collected later already have a side.",
)
@click.option(
    "--held-out-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of each operator kind's tasks held out from training.",
)
@seed_option
@click.option(
    "--out",
    type=FILE_PATH,
    default=Path("split.json"),
    show_default=True,
    help="Where to write the split (JSON).",
)
@click.option(
    "--extend",
    is_flag=True,
    default=False,
    help="Keep every task of the existing OUT on its side and add only the tasks it lacks "
    "(with OUT's fraction and seed), so that held-out figures stay comparable.",
)
@library_errors
def split(
    paths: tuple[Path, ...],
    library: bool,
    held_out_fraction: float,
    seed: int,
    out: Path,
    extend: bool,
) -> None:
    """Split whole tasks into training and held-out sets, stratified by operator kind.

    A fused conv2d+bias+relu task and the plain conv2d of the same shape always land on the same
    side."""
    from ms_meta.data.records import load_databases
    from ms_meta.data.split import extend_task_split, make_task_split, read_split, write_split
    from ms_meta.errors import DatabaseError
    from ms_meta.workloads import all_named

    if extend and not out.is_file():
        raise click.UsageError(f"--extend needs an existing split at --out ({out} is missing)")
    recordset = load_databases(paths)
    for folder in recordset.unreadable:
        click.echo(f"warning: unreadable folder left out: {folder}", err=True)
    tasks = recordset.tasks()
    if library:
        tasks = {**{w.name: w.op for w in all_named()}, **tasks}
    if not tasks:
        raise DatabaseError("no task with tuning records to split in " + ", ".join(map(str, paths)))
    if extend:
        result = extend_task_split(read_split(out), tasks)
        write_split(out, result)
        added = result["extended"]
        click.echo(f"{out}: added {len(added)} task(s); no task changed side")
        for name in added:
            side = "held out" if name in result["held_out"] else "train"
            click.echo(f"  {name} ({result['ops'][name]}): {side}")
        return
    result = make_task_split(tasks, held_out_fraction=held_out_fraction, seed=seed)
    write_split(out, result)
    ops = result["ops"]
    click.echo(f"{out}: {len(result['train'])} training tasks, {len(result['held_out'])} held out:")
    for name in result["held_out"]:
        click.echo(f"  {name} ({ops[name]})")


@db.command(
    epilog="""\b
Examples:
  ms-meta db pack breadth_work/llvm-rocketlake-2c
  ms-meta db pack breadth_work/llvm-rocketlake-2c --out tuning_records/llvm-rocketlake-2c-breadth

\b
The work folders are left in place; a task already in a part is never packed again.
"""
)
@click.argument("work_dir", type=DIR_PATH)
@click.option(
    "--out",
    type=DIR_PATH,
    default=None,
    help="Folder of the parts.  [default: tuning_records/<WORK_DIR name>-breadth]",
)
@click.option("--max-tasks", type=click.IntRange(min=1), default=None, help="Tasks per part.")
@click.option(
    "--min-tasks",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Write no part when fewer tasks are finished.",
)
@click.option(
    "--min-share",
    type=click.FloatRange(0, 1),
    default=0.75,
    show_default=True,
    help="Share of the records a task's collector asked for that makes it finished (searches "
    "that keep proposing measured schedules end a record or two short).",
)
@library_errors
def pack(
    work_dir: Path, out: Path | None, max_tasks: int | None, min_tasks: int, min_share: float
) -> None:
    """Pack the finished tasks of a collection's work folder (one target's folder, as
    ``collect --out`` makes it) into the next compressed part ``part-NNNN.tar.gz``."""
    from ms_meta.data.layout import RECORDS_DIR
    from ms_meta.data.pack import pack_tasks

    out = out or Path(RECORDS_DIR) / f"{Path(work_dir).resolve().name}-breadth"
    result = pack_tasks(
        work_dir, out, max_tasks=max_tasks, min_tasks=min_tasks, min_share=min_share
    )
    if result.part is None:
        click.echo(f"nothing to pack: no new finished task in {work_dir} (parts in {out})")
    else:
        size = result.part.stat().st_size
        ops = ", ".join(f"{op} {n}" for op, n in sorted(result.operators.items()))
        click.echo(
            f"{result.part}: {len(result.tasks)} tasks, {result.records} records, "
            f"{size / 2**20:.2f} MiB ({ops})"
        )
    if result.skipped_locked:
        click.echo(
            f"warning: {len(result.skipped_locked)} finished task(s) left for the next part: "
            "locked by a collector",
            err=True,
        )


@db.command(
    epilog="""\b
Examples:
  ms-meta db unpack tuning_records/llvm-rocketlake-2c-breadth --out /tmp/breadth
  ms-meta db unpack tuning_records/llvm-rocketlake-2c-breadth/part-0001.tar.gz --out part1/
"""
)
@click.argument("packed", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=DIR_PATH,
    help="Folder to write one plain MetaSchedule database per task to (OUT/<task>/).",
)
@click.option("--task", "tasks", multiple=True, help="Only these tasks (repeatable).")
@library_errors
def unpack(packed: Path, out: Path, tasks: tuple[str, ...]) -> None:
    """Write packed tasks (a folder of parts, or one part) back as plain MetaSchedule
    databases, byte for byte; refuses to overwrite a task folder already in OUT."""
    from ms_meta.data.pack import unpack as run_unpack

    result = run_unpack(packed, out, tasks=set(tasks) or None)
    click.echo(f"{out}: {len(result.tasks)} tasks, {result.records} records")


@db.command(
    epilog="""\b
Examples:
  ms-meta db remeasure tuning_records/llvm-rocketlake-2c --top 16 --realtime
  ms-meta db remeasure tuning_records/llvm-rocketlake-2c/conv2d_nchwc_1_512_7_7_512_3_3_1_1

\b
New records are appended; meta.json marks their lines with the thread count. Ctrl-C stops
after the batch in flight, and the same command continues where it stopped.
"""
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Fastest distinct schedules per task to time again.",
)
@click.option("--task", "tasks", multiple=True, help="Only these tasks (repeatable).")
@click.option(
    "--realtime",
    is_flag=True,
    help="Time each schedule SCHED_FIFO (root or CAP_SYS_NICE), as `collect --realtime` does.",
)
@click.option(
    "--cache-flush/--no-cache-flush",
    default=True,
    show_default=True,
    help="Flush the CPU caches before each run, as a model's layers meet their weights.",
)
@library_errors
def remeasure(
    paths: tuple[Path, ...], top: int, tasks: tuple[str, ...], realtime: bool, cache_flush: bool
) -> None:
    """Time the fastest schedules of each task folder again on as many runtime threads as
    their target's num-cores, with cold caches, and append them as new records. A PATH is a
    task folder or a folder of task folders.

    Records measured before the runner set the thread count ran on TVM's default, one thread
    on a 2-vCPU x86 guest, and warm: inside a model a layer's weights come from memory.
    `ms-meta library build` ranks a task by the records timed like that once it has some."""
    from ms_meta.cli.collect import stop_on_first_interrupt
    from ms_meta.cli.options import quiet_meta_schedule
    from ms_meta.cli.progress import Progress
    from ms_meta.data.layout import META_FILE
    from ms_meta.data.remeasure import remeasure_task
    from ms_meta.tuning.builder import make_builder
    from ms_meta.tuning.measure import MeasureSettings, make_local_runner

    quiet_meta_schedule()
    folders = []
    for path in paths:
        if (path / META_FILE).is_file():
            folders.append(path)
        else:
            folders.extend(sorted(p.parent for p in path.glob(f"*/{META_FILE}")))
    if tasks:
        folders = [f for f in folders if f.name in set(tasks)]
    if not folders:
        raise click.ClickException(f"no task folder (with {META_FILE}) under the paths given")
    cache: dict[int, tuple[object, object]] = {}

    def measurer(threads: int) -> tuple[object, object]:
        if threads not in cache:
            settings = MeasureSettings(realtime=realtime, threads=threads)
            if cache_flush:
                settings = settings.with_cold_caches()
            cache[threads] = (make_builder(), make_local_runner(settings))
        return cache[threads]

    progress = Progress(len(folders), unit="tasks")
    measured = 0
    with stop_on_first_interrupt() as stop:
        for folder in folders:
            result = remeasure_task(
                folder, top=top, measurer_factory=measurer, cache_flush=cache_flush, stop=stop
            )
            measured += result.measured
            if result.best_before is not None and result.best_after is not None:
                note = (
                    f"{result.task}: +{result.measured}, best {1e6 * result.best_before:,.1f} us "
                    f"-> {1e6 * result.best_after:,.1f} us on {result.threads} threads"
                    + (", cold caches" if cache_flush else "")
                )
            else:
                note = f"{result.task}: nothing to time"
            progress.update(1, note)
            if result.stopped:
                break
    click.echo(f"{measured} schedules timed again in {progress.done} task folder(s)")
