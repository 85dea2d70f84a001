"""LoopGraphGNN: shapes, invariances, determinism, functional_call (no TVM)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.func import functional_call

from ms_meta.feature.schema import LoopGraph
from ms_meta.model.batch import GraphBatch
from ms_meta.model.gnn import GNNConfig, LoopGraphGNN
from ms_meta.model.train import init_model

CONFIG = GNNConfig(hidden=32, num_layers=2)


def _scores(model: LoopGraphGNN, graphs: list[LoopGraph]) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return model(GraphBatch.collate(graphs))


def test_forward_shape_and_dtype(small_graphs):
    scores = _scores(init_model(CONFIG, seed=0), small_graphs)
    assert scores.shape == (len(small_graphs),)
    assert scores.dtype == torch.float32
    assert torch.isfinite(scores).all()


def test_same_seed_same_model_other_seed_other_model(small_graphs):
    a = _scores(init_model(CONFIG, seed=3), small_graphs)
    b = _scores(init_model(CONFIG, seed=3), small_graphs)
    c = _scores(init_model(CONFIG, seed=4), small_graphs)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_init_model_leaves_global_rng_alone():
    state = torch.get_rng_state()
    init_model(CONFIG, seed=0)
    assert torch.equal(state, torch.get_rng_state())


def test_scores_do_not_depend_on_graph_order_or_batch(small_graphs):
    model = init_model(CONFIG, seed=0)
    scores = _scores(model, small_graphs)
    perm = np.random.default_rng(0).permutation(len(small_graphs))
    permuted = _scores(model, [small_graphs[i] for i in perm])
    torch.testing.assert_close(permuted, scores[perm], rtol=1e-5, atol=1e-5)
    alone = torch.cat([_scores(model, [g]) for g in small_graphs])
    torch.testing.assert_close(alone, scores, rtol=1e-5, atol=1e-5)


def test_scores_do_not_depend_on_node_numbering(small_graphs):
    graph = small_graphs[0]
    perm = np.random.default_rng(1).permutation(graph.num_nodes)
    new_id = np.empty_like(perm)
    new_id[perm] = np.arange(graph.num_nodes)
    edge_perm = np.random.default_rng(2).permutation(graph.num_edges)
    renumbered = LoopGraph(
        node_type=graph.node_type[perm],
        x=graph.x[perm],
        edge_index=new_id[graph.edge_index[:, edge_perm]],
        edge_type=graph.edge_type[edge_perm],
        edge_attr=graph.edge_attr[edge_perm],
        task=graph.task,
    )
    model = init_model(CONFIG, seed=0)
    torch.testing.assert_close(
        _scores(model, [renumbered]), _scores(model, [graph]), rtol=1e-5, atol=1e-5
    )


def test_graphs_without_edges(small_graphs):
    model = init_model(CONFIG, seed=0)
    lone = _scores(model, [LoopGraph.neutral()])
    assert lone.shape == (1,) and torch.isfinite(lone).all()
    mixed = _scores(model, [LoopGraph.neutral(), *small_graphs[:2], LoopGraph.neutral()])
    torch.testing.assert_close(mixed[0], lone[0])
    torch.testing.assert_close(mixed[3], lone[0])
    assert torch.isfinite(mixed).all()


def test_zero_layers(small_graphs):
    scores = _scores(init_model(GNNConfig(hidden=16, num_layers=0), seed=0), small_graphs)
    assert scores.shape == (len(small_graphs),)


def test_functional_call_matches_module_and_reaches_all_params(small_graphs):
    model = init_model(CONFIG, seed=0).eval()
    batch = GraphBatch.collate(small_graphs)
    params = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
    out = functional_call(model, params, (batch,))
    torch.testing.assert_close(out, model(batch), rtol=0, atol=0)

    grads = torch.autograd.grad(out.square().sum(), list(params.values()))
    for (name, _), grad in zip(params.items(), grads, strict=True):
        assert torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, f"no gradient reaches {name}"

    shifted = {name: p + 0.05 for name, p in params.items()}
    assert not torch.allclose(functional_call(model, shifted, (batch,)), out)
    # functional_call must not have touched the module's own parameters.
    torch.testing.assert_close(model(batch), out, rtol=0, atol=0)


def test_config_and_state_round_trip(small_graphs):
    model = init_model(CONFIG, seed=0)
    restored = LoopGraphGNN(config=GNNConfig.from_dict(model.config.to_dict()))
    restored.load_state_dict(model.state_dict())
    assert restored.config == model.config
    assert torch.equal(_scores(restored, small_graphs), _scores(model, small_graphs))


@pytest.mark.parametrize(
    "kwargs",
    [{"hidden": 0}, {"num_layers": -1}, {"dropout": 1.0}, {"relation_dim": 0}],
)
def test_invalid_config(kwargs):
    with pytest.raises(ValueError):
        GNNConfig(**kwargs)


def test_model_modules_import_without_tvm():
    code = (
        "import sys, ms_meta.model.gnn, ms_meta.model.losses, ms_meta.model.metrics, "
        "ms_meta.model.train; assert 'tvm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
