"""Ranking and regression losses over a flat batch of candidates from several tasks.

Every function takes raw model ``scores`` (higher = faster), ``labels`` (per-task normalized
throughput in [0, 1]: 1 for the fastest measured candidate of its task, 0 for a failed run) and
``groups`` (the task of each candidate). Ranking losses only compare candidates of the same
group, since throughputs of different tasks are not comparable.

Shapes: ``scores [B]`` float, ``labels [B]`` float, ``groups [B]`` int64 -> scalar loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["group_indices", "listwise_loss", "pairwise_rank_loss", "regression_loss"]


def group_indices(groups: Tensor) -> list[Tensor]:
    """The positions of each group's members, groups in ascending id order.

    Shapes: ``groups [B]`` -> one ``[n_g]`` int64 tensor per distinct group.
    """
    order = torch.argsort(groups, stable=True)
    _, counts = torch.unique_consecutive(groups[order], return_counts=True)
    return list(torch.split(order, counts.tolist()))


def pairwise_rank_loss(
    scores: Tensor, labels: Tensor, groups: Tensor, *, weight_by_gap: bool = True
) -> Tensor:
    """RankNet's logistic loss over all ordered pairs of a group whose labels differ.

    For each pair with ``labels[i] > labels[j]`` in the same group the loss is
    ``log(1 + exp(-(scores[i] - scores[j])))``, weighted by ``labels[i] - labels[j]`` if
    ``weight_by_gap`` (so that near-ties matter little, and pairs with a failed run much).
    Returns the weighted mean over all pairs of all groups, and zero (still attached to
    ``scores``) when there are no such pairs.

    Shapes: ``scores [B]``, ``labels [B]``, ``groups [B]`` -> ``[]``.
    """
    _check_shapes(scores, labels, groups)
    total = scores.new_zeros(())
    weight = scores.new_zeros(())
    for index in group_indices(groups):
        if index.numel() < 2:
            continue
        s, y = scores[index], labels[index]
        gap = y.unsqueeze(1) - y.unsqueeze(0)  # [n, n]: gap[i, j] = y_i - y_j
        better = gap > 0
        if not bool(better.any()):
            continue
        pair_weight = torch.where(better, gap if weight_by_gap else torch.ones_like(gap), 0.0)
        margin = s.unsqueeze(1) - s.unsqueeze(0)
        total = total + (F.softplus(-margin) * pair_weight).sum()
        weight = weight + pair_weight.sum()
    if float(weight) == 0.0:
        return scores.sum() * 0.0
    return total / weight


def listwise_loss(
    scores: Tensor, labels: Tensor, groups: Tensor, *, temperature: float = 0.1
) -> Tensor:
    """ListNet's top-one cross-entropy, averaged over groups of at least two candidates.

    Within a group the target distribution is ``softmax(labels / temperature)`` (a small
    temperature concentrates it on the fastest candidates) and the predicted one
    ``softmax(scores)``. Returns zero (still attached to ``scores``) when no group has two
    candidates.

    Shapes: ``scores [B]``, ``labels [B]``, ``groups [B]`` -> ``[]``.
    """
    _check_shapes(scores, labels, groups)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    losses = []
    for index in group_indices(groups):
        if index.numel() < 2:
            continue
        target = torch.softmax(labels[index] / temperature, dim=0)
        losses.append(-(target * torch.log_softmax(scores[index], dim=0)).sum())
    if not losses:
        return scores.sum() * 0.0
    return torch.stack(losses).mean()


def regression_loss(scores: Tensor, labels: Tensor) -> Tensor:
    """Mean squared error between scores and labels (anchors scores to the [0, 1] scale).

    Shapes: ``scores [B]``, ``labels [B]`` -> ``[]``.
    """
    if scores.shape != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ")
    return F.mse_loss(scores, labels)


def _check_shapes(scores: Tensor, labels: Tensor, groups: Tensor) -> None:
    if scores.dim() != 1 or scores.shape != labels.shape or scores.shape != groups.shape:
        raise ValueError(
            "scores, labels and groups must be 1-D of one length, got "
            f"{tuple(scores.shape)}, {tuple(labels.shape)}, {tuple(groups.shape)}"
        )
