"""MetaSchedule's JSON database text, read and written byte for byte (no TVM needed).

A record line of ``database_tuning_record.json`` is
``[workload_index,[[INSTS,DECISIONS],RUN_SECS,TARGET,ARGS_INFO]]``; a workload line is
``["<structural hash>","<base64>"]``. The store keeps each part as the exact text MetaSchedule
wrote (latencies are printed with 20 significant digits, so a parse and re-print through Python
floats would change them) and joins the parts again on export; :func:`dumps` writes Python JSON
values in MetaSchedule's own format for records that come in as TVM objects.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ms_meta.run_secs import is_failed

__all__ = [
    "LineCache",
    "RecordText",
    "dumps",
    "join_record_line",
    "join_workload_line",
    "mean_run_secs",
    "split_record_line",
    "split_workload_line",
]

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"


@dataclass(frozen=True)
class RecordText:
    """One tuning record as the texts of its parts (without the workload index).

    Attributes
    ----------
    insts, decisions : str
        The trace's instruction list and decision list (``trace = [insts, decisions]``).
    run_secs, target, args_info : str
        The measured latencies, the target's config dict and the argument info, as JSON text.
    run_secs_value : list or None
        ``run_secs`` parsed (floats), for ordering.
    target_value : dict or None
        ``target`` parsed, for the target key.
    """

    insts: str
    decisions: str
    run_secs: str
    target: str
    args_info: str
    run_secs_value: list[float] | None
    target_value: dict[str, Any] | None

    @property
    def trace(self) -> str:
        """The trace JSON text ``[insts,decisions]``."""
        return f"[{self.insts},{self.decisions}]"


def _skip(text: str, pos: int, char: str) -> int:
    """Position after ``char`` at ``pos`` (whitespace around it allowed)."""
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    if pos >= len(text) or text[pos] != char:
        raise ValueError(f"expected {char!r} at column {pos}")
    pos += 1
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _value(text: str, pos: int) -> tuple[Any, str, int]:
    value, end = _DECODER.raw_decode(text, pos)
    return value, text[pos:end], end


def _decisions_and_run_secs(line: str, end: int) -> tuple[Any, int, int] | None:
    """After an instruction list ending at ``end``: the run_secs value and the ends of the
    decisions and of run_secs (positions of the ``],`` and ``,`` that follow them); None when
    the line is not laid out as MetaSchedule writes it."""
    decisions_value, end2 = _DECODER.raw_decode(line, end + 1)
    if line[end2 : end2 + 2] != "]," or not isinstance(decisions_value, list):
        return None
    run_secs_value, end3 = _DECODER.raw_decode(line, end2 + 2)
    if line[end3 : end3 + 1] != ",":
        return None
    return run_secs_value, end2, end3


def _split_compact(line: str) -> tuple[int, RecordText] | None:
    """The fast path for lines as MetaSchedule writes them (no whitespace); None otherwise."""
    comma = line.find(",", 1)
    if line[:1] != "[" or not line[1:comma].isdigit() or line[comma + 1 : comma + 3] != "[[":
        return None
    start = comma + 3
    insts_value, end = _DECODER.raw_decode(line, start)
    if line[end : end + 1] != "," or not isinstance(insts_value, list):
        return None
    tail = _decisions_and_run_secs(line, end)
    if tail is None:
        return None
    run_secs_value, end2, end3 = tail
    target_value, end4 = _DECODER.raw_decode(line, end3 + 1)
    if line[end4 : end4 + 1] != ",":
        return None
    _, end5 = _DECODER.raw_decode(line, end4 + 1)
    if line[end5:] != "]]":
        return None
    if run_secs_value is not None and not isinstance(run_secs_value, list):
        raise ValueError("run_secs is not a list")
    if target_value is not None and not isinstance(target_value, dict):
        raise ValueError("the target is not a JSON object")
    return int(line[1:comma]), RecordText(
        insts=line[start:end],
        decisions=line[end + 1 : end2],
        run_secs=line[end2 + 2 : end3],
        target=line[end3 + 1 : end4],
        args_info=line[end4 + 1 : end5],
        run_secs_value=run_secs_value,
        target_value=target_value,
    )


class LineCache:
    """Parts already read while splitting many lines (one import), so repeats are not parsed.

    Most of a record line is its instruction list, which many records share (a search mostly
    varies decisions), and every record of a database carries the same target and argument
    info. A part text seen before is known to be valid JSON of the right kind; only its end
    has to be found. Bounded: each table is emptied when it reaches ``size`` entries.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.insts: set[str] = set()
        self.targets: dict[str, dict[str, Any] | None] = {}
        self.args: set[str] = set()

    def known_insts(self, text: str) -> bool:
        """Whether ``text`` is a JSON list (remembered once checked)."""
        if text in self.insts:
            return True
        try:
            if not isinstance(json.loads(text), list):
                return False
        except ValueError:
            return False
        if len(self.insts) >= self.size:
            self.insts.clear()
        self.insts.add(text)
        return True


def _split_cached(line: str, cache: LineCache) -> tuple[int, RecordText] | None:
    """The fast path over a :class:`LineCache`; None when the line is not laid out as
    MetaSchedule writes it (the other paths then decide)."""
    comma = line.find(",", 1)
    if line[:1] != "[" or not line[1:comma].isdigit() or line[comma + 1 : comma + 4] != "[[[":
        return None
    start = comma + 3
    # The instruction list ends with its last instruction's output list: "]]]" then ",[" (the
    # decisions). A match inside a string cuts the list short, which then is not valid JSON.
    end = line.find("]]],[", start) + 3
    if end < 3:
        return None
    insts = line[start:end]
    if not cache.known_insts(insts):
        return None
    tail = _decisions_and_run_secs(line, end)
    if tail is None:
        return None
    run_secs_value, end2, end3 = tail
    for target in cache.targets:
        end4 = end3 + 1 + len(target)
        if line.startswith(target, end3 + 1) and line[end4 : end4 + 1] == ",":
            target_value = cache.targets[target]
            break
    else:
        target_value, end4 = _DECODER.raw_decode(line, end3 + 1)
        if line[end4 : end4 + 1] != ",":
            return None
        if target_value is not None and not isinstance(target_value, dict):
            raise ValueError("the target is not a JSON object")
        if len(cache.targets) >= cache.size:
            cache.targets.clear()
        cache.targets[line[end3 + 1 : end4]] = target_value
    if not line.endswith("]]"):
        return None
    args_info = line[end4 + 1 : -2]
    if args_info not in cache.args:
        _, end5 = _DECODER.raw_decode(line, end4 + 1)
        if end5 != len(line) - 2:
            return None
        if len(cache.args) >= cache.size:
            cache.args.clear()
        cache.args.add(args_info)
    if run_secs_value is not None and not isinstance(run_secs_value, list):
        raise ValueError("run_secs is not a list")
    return int(line[1:comma]), RecordText(
        insts=insts,
        decisions=line[end + 1 : end2],
        run_secs=line[end2 + 2 : end3],
        target=line[end3 + 1 : end4],
        args_info=args_info,
        run_secs_value=run_secs_value,
        target_value=target_value,
    )


def split_record_line(line: str, cache: LineCache | None = None) -> tuple[int, RecordText]:
    """Split one ``database_tuning_record.json`` line into its workload index and part texts.

    Parameters
    ----------
    line : str
        The line, without its newline.
    cache : LineCache, optional
        Parts of earlier lines (an import passes one for all its lines): repeated parts are
        then not parsed again. The result is the same with or without.

    Raises
    ------
    ValueError
        When the line is not ``[int,[[insts,decisions],run_secs,target,args_info]]``.
    """
    compact = None
    if cache is not None:
        try:
            compact = _split_cached(line, cache)
        except (ValueError, IndexError):
            compact = None
    try:
        if compact is None:
            compact = _split_compact(line)
    except (ValueError, IndexError):  # json.JSONDecodeError is a ValueError
        compact = None
    if compact is not None:
        return compact
    pos = _skip(line, 0, "[")
    index, _, pos = _value(line, pos)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError("the workload index is not a non-negative integer")
    pos = _skip(line, pos, ",")
    pos = _skip(line, pos, "[")  # the record
    pos = _skip(line, pos, "[")  # its trace
    insts_value, insts, pos = _value(line, pos)
    pos = _skip(line, pos, ",")
    decisions_value, decisions, pos = _value(line, pos)
    pos = _skip(line, pos, "]")
    if not isinstance(insts_value, list) or not isinstance(decisions_value, list):
        raise ValueError("the trace is not [instructions, decisions]")
    pos = _skip(line, pos, ",")
    run_secs_value, run_secs, pos = _value(line, pos)
    pos = _skip(line, pos, ",")
    target_value, target, pos = _value(line, pos)
    pos = _skip(line, pos, ",")
    _, args_info, pos = _value(line, pos)
    pos = _skip(line, pos, "]")
    pos = _skip(line, pos, "]")
    if pos != len(line):
        raise ValueError(f"unexpected text after the record at column {pos}")
    if run_secs_value is not None and not isinstance(run_secs_value, list):
        raise ValueError("run_secs is not a list")
    if target_value is not None and not isinstance(target_value, dict):
        raise ValueError("the target is not a JSON object")
    return index, RecordText(
        insts=insts,
        decisions=decisions,
        run_secs=run_secs,
        target=target,
        args_info=args_info,
        run_secs_value=run_secs_value,
        target_value=target_value,
    )


def join_record_line(index: int, record: RecordText | tuple[str, str, str, str, str]) -> str:
    """The ``database_tuning_record.json`` line (no newline) of a record under ``index``."""
    if isinstance(record, RecordText):
        parts = (record.insts, record.decisions, record.run_secs, record.target, record.args_info)
    else:
        parts = record
    insts, decisions, run_secs, target, args_info = parts
    return f"[{index},[[{insts},{decisions}],{run_secs},{target},{args_info}]]"


def split_workload_line(line: str) -> tuple[str, str]:
    """``(structural hash, base64 module)`` of a ``database_workload.json`` line.

    Raises
    ------
    ValueError
        When the line is not a JSON pair of strings.
    """
    value = json.loads(line)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(part, str) for part in value)
    ):
        raise ValueError('a workload line must be ["<hash>", "<base64>"]')
    return value[0], value[1]


def join_workload_line(shash: str, module: str) -> str:
    """The ``database_workload.json`` line (no newline) of a workload."""
    return dumps([shash, module])


def mean_run_secs(run_secs: list[Any] | None, failed: float) -> float:
    """Mean latency of a record, or ``failed`` for a failed or missing measurement (ms-meta's
    convention, :mod:`ms_meta.run_secs`)."""
    try:
        if is_failed(run_secs):
            return failed
        values = [float(v) for v in run_secs or []]
    except (TypeError, ValueError):
        return failed
    return math.fsum(values) / len(values)


def _escape(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def dumps(value: Any) -> str:
    """JSON text of a Python value in MetaSchedule's writer format.

    No whitespace, object keys sorted, floats with 20 significant digits (C++
    ``std::setprecision(20)``), booleans as ``true``/``false`` (see
    :func:`ms_meta.store.database.record_text` for which TVM values are booleans).
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.20g}"
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(key), item) for key, item in value.items())
        return "{" + ",".join(f"{_escape(key)}:{dumps(item)}" for key, item in items) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as MetaSchedule JSON")
