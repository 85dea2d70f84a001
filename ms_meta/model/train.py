"""A small deterministic trainer for :class:`LoopGraphGNN` (plain torch, no TVM)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ms_meta.feature.schema import LoopGraph
from ms_meta.model.batch import GraphBatch
from ms_meta.model.gnn import GNNConfig, LoopGraphGNN
from ms_meta.model.losses import listwise_loss, pairwise_rank_loss, regression_loss

__all__ = [
    "TrainConfig",
    "batch_loss",
    "fit",
    "group_minibatches",
    "init_model",
    "predict",
    "to_device",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`fit` trains.

    Parameters
    ----------
    epochs : int
        Passes over the data.
    lr : float
        Learning rate of AdamW.
    weight_decay : float
        AdamW's decoupled weight decay.
    batch_size : int
        Most candidates per minibatch. Minibatches hold whole groups; a group larger than this
        is split into random chunks of at most ``batch_size`` candidates.
    rank_weight : float
        Weight of :func:`~ms_meta.model.losses.pairwise_rank_loss`.
    listwise_weight : float
        Weight of :func:`~ms_meta.model.losses.listwise_loss`.
    regression_weight : float
        Weight of :func:`~ms_meta.model.losses.regression_loss`.
    temperature : float
        Label temperature of the listwise loss.
    grad_clip : float | None
        Largest gradient norm per step, ``None`` for no clipping.
    seed : int
        Seeds the minibatch shuffling and dropout; one seed gives one result.
    """

    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 512
    rank_weight: float = 1.0
    listwise_weight: float = 0.0
    regression_weight: float = 0.1
    temperature: float = 0.1
    grad_clip: float | None = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"invalid TrainConfig: {self}")


def init_model(config: GNNConfig | None = None, seed: int = 0) -> LoopGraphGNN:
    """A freshly initialized model whose parameters depend only on ``config`` and ``seed``.

    The global torch RNG is seeded inside a forked RNG state, so the caller's RNG state is
    left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LoopGraphGNN(config=config)


def fit(
    model: LoopGraphGNN,
    graphs: Sequence[LoopGraph],
    labels: np.ndarray,
    groups: np.ndarray,
    config: TrainConfig | None = None,
) -> list[float]:
    """Train ``model`` in place on candidates of several task groups.

    Parameters
    ----------
    model : LoopGraphGNN
        Trained on its current device; left in eval mode.
    graphs : sequence of LoopGraph
        One graph per candidate.
    labels : np.ndarray
        Per-group normalized throughput of each candidate, in [0, 1].
    groups : np.ndarray
        Integer task group of each candidate.
    config : TrainConfig | None
        The default ``TrainConfig()`` if ``None``.

    Returns
    -------
    list of float
        The mean minibatch loss of each epoch.

    Shapes: ``graphs [n]``, ``labels [n]``, ``groups [n]``.
    """
    config = TrainConfig() if config is None else config
    labels = np.asarray(labels, np.float32).reshape(-1)
    groups = np.asarray(groups).reshape(-1)
    if not len(graphs) == len(labels) == len(groups):
        raise ValueError(f"got {len(graphs)} graphs, {len(labels)} labels and {len(groups)} groups")
    if not np.all(np.isfinite(labels)):
        raise ValueError("labels must be finite (failed runs have label 0)")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    group_ids = torch.from_numpy(np.unique(groups, return_inverse=True)[1].astype(np.int64))
    history: list[float] = []
    # Dropout draws from the global RNG: seed it from the config, in a forked state.
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(config.seed)
        model.train()
        for epoch in range(config.epochs):
            losses = []
            for index in group_minibatches(group_ids, config.batch_size, generator):
                batch = to_device(GraphBatch.collate([graphs[i] for i in index.tolist()]), device)
                loss = batch_loss(
                    model(batch),
                    torch.from_numpy(labels[index.numpy()]).to(device),
                    group_ids[index].to(device),
                    config,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                losses.append(float(loss.detach()))
            history.append(float(np.mean(losses)) if losses else float("nan"))
            logger.debug("epoch %d: loss %.5f", epoch, history[-1])
    model.eval()
    return history


@torch.inference_mode()
def predict(model: LoopGraphGNN, graphs: Sequence[LoopGraph], batch_size: int = 1024) -> np.ndarray:
    """Scores of ``graphs`` (higher = faster) in eval mode; the model's mode is restored.

    Shapes: ``graphs [n]`` -> ``[n]`` float64.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [
            model(to_device(GraphBatch.collate(graphs[i : i + batch_size]), device))
            for i in range(0, len(graphs), batch_size)
        ]
    finally:
        model.train(was_training)
    if not out:
        return np.zeros(0, np.float64)
    return torch.cat(out).double().cpu().numpy()


def group_minibatches(
    groups: torch.Tensor, batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """One epoch of minibatches, each made of whole groups (or chunks of a large group).

    Groups are cut into chunks of at most ``batch_size`` members (a random split if a group is
    larger), chunks are shuffled, then packed in order into minibatches of at most
    ``batch_size`` candidates. All randomness comes from ``generator``.

    Shapes: ``groups [n]`` -> a list of index tensors ``[b_i]`` covering ``0..n-1`` once.
    """
    order = torch.argsort(groups, stable=True)
    _, counts = torch.unique_consecutive(groups[order], return_counts=True)
    chunks: list[torch.Tensor] = []
    for members in torch.split(order, counts.tolist()):
        if len(members) > batch_size:
            members = members[torch.randperm(len(members), generator=generator)]
        chunks.extend(torch.split(members, batch_size))
    batches: list[torch.Tensor] = []
    current: list[torch.Tensor] = []
    size = 0
    for c in torch.randperm(len(chunks), generator=generator).tolist():
        if size + len(chunks[c]) > batch_size and current:
            batches.append(torch.cat(current))
            current, size = [], 0
        current.append(chunks[c])
        size += len(chunks[c])
    if current:
        batches.append(torch.cat(current))
    return batches


def to_device(batch: GraphBatch, device: torch.device) -> GraphBatch:
    """``batch`` with every tensor on ``device`` (the same object if already there)."""
    if batch.x.device == device:
        return batch
    return dataclasses.replace(
        batch,
        **{
            f.name: getattr(batch, f.name).to(device)
            for f in dataclasses.fields(batch)
            if isinstance(getattr(batch, f.name), torch.Tensor)
        },
    )


def batch_loss(
    scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """The weighted sum of the ranking, listwise and regression losses that ``config`` asks for.

    Shapes: ``scores [B]``, ``labels [B]``, ``groups [B]`` -> ``[]``.
    """
    loss = scores.new_zeros(())
    if config.rank_weight:
        loss = loss + config.rank_weight * pairwise_rank_loss(scores, labels, groups)
    if config.listwise_weight:
        loss = loss + config.listwise_weight * listwise_loss(
            scores, labels, groups, temperature=config.temperature
        )
    if config.regression_weight:
        loss = loss + config.regression_weight * regression_loss(scores, labels)
    return loss
