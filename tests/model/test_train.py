"""The trainer: group minibatches, determinism, learning on synthetic tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ms_meta.feature.schema import LoopGraph
from ms_meta.model.gnn import GNNConfig
from ms_meta.model.metrics import pairwise_accuracy
from ms_meta.model.train import TrainConfig, fit, group_minibatches, init_model, predict

MODEL = GNNConfig(hidden=32, num_layers=2)


def test_group_minibatches_hold_whole_groups():
    groups = torch.tensor([0] * 5 + [1] * 3 + [2] * 12 + [3] * 2)
    batches = group_minibatches(groups, 8, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(len(groups)))
    assert all(len(b) <= 8 for b in batches)
    for b in batches:
        for g in groups[b].unique().tolist():
            members = (groups == g).sum().item()
            if members <= 8:  # small groups are never split
                assert (groups[b] == g).sum().item() == members
    again = group_minibatches(groups, 8, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))


def test_fit_is_deterministic_and_leaves_global_rng_alone(train_set, test_set):
    config = TrainConfig(epochs=2, batch_size=64, seed=5)
    rng_state = torch.get_rng_state()
    runs = []
    for _ in range(2):
        model = init_model(GNNConfig(hidden=16, num_layers=1, dropout=0.1), seed=1)
        history = fit(model, train_set.graphs, train_set.labels, train_set.groups, config)
        runs.append((history, predict(model, test_set.graphs)))
    assert torch.equal(rng_state, torch.get_rng_state())
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_fit_learns_to_rank_held_out_tasks(train_set, test_set):
    model = init_model(MODEL, seed=0)
    before = pairwise_accuracy(predict(model, test_set.graphs), test_set.labels, test_set.groups)
    history = fit(
        model,
        train_set.graphs,
        train_set.labels,
        train_set.groups,
        TrainConfig(epochs=10, lr=3e-3, batch_size=96),
    )
    after = pairwise_accuracy(predict(model, test_set.graphs), test_set.labels, test_set.groups)
    assert history[-1] < history[0]
    assert after > 0.7, f"pairwise accuracy {before:.3f} -> {after:.3f}"
    assert not model.training


def test_predict(small_graphs):
    model = init_model(MODEL, seed=0).train()
    scores = predict(model, small_graphs, batch_size=5)
    assert scores.dtype == np.float64 and scores.shape == (len(small_graphs),)
    np.testing.assert_allclose(scores, predict(model, small_graphs), rtol=1e-5, atol=1e-6)
    assert model.training
    assert predict(model, []).shape == (0,)
    assert predict(model, [LoopGraph.neutral()]).shape == (1,)


def test_fit_rejects_bad_input(small_graphs):
    model = init_model(MODEL, seed=0)
    n = len(small_graphs)
    with pytest.raises(ValueError):
        fit(model, small_graphs, np.zeros(n - 1), np.zeros(n, np.int64))
    with pytest.raises(ValueError):
        fit(model, small_graphs, np.full(n, np.nan), np.zeros(n, np.int64))
