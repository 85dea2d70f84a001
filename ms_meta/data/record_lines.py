"""Line-level reading of MetaSchedule's JSON-lines database files, never raising on a line.

Every line of a workload or record file is read (plain or gzip, possibly a multi-member gzip
stream), parsed with :mod:`json` and checked for the shape MetaSchedule expects, without TVM.
A line that is unusable is counted in a :class:`SkipReport` with its file, line number, kind
and reason, so that ``db validate`` can say exactly what is wrong and the readers built on this
(:mod:`ms_meta.data.records`) keep every good line.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ms_meta.data import layout

__all__ = [
    "MALFORMED",
    "REBUILD",
    "SKIP_KINDS",
    "STRUCTURE",
    "UNDECODABLE_WORKLOAD",
    "UNKNOWN_WORKLOAD",
    "UNREADABLE",
    "Line",
    "SkipReport",
    "SkippedLine",
    "check_record",
    "check_workload",
    "json_line",
    "read_lines",
    "with_last",
]

logger = logging.getLogger(__name__)


# Kinds of skipped lines (the ``kind`` of a :class:`SkippedLine`).
MALFORMED = "malformed"  # not JSON (garbled, truncated), not UTF-8, or blank

STRUCTURE = "structure"  # valid JSON of the wrong shape

UNKNOWN_WORKLOAD = "unknown-workload"  # workload index outside the workload file

UNDECODABLE_WORKLOAD = "undecodable-workload"  # a workload line, or a record of one, unusable

REBUILD = "rebuild"  # TuningRecord.from_json failed (trace does not replay on the workload)

UNREADABLE = "unreadable"  # a whole file or its tail cannot be read (I/O, gzip), or is missing

SKIP_KINDS = (MALFORMED, STRUCTURE, UNKNOWN_WORKLOAD, UNDECODABLE_WORKLOAD, REBUILD, UNREADABLE)


@dataclass(frozen=True)
class SkippedLine:
    """One line (or, with ``line == 0``, one whole file) that was not used."""

    file: Path
    line: int
    kind: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.kind}: {self.reason}"


@dataclass
class SkipReport:
    """What was skipped while reading, plus the counts a reader of the data should know.

    Attributes
    ----------
    skipped : list of SkippedLine
        Every unusable line, in reading order.
    failed_runs : int
        Records kept but whose run failed (``run_secs`` missing, empty or >= 1e9).
    targets : Counter
        Canonical target JSON -> number of records measured on it.
    """

    skipped: list[SkippedLine] = field(default_factory=list)
    failed_runs: int = 0
    targets: Counter[str] = field(default_factory=Counter)

    def add(self, file: Path, line: int, kind: str, reason: str) -> None:
        """Record one skipped line."""
        item = SkippedLine(Path(file), line, kind, reason)
        logger.debug("skipped %s", item)
        self.skipped.append(item)

    @property
    def num_skipped(self) -> int:
        """Number of skipped lines (and unreadable files)."""
        return len(self.skipped)

    @property
    def num_targets(self) -> int:
        """Number of distinct targets among the records kept."""
        return len(self.targets)

    def by_kind(self) -> dict[str, int]:
        """Skipped lines per kind, only kinds that occur."""
        counts = Counter(item.kind for item in self.skipped)
        return {kind: counts[kind] for kind in SKIP_KINDS if counts[kind]}

    def extend(self, other: SkipReport) -> None:
        """Add another report's counts to this one."""
        self.skipped.extend(other.skipped)
        self.failed_runs += other.failed_runs
        self.targets.update(other.targets)

    def summary(self) -> str:
        """A one-line summary, e.g. ``3 lines skipped (2 malformed, 1 unknown-workload)``."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.by_kind().items())
        text = f"{self.num_skipped} lines skipped" + (f" ({kinds})" if kinds else "")
        return f"{text}; {self.failed_runs} failed runs; {self.num_targets} targets"


@dataclass
class Line:
    number: int
    text: str | None  # None when the bytes are not UTF-8
    complete: bool  # ended with a newline


def read_lines(path: Path, skips: SkipReport) -> Iterator[Line]:
    """Every line of a plain or gzip (possibly multi-member) file, read-only, never raising.

    An unreadable file, or an unreadable tail of a gzip stream, is reported in ``skips``.
    """
    opener = gzip.open if path.name.endswith(layout.GZIP_SUFFIX) else open
    number = 0
    try:
        with opener(path, "rb") as f:
            for raw in f:
                number += 1
                try:
                    text: str | None = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
                yield Line(number, text, raw.endswith(b"\n"))
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        what = "the file cannot be read" if number == 0 else f"unreadable after line {number}"
        skips.add(path, number + 1 if number else 0, UNREADABLE, f"{what}: {err}")


def json_line(line: Line, path: Path, skips: SkipReport, is_last: bool) -> Any:
    """The JSON value of a line, or ``None`` (after reporting it) when it has none."""
    if line.text is None:
        skips.add(path, line.number, MALFORMED, "not UTF-8 text")
        return None
    if not line.text.strip():
        skips.add(path, line.number, MALFORMED, "blank line (MetaSchedule cannot load it)")
        return None
    try:
        return json.loads(line.text)
    except json.JSONDecodeError as err:
        truncated = is_last and not line.complete
        what = "truncated last line" if truncated else "not valid JSON"
        skips.add(path, line.number, MALFORMED, f"{what} ({err.msg} at column {err.colno})")
        return None


def check_workload(obj: Any) -> str | None:
    """Why a parsed workload line is unusable, or ``None`` if it looks decodable (TVM-free)."""
    if not (isinstance(obj, list) and len(obj) == 2 and all(isinstance(x, str) for x in obj)):
        return 'expected ["<structural hash>", "<base64 IRModule>"]'
    shash, encoded = obj
    if not shash.lstrip("-").isdigit():
        return f"structural hash {shash[:30]!r} is not a decimal integer"
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "the IRModule is not valid base64"
    if len(blob) < 8 or struct.unpack("<Q", blob[:8])[0] != len(blob) - 8:
        return "the IRModule's length prefix does not match its size (truncated?)"
    try:
        graph = json.loads(blob[8:])
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "the IRModule is not a JSON graph"
    if not isinstance(graph, dict) or "root_index" not in graph or "nodes" not in graph:
        return "the IRModule JSON has no root_index/nodes"
    return None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_record(rec: Any) -> str | None:
    """Why ``[trace, run_secs, target, args_info]`` is malformed, or ``None``."""
    if not (isinstance(rec, list) and len(rec) == 4):
        return "expected [trace, run_secs, target, args_info]"
    trace, run_secs, target, args_info = rec
    if not (isinstance(trace, list) and len(trace) == 2):
        return "trace must be [instructions, decisions]"
    insts, decisions = trace
    if not isinstance(insts, list) or not all(
        isinstance(i, list) and len(i) == 4 and isinstance(i[0], str) for i in insts
    ):
        return "trace instructions must be [name, inputs, attrs, outputs]"
    if not isinstance(decisions, list) or not all(
        isinstance(d, list) and len(d) == 2 and isinstance(d[0], int) for d in decisions
    ):
        return "trace decisions must be [instruction index, decision]"
    if run_secs is not None:
        if not isinstance(run_secs, list) or not all(_is_number(s) for s in run_secs):
            return "run_secs must be a list of numbers"
        if any(s < 0 for s in run_secs):
            return "run_secs has a negative time"
    if target is not None and not (
        isinstance(target, dict) and isinstance(target.get("kind"), str)
    ):
        return "target must be a JSON object with a 'kind'"
    if args_info is not None and not isinstance(args_info, list):
        return "args_info must be a list"
    return None


def with_last(lines: Iterable[Line]) -> Iterator[tuple[Line, bool]]:
    """Pair each line with whether it is the last one."""
    previous: Line | None = None
    for line in lines:
        if previous is not None:
            yield previous, False
        previous = line
    if previous is not None:
        yield previous, True
