"""The k-shot evaluation protocol of cost models on held-out tasks (TVM-free).

One fixed *episode* per task: a seeded permutation of all its records (failed runs included),
drawn once from the task name and a global seed. The support set of shot ``k`` is the first
``k`` records of the permutation and the query set is the records after the largest ``k``, so
every ``k`` (zero-shot included) is scored on the very same query records and a larger support
only adds records to a smaller one. A task with fewer than ``max(ks) + MIN_QUERY`` records is
skipped, and the reason is counted.

Two options test the job a search gives the model rather than ranking random samples:
``after_line`` keeps only the records after that line of each task's record file (for example
the guided records that follow a 64-trial stock search), and ``order="search"`` takes the
support in record-file order, the order in which a search measured them, instead of a seeded
permutation.

A *scorer* is any object with a ``name`` and a ``score(task, support, query)`` method that
returns higher-is-better scores of the query records (the indices are into the task's records;
``support`` is empty for zero-shot). Its scores are compared with the measured ones on the
query set with :mod:`ms_meta.model.metrics`:

``pairwise``
    Fraction of query pairs with different labels that the scores order correctly.
``top1`` / ``top5``
    TenSet's top-k score: best measured latency of the query / best latency among the
    model's k highest-scored query records.
``tau``
    Kendall's tau-b between scores and labels.

Each is computed per task and macro-averaged over the tasks (a task where a metric is
undefined, such as top-k on a query set of failed runs only, is left out of that average).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ms_meta.data.split import records_after_line
from ms_meta.errors import MsMetaError
from ms_meta.model.metrics import kendall_tau, pairwise_accuracy, top_k_score

__all__ = [
    "DEFAULT_KS",
    "METRICS",
    "MIN_QUERY",
    "ORDERS",
    "TOO_FEW_RECORDS",
    "Episode",
    "EvalResult",
    "Scorer",
    "TaskLike",
    "evaluate",
    "make_episodes",
    "markdown_table",
    "results_to_json",
    "text_table",
]

#: Shots evaluated by default (0 = zero-shot).
DEFAULT_KS: tuple[int, ...] = (0, 8, 16, 32)

#: The least number of query records a task must keep after the largest support set.
MIN_QUERY = 8

#: Metric keys, in table order, with their column headers.
METRICS: dict[str, str] = {
    "pairwise": "pairwise",
    "top1": "top-1",
    "top5": "top-5",
    "tau": "tau",
}

#: Skip reason kind of a task with fewer than ``max(ks) + MIN_QUERY`` records.
TOO_FEW_RECORDS = "too-few-records"

#: How an episode orders a task's records: a seeded permutation, or record-file order.
ORDERS = ("random", "search")


class TaskLike(Protocol):
    """What the protocol needs of a task (:class:`ms_meta.data.dataset.TaskData` is one).

    ``latencies`` are seconds (``inf`` = failed run) and ``labels`` the normalized throughput
    (0 = failed), one per record. ``lines`` (1-based line of each record in its record file)
    is needed only by ``after_line`` and ``order="search"``.
    """

    name: str
    latencies: np.ndarray
    labels: np.ndarray
    lines: np.ndarray

    def __len__(self) -> int: ...


class Scorer(Protocol):
    """A cost model under evaluation."""

    name: str

    def score(self, task: Any, support: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Higher-is-better scores ``[len(query)]`` of the query records of ``task``, after
        seeing the measurements of the ``support`` records (indices into the task's records;
        empty for zero-shot)."""
        ...


# --------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks:
        raise MsMetaError("no shots to evaluate: pass at least one k (0 for zero-shot)")
    if any(k < 0 for k in ks):
        raise MsMetaError(f"shots must be 0 or more, got {list(ks)}")
    if len(set(ks)) != len(ks):
        raise MsMetaError(f"shots given twice: {list(ks)}")
    return tuple(sorted(ks))


def episode_seed(task_name: str, seed: int) -> int:
    """The seed of a task's permutation: stable across runs, processes and platforms (it hashes
    the name with SHA-256, not Python's salted ``hash``)."""
    digest = hashlib.sha256(f"{int(seed)}\0{task_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class Episode:
    """The fixed k-shot split of one task.

    Attributes
    ----------
    task : str
        The task name.
    order : np.ndarray
        ``[n]`` int64: the task's record indices in episode order (a permutation of all of
        them, unless the evaluation selects some records).
    max_k : int
        The largest shot; the query set starts after it.
    """

    task: str
    order: np.ndarray
    max_k: int

    def support(self, k: int) -> np.ndarray:
        """Indices of the support set of shot ``k`` (the first ``k`` of the permutation)."""
        if not 0 <= k <= self.max_k:
            raise ValueError(f"k must be in [0, {self.max_k}], got {k}")
        return self.order[:k]

    @property
    def query(self) -> np.ndarray:
        """Indices of the query set, the same for every shot."""
        return self.order[self.max_k :]


def _check_selection(after_line: int, order: str) -> None:
    if after_line < 0:
        raise MsMetaError(f"after_line must be 0 or more, got {after_line}")
    if order not in ORDERS:
        raise MsMetaError(f"unknown record order {order!r}; choose one of {', '.join(ORDERS)}")


def _selected_records(task: TaskLike, after_line: int, order: str) -> np.ndarray:
    """Indices of the task's records on lines after ``after_line``, in record-file order."""
    n = len(task)
    if not after_line and order == "random":
        return np.arange(n, dtype=np.int64)
    lines = np.asarray(getattr(task, "lines", np.zeros(0)), np.int64)
    if lines.shape != (n,):
        raise MsMetaError(
            f"task {task.name} does not say which line each record is on, which "
            "after_line and the search order need"
        )
    return records_after_line(lines, after_line)


def make_episodes(
    tasks: Sequence[TaskLike],
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 0,
    *,
    after_line: int = 0,
    order: str = "random",
) -> tuple[list[Episode], dict[str, str]]:
    """The episode of every task with enough records, and why the others are skipped.

    ``after_line`` keeps only each task's records after that line of its record file (0: all);
    ``order`` is ``"random"`` (a seeded permutation) or ``"search"`` (record-file order, so the
    support of shot k is the first k records a search measured).

    Returns
    -------
    episodes : list of Episode
        In the order of ``tasks``.
    skipped : dict of str to str
        Task name -> reason, e.g. ``"too-few-records: 30 < 40 (max k 32 + 8 query)"``.

    Raises
    ------
    MsMetaError
        When ``ks`` is empty or negative, or two tasks share a name.
    """
    ks = _check_ks(ks)
    _check_selection(after_line, order)
    max_k = ks[-1]
    need = max_k + MIN_QUERY
    names = Counter(t.name for t in tasks)
    twice = sorted(name for name, n in names.items() if n > 1)
    if twice:
        raise MsMetaError(f"task names must be unique; given more than once: {', '.join(twice)}")
    episodes = []
    skipped = {}
    for task in tasks:
        records = _selected_records(task, after_line, order)
        n = len(records)
        if n < need:
            where = f" after line {after_line}" if after_line else ""
            skipped[task.name] = (
                f"{TOO_FEW_RECORDS}: {n}{where} < {need} (max k {max_k} + {MIN_QUERY} query)"
            )
            continue
        if order == "random":
            rng = np.random.default_rng(episode_seed(task.name, seed))
            records = records[rng.permutation(n)]
        episodes.append(Episode(task.name, records, max_k))
    return episodes, skipped


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class EvalResult:
    """The metrics of one scorer on a set of tasks, per shot.

    Attributes
    ----------
    scorer : str
        The scorer's name.
    ks : tuple of int
        The shots, ascending.
    seed : int
        The global seed of the episodes.
    per_task : dict
        ``k -> task -> metric -> value`` (``nan`` where undefined), with the query size under
        ``"query"``.
    skipped : dict of str to str
        Task name -> reason for the tasks not evaluated.
    seconds : dict of int to float
        Time spent in the scorer per shot, over all tasks.
    after_line : int
        Only records after this line of each record file were used (0: all).
    order : str
        ``"random"`` or ``"search"``: how each task's support was drawn.
    """

    scorer: str
    ks: tuple[int, ...]
    seed: int
    per_task: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    after_line: int = 0
    order: str = "random"

    @property
    def tasks(self) -> list[str]:
        """The tasks evaluated, in order."""
        return list(self.per_task[self.ks[0]]) if self.ks and self.per_task else []

    def skip_counts(self) -> dict[str, int]:
        """Skipped tasks per reason kind, e.g. ``{"too-few-records": 2}``."""
        return dict(Counter(reason.split(":", 1)[0] for reason in self.skipped.values()))

    def summary(self) -> dict[int, dict[str, float]]:
        """Macro averages ``k -> metric -> value`` over the tasks where the metric is defined,
        plus ``"tasks"`` (tasks evaluated)."""
        out = {}
        for k in self.ks:
            rows = self.per_task.get(k, {})
            entry: dict[str, float] = {}
            for metric in METRICS:
                values = [r[metric] for r in rows.values() if math.isfinite(r[metric])]
                entry[metric] = float(np.mean(values)) if values else math.nan
            entry["tasks"] = len(rows)
            out[k] = entry
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``nan`` becomes ``None``; shots become string keys)."""

        def clean(row: Mapping[str, float]) -> dict[str, float | int | None]:
            return {
                key: value if key in ("tasks", "query") else _finite_or_none(value)
                for key, value in row.items()
            }

        return {
            "scorer": self.scorer,
            "ks": list(self.ks),
            "seed": self.seed,
            "after_line": self.after_line,
            "order": self.order,
            "summary": {str(k): clean(v) for k, v in self.summary().items()},
            "per_task": {
                str(k): {task: clean(row) for task, row in rows.items()}
                for k, rows in self.per_task.items()
            },
            "skipped": dict(self.skipped),
            "skip_counts": self.skip_counts(),
            "seconds": {str(k): round(s, 3) for k, s in self.seconds.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        """The inverse of :meth:`to_dict` (``None`` becomes ``nan``).

        Raises
        ------
        MsMetaError
            When ``data`` is not a dict written by :meth:`to_dict`.
        """
        try:
            ks = tuple(int(k) for k in data["ks"])
            per_task = {
                int(k): {
                    task: {
                        key: (math.nan if value is None else value) for key, value in row.items()
                    }
                    for task, row in rows.items()
                }
                for k, rows in data["per_task"].items()
            }
            return cls(
                scorer=str(data["scorer"]),
                ks=ks,
                seed=int(data["seed"]),
                per_task=per_task,
                skipped=dict(data.get("skipped", {})),
                seconds={int(k): float(s) for k, s in data.get("seconds", {}).items()},
                after_line=int(data.get("after_line", 0)),
                order=str(data.get("order", "random")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise MsMetaError(f"not an evaluation result: {err!r}") from None

    def table(self) -> str:
        """A plain-text table: one row per shot, columns pairwise, top-1, top-5, tau, tasks."""
        return _text_table([self])

    def __str__(self) -> str:
        return self.table()


def _fmt(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.3f}"


def _rows(results: Sequence[EvalResult]) -> list[list[str]]:
    rows = []
    for result in results:
        summary = result.summary()
        for k in result.ks:
            entry = summary[k]
            rows.append(
                [result.scorer, str(k), *(_fmt(entry[m]) for m in METRICS), str(entry["tasks"])]
            )
    return rows


_HEADER = ["scorer", "k", *METRICS.values(), "tasks"]


def _text_table(results: Sequence[EvalResult]) -> str:
    rows = _rows(results)
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(_HEADER), sep, *(line(r) for r in rows)])


def text_table(results: Sequence[EvalResult]) -> str:
    """Several results in one plain-text table (rows: scorer x k)."""
    return _text_table(results)


def markdown_table(results: Sequence[EvalResult]) -> str:
    """Several results side by side as a Markdown table for the README (rows: scorer x k;
    columns: pairwise, top-1, top-5, tau, tasks)."""
    rows = _rows(results)
    align = ["---", "---:", *(["---:"] * len(METRICS)), "---:"]
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _task_metrics(task: TaskLike, query: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    latencies = np.asarray(task.latencies, np.float64)[query]
    labels = np.asarray(task.labels, np.float64)[query]
    groups = np.zeros(len(query), np.int64)
    return {
        "pairwise": pairwise_accuracy(scores, labels, groups),
        "top1": top_k_score(scores, latencies, groups, 1),
        "top5": top_k_score(scores, latencies, groups, 5),
        "tau": kendall_tau(scores, labels, groups),
        "query": len(query),
    }


def _checked_scores(scorer: Scorer, task: TaskLike, k: int, scores: Any, n: int) -> np.ndarray:
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.shape != (n,):
        raise ValueError(
            f"scorer {scorer.name!r} returned {scores.shape[0]} scores for the {n} query "
            f"records of {task.name} (k={k})"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scorer {scorer.name!r} returned non-finite scores on {task.name}")
    return scores


def evaluate(
    scorer: Scorer,
    tasks: Sequence[TaskLike],
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 0,
    *,
    after_line: int = 0,
    order: str = "random",
) -> EvalResult:
    """Score ``scorer`` on the fixed k-shot episodes of ``tasks``.

    Parameters
    ----------
    scorer : Scorer
        The model: ``score(task, support, query) -> [len(query)]`` higher-is-better scores.
    tasks : sequence of TaskLike
        Held-out tasks (e.g. ``Dataset.tasks``); names must be unique.
    ks : sequence of int
        Shots; 0 is zero-shot. The query set of every task is the records after ``max(ks)``.
    seed : int
        Global seed of the episodes (with the task name it fixes each task's permutation).
    after_line, order : int, str
        Which records, in which order (see :func:`make_episodes`).

    Returns
    -------
    EvalResult
        Per-task and macro-averaged metrics per shot, and the skipped tasks.

    Raises
    ------
    MsMetaError
        For bad ``ks`` or duplicate task names.
    ValueError
        When the scorer returns the wrong number of scores or non-finite ones.
    """
    ks = _check_ks(ks)
    episodes, skipped = make_episodes(tasks, ks, seed, after_line=after_line, order=order)
    by_name = {t.name: t for t in tasks}
    result = EvalResult(
        scorer=scorer.name,
        ks=ks,
        seed=int(seed),
        skipped=skipped,
        after_line=int(after_line),
        order=order,
    )
    for k in ks:
        rows: dict[str, dict[str, float]] = {}
        spent = 0.0
        for episode in episodes:
            task = by_name[episode.task]
            query = episode.query
            start = time.perf_counter()
            raw = scorer.score(task, episode.support(k), query)
            spent += time.perf_counter() - start
            scores = _checked_scores(scorer, task, k, raw, len(query))
            rows[task.name] = _task_metrics(task, query, scores)
        result.per_task[k] = rows
        result.seconds[k] = spent
    return result


def results_to_json(results: Sequence[EvalResult]) -> str:
    """Several results as one JSON document (a list of :meth:`EvalResult.to_dict`)."""
    return json.dumps([r.to_dict() for r in results], indent=2)
