"""Ranking metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from ms_meta.model.metrics import kendall_tau, pairwise_accuracy, top_k_score

INF = math.inf


def test_pairwise_accuracy():
    labels, groups = [1.0, 0.5, 0.0], [0, 0, 0]
    assert pairwise_accuracy([3, 2, 1], labels, groups) == 1.0
    assert pairwise_accuracy([1, 2, 3], labels, groups) == 0.0
    assert pairwise_accuracy([2, 3, 1], labels, groups) == pytest.approx(2 / 3)
    assert pairwise_accuracy([2, 2, 1], labels, groups) == pytest.approx(2.5 / 3)


def test_pairwise_accuracy_within_groups_only():
    # Cross-group pairs (which these scores would order wrongly) and equal labels don't count.
    scores = [0.0, -1.0, 10.0, 9.0, 5.0, 6.0]
    labels = [1.0, 0.0, 0.2, 0.1, 0.3, 0.3]
    groups = [0, 0, 1, 1, 2, 2]
    assert pairwise_accuracy(scores, labels, groups) == 1.0
    assert math.isnan(pairwise_accuracy([1.0], [1.0], [0]))


def test_top_k_score():
    # Group 0: best latency 1; the model ranks index 1 (latency 2) first, then index 0.
    # Group 1: the model's first pick failed; its second is the best.
    scores = [0.5, 0.9, 0.1, 0.8, 0.2]
    latencies = [1.0, 2.0, 4.0, INF, 3.0]
    groups = [0, 0, 0, 1, 1]
    assert top_k_score(scores, latencies, groups, k=1) == pytest.approx((0.5 + 0.0) / 2)
    assert top_k_score(scores, latencies, groups, k=2) == pytest.approx(1.0)
    assert top_k_score(scores, latencies, groups, k=10) == pytest.approx(1.0)


def test_top_k_score_skips_all_failed_groups():
    scores, latencies, groups = [1.0, 0.0, 1.0], [2.0, 1.0, INF], [0, 0, 1]
    assert top_k_score(scores, latencies, groups, k=1) == pytest.approx(0.5)
    assert math.isnan(top_k_score([1.0], [INF], [0], k=1))
    with pytest.raises(ValueError):
        top_k_score(scores, latencies, groups, k=0)


def test_kendall_tau_averages_groups():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=12), rng.uniform(size=12)
    groups = np.repeat([3, 1, 2], 4)
    expected = np.mean(
        [kendalltau(scores[g], labels[g]).statistic for g in np.split(np.arange(12), 3)]
    )
    assert kendall_tau(scores, labels, groups) == pytest.approx(expected)
    assert kendall_tau([1, 2, 3], [0.1, 0.2, 0.3], [0, 0, 0]) == pytest.approx(1.0)
    # A constant-label group has no defined tau and is left out.
    assert kendall_tau([1, 2, 3, 1, 2], [0.1, 0.2, 0.3, 0.5, 0.5], [0, 0, 0, 1, 1]) == 1.0


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        pairwise_accuracy([1.0, 2.0], [1.0], [0, 0])
