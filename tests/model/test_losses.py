"""Ranking and regression losses on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from ms_meta.model.losses import (
    group_indices,
    listwise_loss,
    pairwise_rank_loss,
    regression_loss,
)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _g(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def test_group_indices():
    parts = group_indices(_g(2, 0, 2, 1, 0))
    assert [p.tolist() for p in parts] == [[1, 4], [3], [0, 2]]


def test_pairwise_single_pair():
    loss = pairwise_rank_loss(_t(2.0, 1.0), _t(1.0, 0.0), _g(0, 0))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)))


def test_pairwise_weights_by_label_gap():
    scores, labels, groups = _t(0.0, 1.0, 3.0), _t(1.0, 0.5, 0.0), _g(0, 0, 0)
    # pairs (better, worse, gap): (0, 1, .5), (0, 2, 1), (1, 2, .5)
    terms = [(0.5, 0.0 - 1.0), (1.0, 0.0 - 3.0), (0.5, 1.0 - 3.0)]
    expected = sum(w * math.log1p(math.exp(-m)) for w, m in terms) / 2.0
    assert pairwise_rank_loss(scores, labels, groups).item() == pytest.approx(expected, rel=1e-6)
    unweighted = sum(math.log1p(math.exp(-m)) for _, m in terms) / 3.0
    assert pairwise_rank_loss(scores, labels, groups, weight_by_gap=False).item() == (
        pytest.approx(unweighted, rel=1e-6)
    )


def test_pairwise_ignores_cross_group_pairs_and_ties():
    scores = torch.tensor([5.0, 0.0, 1.0, 1.0], requires_grad=True)
    # Group 0 and 1 hold one candidate each; group 2 has equal labels: no pair counts.
    loss = pairwise_rank_loss(scores, _t(0.0, 1.0, 0.5, 0.5), _g(0, 1, 2, 2))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(scores.grad, torch.zeros(4))


def test_pairwise_prefers_correct_order_and_pushes_scores_apart():
    labels, groups = _t(1.0, 0.0), _g(7, 7)
    assert pairwise_rank_loss(_t(1.0, 0.0), labels, groups) < pairwise_rank_loss(
        _t(0.0, 1.0), labels, groups
    )
    scores = torch.zeros(2, requires_grad=True)
    pairwise_rank_loss(scores, labels, groups).backward()
    assert scores.grad[0] < 0 < scores.grad[1]


def test_listwise_hand_example():
    # Equal scores predict [1/2, 1/2]; the target is softmax([1, 0]).
    loss = listwise_loss(_t(0.0, 0.0), _t(1.0, 0.0), _g(0, 0), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_listwise_averages_groups_and_ignores_shifts_within_a_group():
    labels, groups = _t(1.0, 0.2, 0.0, 1.0, 0.0), _g(0, 0, 0, 1, 1)
    scores = _t(0.3, -1.0, 0.5, 2.0, 1.0)
    shifted = scores + _t(10.0, 10.0, 10.0, -4.0, -4.0)
    torch.testing.assert_close(
        listwise_loss(scores, labels, groups), listwise_loss(shifted, labels, groups)
    )
    separate = (
        listwise_loss(scores[:3], labels[:3], groups[:3])
        + listwise_loss(scores[3:], labels[3:], groups[3:])
    ) / 2
    torch.testing.assert_close(listwise_loss(scores, labels, groups), separate)
    with pytest.raises(ValueError):
        listwise_loss(scores, labels, groups, temperature=0.0)


def test_regression_loss_is_mse():
    assert regression_loss(_t(1.0, 0.0), _t(0.0, 0.0)).item() == pytest.approx(0.5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        pairwise_rank_loss(_t(1.0, 2.0), _t(1.0), _g(0, 0))
    with pytest.raises(ValueError):
        regression_loss(_t(1.0, 2.0), _t(1.0))
