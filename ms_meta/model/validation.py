"""Validation of a model during pretraining: zero-shot and few-shot ranking on held-back tasks.

TVM-free. Early stopping (:func:`ms_meta.model.pretrain.pretrain`) watches these scores; they
come from the same inner loop :class:`~ms_meta.MetaCostModel` runs at tuning time
(:func:`ms_meta.model.meta.adapt`), so a better score means better ranking after a few
measurements of a new task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ms_meta.data.split import records_after_line
from ms_meta.feature.schema import LoopGraph
from ms_meta.model.gnn import LoopGraphGNN
from ms_meta.model.meta import AdaptConfig, adapt, parameters_of, predict_with
from ms_meta.model.metrics import pairwise_accuracy, top_k_score

__all__ = ["VAL_METRICS", "Task", "validate", "validation_records"]


class Task(Protocol):
    """A tuning task as pretraining sees it (:class:`ms_meta.data.dataset.TaskData` is one)."""

    name: str
    graphs: Sequence[LoopGraph]
    labels: np.ndarray
    lines: np.ndarray  # 1-based line of each record in its record file


#: Validation metrics early stopping can watch.
VAL_METRICS = ("pairwise", "top1")


def validation_records(task: Task, after_line: int) -> np.ndarray:
    """Indices of the records of ``task`` that validation may use: all of them, or those after
    ``after_line`` of the record file, in record-file order."""
    if not after_line:
        return np.arange(len(task.graphs), dtype=np.int64)
    return records_after_line(task.lines, after_line)


def _query_split(
    records: np.ndarray, shots: int, seed: int, in_order: bool
) -> tuple[np.ndarray, np.ndarray]:
    order = records if in_order else records[np.random.default_rng(seed).permutation(len(records))]
    return order[:shots], order[shots:]


def _metric(name: str, scores: np.ndarray, labels: np.ndarray) -> float:
    groups = np.zeros(len(labels), np.int64)
    if name == "pairwise":
        return pairwise_accuracy(scores, labels, groups)
    # labels are best / latency, so their inverses order like latencies (failed runs: inf)
    with np.errstate(divide="ignore"):
        return top_k_score(scores, 1.0 / labels.astype(np.float64), groups, 1)


def validate(
    model: LoopGraphGNN,
    tasks: Sequence[Task],
    *,
    shots: int,
    adapt_config: AdaptConfig,
    seed: int = 0,
    after_line: int = 0,
    metric: str = "pairwise",
) -> tuple[float, float]:
    """A macro-averaged ranking metric on ``tasks``: zero-shot and after adapting on ``shots``
    records, both scored on the same query records.

    With ``after_line`` 0 the support is a fixed seeded draw from all of a task's records and
    the query the rest; otherwise only the records after that line count, the support is the
    first ``shots`` of them in record-file order and the query the rest (see
    :class:`PretrainConfig`). ``metric`` is ``"pairwise"`` or ``"top1"`` (labels are
    normalized throughputs, so the top pick's label over the best label is TenSet's top-1
    score). Tasks with fewer than ``shots + 2`` usable records, and metrics undefined on a
    task, are left out; ``nan`` if nothing is left.
    """
    if metric not in VAL_METRICS:
        raise ValueError(f"unknown validation metric {metric!r}")
    zero, few = [], []
    meta_params = parameters_of(model)
    for index, task in enumerate(tasks):
        records = validation_records(task, after_line)
        if len(records) < shots + 2:
            continue
        support, query = _query_split(records, shots, seed + index, in_order=bool(after_line))
        labels = np.asarray(task.labels, np.float32)
        query_graphs = [task.graphs[i] for i in query]
        scores = predict_with(model, None, query_graphs)
        zero.append(_metric(metric, scores, labels[query]))
        params = adapt(
            model, meta_params, [task.graphs[i] for i in support], labels[support], adapt_config
        )
        scores = predict_with(model, params, query_graphs)
        few.append(_metric(metric, scores, labels[query]))
    zero = [v for v in zero if np.isfinite(v)]
    few = [v for v in few if np.isfinite(v)]
    if not zero or not few:
        return float("nan"), float("nan")
    return float(np.mean(zero)), float(np.mean(few))
