"""Few-shot adaptation of the GNN to one task (the inner loop of meta-learning).

TVM-free. Vocabulary as in learn2learn: ``adapt(support) -> params``, then predict with those
params through ``torch.func.functional_call``; the meta-parameters are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call

from ms_meta.feature.schema import LoopGraph
from ms_meta.labels import normalized_throughput  # the per-task labels, re-exported
from ms_meta.model.batch import GraphBatch
from ms_meta.model.gnn import LoopGraphGNN
from ms_meta.model.losses import pairwise_rank_loss, regression_loss

__all__ = [
    "AdaptConfig",
    "AdaptingScorer",
    "Params",
    "adapt",
    "normalized_throughput",
    "parameters_of",
    "predict_batch",
    "predict_with",
]

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class AdaptConfig:
    """Inner-loop settings. ``steps`` Adam steps on the task's samples, restarting from the
    meta-parameters every time (no drift between calls)."""

    steps: int = 10
    lr: float = 3e-3
    rank_weight: float = 1.0
    regression_weight: float = 0.5
    max_samples: int = 256  # most recent samples used per step (bounds the cost)
    seed: int = 0


def parameters_of(model: LoopGraphGNN) -> Params:
    """A detached copy of the model's parameters (the meta-parameters)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def adapt(
    model: LoopGraphGNN,
    meta_params: Params,
    graphs: Sequence[LoopGraph],
    labels: np.ndarray,
    config: AdaptConfig = AdaptConfig(),
) -> Params:
    """Fine-tune ``meta_params`` on one task's measured samples; returns new parameters.

    ``model`` only provides the architecture; neither it nor ``meta_params`` is modified.

    Shapes: ``graphs [n]``, ``labels [n]``.
    """
    if len(graphs) != len(labels):
        raise ValueError(f"got {len(graphs)} graphs and {len(labels)} labels")
    if len(graphs) < 2 or config.steps <= 0:
        return {k: v.clone() for k, v in meta_params.items()}
    graphs = list(graphs)[-config.max_samples :]
    y = torch.as_tensor(np.asarray(labels, np.float32)[-config.max_samples :])
    groups = torch.zeros(len(graphs), dtype=torch.int64)
    batch = GraphBatch.collate(graphs)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in meta_params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=config.lr)
    was_training = model.training
    model.eval()  # no dropout noise in the inner loop: adaptation is deterministic
    try:
        for _ in range(config.steps):
            scores = functional_call(model, params, (batch,))
            loss = config.rank_weight * pairwise_rank_loss(scores, y, groups)
            if config.regression_weight:
                loss = loss + config.regression_weight * regression_loss(scores, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        model.train(was_training)
    return {k: v.detach() for k, v in params.items()}


@torch.inference_mode()
def predict_with(model: LoopGraphGNN, params: Params | None, graphs: Sequence[LoopGraph],
                 batch_size: int = 2048) -> np.ndarray:  # fmt: skip
    """Scores (higher = faster) of ``graphs`` under ``params`` (the model's own if None).

    Shapes: ``graphs [n]`` -> ``[n]`` float64.
    """
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(graphs), batch_size):
            batch = GraphBatch.collate(graphs[i : i + batch_size])
            out.append(model(batch) if params is None else functional_call(model, params, (batch,)))
    finally:
        model.train(was_training)
    if not out:
        return np.zeros(0, np.float64)
    return torch.cat(out).double().numpy()


@torch.inference_mode()
def predict_batch(model: LoopGraphGNN, params: Params | None, batch: GraphBatch) -> np.ndarray:
    """Scores of an already collated batch (see :func:`predict_with`).

    Shapes: ``batch`` of ``B`` graphs -> ``[B]`` float64.
    """
    was_training = model.training
    model.eval()
    try:
        out = model(batch) if params is None else functional_call(model, params, (batch,))
    finally:
        model.train(was_training)
    return out.double().numpy()


class AdaptingScorer:
    """An evaluation scorer (see :func:`ms_meta.eval.protocol.evaluate`): predicts a task's query
    records after adapting to its support records exactly as :class:`~ms_meta.MetaCostModel` does
    at tuning time (zero-shot when the support is empty).

    Parameters
    ----------
    name : str
        Row label.
    model : LoopGraphGNN
        Pretrained model; its parameters are the initialization of every adaptation.
    config : AdaptConfig
        The inner loop.
    """

    def __init__(self, name: str, model: LoopGraphGNN, config: AdaptConfig) -> None:
        self.name = name
        self.model = model
        self.config = config
        self.meta_params = parameters_of(model)

    def score(self, task, support: np.ndarray, query: np.ndarray) -> np.ndarray:
        params = None
        if len(support):
            labels = np.asarray(task.labels, np.float32)
            params = adapt(
                self.model, self.meta_params, [task.graphs[i] for i in support], labels[support],
                self.config,
            )  # fmt: skip
        return predict_with(self.model, params, [task.graphs[i] for i in query])
