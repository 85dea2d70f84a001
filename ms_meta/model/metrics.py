"""Ranking quality of a cost model's scores, per task group (numpy in, float out).

All functions take ``scores`` (higher = predicted faster) and per-candidate ground truth of one
flat set of candidates, with ``groups`` naming the task of each; they compare candidates of
the same group only and average over groups (or pairs) as documented.

Shapes: ``scores [n]``, ``labels [n]`` / ``latencies [n]``, ``groups [n]`` -> float.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.stats import kendalltau
from sklearn.utils.validation import check_consistent_length

__all__ = ["kendall_tau", "pairwise_accuracy", "top_k_score"]


def pairwise_accuracy(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Fraction of same-group pairs with different labels that the scores order correctly.

    A pair whose scores tie counts as half correct. Returns ``nan`` if there is no such pair.

    Shapes: ``scores [n]``, ``labels [n]``, ``groups [n]`` -> float.
    """
    correct = 0.0
    total = 0
    for s, y in _per_group(groups, scores, labels):
        label_gap = np.sign(y[:, None] - y[None, :])
        score_gap = np.sign(s[:, None] - s[None, :])
        pairs = label_gap > 0  # each unordered pair once, oriented from better to worse
        total += int(pairs.sum())
        correct += float((score_gap[pairs] > 0).sum() + 0.5 * (score_gap[pairs] == 0).sum())
    return correct / total if total else float("nan")


def top_k_score(scores: np.ndarray, latencies: np.ndarray, groups: np.ndarray, k: int) -> float:
    """TenSet's top-k score: how close the model's best k picks come to the best candidate.

    Per group: ``min(latencies) / min(latencies of the k highest-scored candidates)``, in
    (0, 1] (0 if all k picks failed); averaged over the groups that have at least one finite
    latency. Failed runs have latency ``inf``. Score ties are broken by position (stable sort).
    Returns ``nan`` if no group has a finite latency.

    Shapes: ``scores [n]``, ``latencies [n]``, ``groups [n]`` -> float.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    values = []
    for s, lat in _per_group(groups, scores, latencies):
        best = lat.min()
        if not np.isfinite(best):
            continue
        picks = np.argsort(-s, kind="stable")[:k]
        values.append(best / lat[picks].min())
    return float(np.mean(values)) if values else float("nan")


def kendall_tau(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Kendall's tau-b between scores and labels per group, averaged over groups.

    Groups with fewer than two candidates or with constant labels or scores (where tau is
    undefined) are left out. Returns ``nan`` if no group is left.

    Shapes: ``scores [n]``, ``labels [n]``, ``groups [n]`` -> float.
    """
    values = []
    for s, y in _per_group(groups, scores, labels):
        if len(s) < 2:
            continue
        tau = kendalltau(s, y).statistic
        if np.isfinite(tau):
            values.append(tau)
    return float(np.mean(values)) if values else float("nan")


def _per_group(
    groups: np.ndarray, scores: np.ndarray, truth: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(scores, truth)`` of each group, in ascending group order, as float64 arrays."""
    check_consistent_length(groups, scores, truth)
    groups = np.asarray(groups).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    truth = np.asarray(truth, np.float64).reshape(-1)
    order = np.argsort(groups, kind="stable")
    _, starts = np.unique(groups[order], return_index=True)
    for index in np.split(order, starts[1:]):
        yield scores[index], truth[index]
