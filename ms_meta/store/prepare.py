"""Import sources read into rows ready for SQLite, in worker processes when the import is large.

Most of an import's time is spent outside SQLite: splitting each record line into its parts
(:mod:`ms_meta.store.msjson`), hashing instruction lists and traces, compressing new instruction
lists. That work is independent per database, so a large import hands it to worker processes
(as many as the machine has cores) while the importing process only writes rows; a small one
does it in-process. The rows and their order are the same either way.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path

from ms_meta.data.layout import DatabaseFiles
from ms_meta.errors import DatabaseError
from ms_meta.run_secs import FAILED_RUN_SECS
from ms_meta.store.msjson import LineCache, mean_run_secs, split_record_line, split_workload_line
from ms_meta.store.rows import hash64, trace_hash

__all__ = [
    "PARALLEL_MIN_BYTES",
    "PreparedSource",
    "default_workers",
    "open_database_file",
    "prepare",
    "prepare_source",
]

# Below this many bytes of record files an import runs in-process (starting workers costs more).
PARALLEL_MIN_BYTES = 64 << 20
_AHEAD = 4  # sources read ahead per worker


@dataclass
class PreparedSource:
    """One database read for import.

    Attributes
    ----------
    workloads : list of (shash, module) or None
        Its workload lines (None for an unreadable one; records refer to lines by index).
    rows : list of tuple
        One per readable record line after the lines already imported: ``(line number,
        workload line index, target text, trace hash, insts hash, decisions, run_secs, mean
        latency, args_info)``.
    targets : dict
        Each target text of ``rows`` with its parsed value.
    insts : dict
        Each instruction list hash of ``rows`` with its zlib-compressed text.
    lines, records_read, malformed, bad_workloads : int
        Record lines in all; lines read this time; unreadable record lines and workload lines.
    """

    workloads: list[tuple[str, str] | None] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    targets: dict = field(default_factory=dict)
    insts: dict[int, bytes] = field(default_factory=dict)
    lines: int = 0
    records_read: int = 0
    malformed: int = 0
    bad_workloads: int = 0


def open_database_file(path: Path) -> io.BufferedIOBase:
    """A database file opened for reading bytes (gzip-compressed ones too)."""
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as err:
        raise DatabaseError(f"cannot read {path}: {err.strerror or err}") from None


def _lines(path: Path) -> Iterator[str]:
    with open_database_file(path) as handle:
        for raw in handle:
            yield raw.decode("utf-8", errors="replace").rstrip("\r\n")


def prepare_source(
    files: DatabaseFiles, done: int, cache: LineCache | None = None
) -> PreparedSource:
    """Read one database: its workload lines, and its record lines after the first ``done``."""
    out = PreparedSource()
    for line in _lines(files.workload) if files.workload else ():
        try:
            out.workloads.append(split_workload_line(line))
        except ValueError:
            out.workloads.append(None)
            out.bad_workloads += 1
    cache = cache if cache is not None else LineCache()
    hashes: dict[str, int] = {}  # instruction list text -> hash, for this source
    texts: dict[str, str] = {}  # one object per repeated small text: pickled once
    n_workloads = len(out.workloads)
    line_no = 0
    for line in _lines(files.records) if files.records else ():
        line_no += 1
        if line_no <= done:
            continue
        out.records_read += 1
        try:
            index, rec = split_record_line(line, cache)
        except ValueError:
            out.malformed += 1
            continue
        if index >= n_workloads or out.workloads[index] is None:
            out.malformed += 1
            continue
        insts_hash = hashes.get(rec.insts)
        if insts_hash is None:
            insts_hash = hashes[rec.insts] = hash64(rec.insts.encode())
            out.insts[insts_hash] = zlib.compress(rec.insts.encode(), 1)
        target = texts.setdefault(rec.target, rec.target)
        if target not in out.targets:
            out.targets[target] = rec.target_value
        out.rows.append(
            (
                line_no,
                index,
                target,
                trace_hash(insts_hash, rec.decisions),
                insts_hash,
                rec.decisions,
                rec.run_secs,
                mean_run_secs(rec.run_secs_value, FAILED_RUN_SECS),
                texts.setdefault(rec.args_info, rec.args_info),
            )
        )
    out.lines = line_no
    return out


def _prepare_in_worker(files: DatabaseFiles, done: int) -> PreparedSource:
    return prepare_source(files, done, _worker_cache())


_CACHE: list[LineCache] = []


def _worker_cache() -> LineCache:
    if not _CACHE:
        _CACHE.append(LineCache())
    return _CACHE[0]


def default_workers() -> int:
    """Worker processes for a large import: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def prepare(jobs: Iterable[tuple[DatabaseFiles, int]], *, workers: int) -> Iterator[PreparedSource]:
    """:func:`prepare_source` of each ``(files, lines already imported)``, in order; in
    ``workers`` processes when more than one.

    ``jobs`` is consumed lazily (a few sources ahead of what was yielded), so the caller may
    decide each source's ``done`` from what it committed before.
    """
    if workers <= 1:
        cache = LineCache()
        for files, done in jobs:
            yield prepare_source(files, done, cache)
        return
    pending: list[Future] = []
    jobs = iter(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
        try:
            for files, done in jobs:
                pending.append(pool.submit(_prepare_in_worker, files, done))
                while len(pending) >= workers * _AHEAD:
                    yield _result(pending.pop(0))
            while pending:
                yield _result(pending.pop(0))
        finally:
            for future in pending:
                future.cancel()


def _context() -> BaseContext:
    """Fork where there is fork: a spawned worker would import the caller's main script again
    (which need not guard itself with ``if __name__ == "__main__"``). The workers run only this
    module's pure-Python reading, never TVM."""
    methods = get_all_start_methods()
    return get_context("fork" if "fork" in methods else "spawn")


def _result(future: Future) -> PreparedSource:
    try:
        return future.result()
    except DatabaseError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DatabaseError(f"cannot read a database: {err}") from None
