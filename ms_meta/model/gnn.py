"""A relational graph neural network that scores loop-nest graphs (plain torch, no TVM)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ms_meta.feature.schema import (
    EDGE_TYPES,
    NUM_EDGE_FEATURES,
    NUM_NODE_FEATURES,
    NUM_TASK_FEATURES,
)
from ms_meta.model.batch import GraphBatch

# Every edge type is used in both directions, each with its own weights.
NUM_RELATIONS = 2 * len(EDGE_TYPES)

# Node, edge and task features are log2-scaled and mostly lie in [0, 15] (log FLOPs up to ~40);
# a fixed scale keeps the first layers' pre-activations near unit size at initialization.
_INPUT_SCALE = 1.0 / 8.0


@dataclass(frozen=True)
class GNNConfig:
    """Hyper-parameters of :class:`LoopGraphGNN`.

    Parameters
    ----------
    hidden : int
        Width of node states and of the graph embedding.
    num_layers : int
        Rounds of relational message passing.
    dropout : float
        Dropout rate on node-state updates and in the readout head (training mode only).
    relation_dim : int | None
        Width of the message each relation delivers to a node; ``None`` means
        ``hidden // NUM_RELATIONS`` (at least 1). The messages of all relations form a
        ``NUM_RELATIONS * relation_dim`` vector per node.
    """

    hidden: int = 64
    num_layers: int = 3
    dropout: float = 0.0
    relation_dim: int | None = None

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.num_layers < 0:
            raise ValueError(f"invalid GNNConfig: {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.relation_dim is not None and self.relation_dim < 1:
            raise ValueError(f"relation_dim must be positive, got {self.relation_dim}")

    @property
    def message_dim(self) -> int:
        """The width of one relation's message (``relation_dim`` resolved)."""
        if self.relation_dim is not None:
            return self.relation_dim
        return max(1, self.hidden // NUM_RELATIONS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GNNConfig:
        return cls(**values)


@dataclass(frozen=True)
class _Relations:
    """Edge indexing shared by all layers of one forward pass.

    Every edge is used in both directions: the first ``E`` of the ``2E`` directed edges are the
    batch's edges, the last ``E`` their reverses. A layer projects each node to
    ``NUM_RELATIONS`` rows of ``message_dim`` values, its outgoing message per relation; the
    directed edge ``j -> i`` of relation ``r`` reads row ``source_slot = j * NUM_RELATIONS + r``
    of that projection and adds into row ``target_slot = i * NUM_RELATIONS + r`` of the
    per-relation sums, so one ``index_select`` and one ``index_add_`` serve all relations.

    Shapes: ``source_slot [2E]``, ``target_slot [2E]``, ``inv_degree [N * R, message_dim]``
    (1 / number of edges into the slot, 1 for empty slots; expanded so that scaling the sums
    is a plain elementwise product), ``edge_attr [E, F_edge]``.
    """

    source_slot: Tensor
    target_slot: Tensor
    inv_degree: Tensor
    edge_attr: Tensor

    @classmethod
    def of(cls, batch: GraphBatch, *, message_dim: int) -> _Relations:
        num_nodes = batch.x.shape[0]
        src, dst = batch.edge_index[0], batch.edge_index[1]
        rel = batch.edge_type
        relation = torch.cat([rel, rel + len(EDGE_TYPES)])
        source_slot = torch.cat([src, dst]) * NUM_RELATIONS + relation
        target_slot = torch.cat([dst, src]) * NUM_RELATIONS + relation
        degree = torch.bincount(target_slot, minlength=num_nodes * NUM_RELATIONS)
        inv_degree = 1.0 / degree.clamp_min(1).to(batch.x.dtype)
        inv_degree = inv_degree.unsqueeze(1).expand(-1, message_dim).contiguous()
        return cls(source_slot, target_slot, inv_degree, batch.edge_attr)


class RelationalLayer(nn.Module):
    """One round of relational message passing with a residual, normalized update.

    For an edge ``j -> i`` of relation ``r`` (an edge type or its reverse) the message is
    ``m_ji = gelu(W_r h_j + b_r + U_d e_ji)``, with ``e_ji`` the edge features (non-zero on
    ``access`` edges only) and ``d`` the edge's direction. Messages are averaged per
    (node, relation), the averages of all relations concatenated into ``m_i``, and the node state
    updated as ``h_i <- LayerNorm(h_i + gelu(S h_i + c + M m_i))``.

    Each relation's message is only ``message_dim`` wide (``hidden / NUM_RELATIONS`` by
    default), so a layer costs about three ``hidden x hidden`` products per node plus gathers
    and sums of ``message_dim``-wide rows per edge.

    Shapes: ``h [N, hidden]`` -> ``[N, hidden]``.
    """

    def __init__(self, *, hidden: int, message_dim: int, dropout: float) -> None:
        super().__init__()
        self.message_dim = message_dim
        self.dropout = dropout
        self.message = nn.Linear(hidden, NUM_RELATIONS * message_dim)  # all W_r and b_r
        # Edge features enter forward messages through the first message_dim rows, reverse
        # messages through the last.
        self.edge = nn.Linear(NUM_EDGE_FEATURES, 2 * message_dim, bias=False)
        self.own = nn.Linear(hidden, hidden)  # S and c
        self.mix = nn.Linear(NUM_RELATIONS * message_dim, hidden, bias=False)  # M
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: Tensor, relations: _Relations) -> Tensor:
        # The in-place ops below only touch fresh intermediates whose values autograd does not
        # keep (index_select, index_add_ and addmm save only their other operands), which saves
        # allocating several node- and edge-sized tensors per layer.
        num_nodes, dim = h.shape[0], self.message_dim
        slots = self.message(h).view(num_nodes * NUM_RELATIONS, dim)
        messages = slots.index_select(0, relations.source_slot)
        num_edges = relations.edge_attr.shape[0]
        # Scaling the small weights rather than the edge features saves a pass over the latter.
        edge_weight = self.edge.weight * _INPUT_SCALE
        messages[:num_edges].add_(F.linear(relations.edge_attr, edge_weight[:dim]))
        messages[num_edges:].add_(F.linear(relations.edge_attr, edge_weight[dim:]))
        messages = F.gelu(messages)
        # On CPU index_add_ sums in a fixed order, so results are bitwise reproducible; on CUDA
        # it uses atomics unless torch.use_deterministic_algorithms(True) is set.
        mean = messages.new_zeros(num_nodes * NUM_RELATIONS, dim)
        mean = mean.index_add_(0, relations.target_slot, messages).mul_(relations.inv_degree)
        update = self.own(h).addmm_(mean.view(num_nodes, -1), self.mix.weight.t())
        update = F.dropout(F.gelu(update), self.dropout, self.training)
        return self.norm(update.add_(h))


class LoopGraphGNN(nn.Module):
    """Scores scheduled programs given as loop-nest graphs; higher means faster.

    Nodes are embedded from their features (which include a one-hot node type), refined by
    ``num_layers`` rounds of relational message passing (:class:`RelationalLayer`), then mean-
    and max-pooled per graph; the pooled vectors and an embedding of the task features feed an
    MLP head.

    Parameters
    ----------
    config : GNNConfig | None
        Hyper-parameters; the default ``GNNConfig()`` if ``None``. Stored as ``config``.

    Shapes: ``batch.x [N, F_node]``, ``batch.edge_index [2, E]``, ``batch.batch [N]``,
    ``batch.task [B, F_task]`` -> scores ``[B]``.
    """

    def __init__(self, *, config: GNNConfig | None = None) -> None:
        super().__init__()
        self.config = GNNConfig() if config is None else config
        hidden = self.config.hidden
        self.node_encoder = nn.Linear(NUM_NODE_FEATURES, hidden)
        self.input_norm = nn.LayerNorm(hidden)
        self.layers = nn.ModuleList(
            RelationalLayer(
                hidden=hidden, message_dim=self.config.message_dim, dropout=self.config.dropout
            )
            for _ in range(self.config.num_layers)
        )
        self.task_encoder = nn.Sequential(
            nn.Linear(NUM_TASK_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.head = nn.Sequential(
            nn.Linear(3 * hidden, hidden),
            nn.GELU(),
            nn.Dropout(self.config.dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, batch: GraphBatch) -> Tensor:
        # The node type is one-hot in the first columns of x, so the encoder embeds it too.
        h = self.input_norm(_scaled_linear(self.node_encoder, batch.x))
        if self.layers:
            relations = _Relations.of(batch, message_dim=self.config.message_dim)
            for layer in self.layers:
                h = layer(h, relations)
        pooled = _pool(h, batch.batch, batch.num_graphs)
        task = self.task_encoder(batch.task * _INPUT_SCALE)
        return self.head(torch.cat([pooled, task], dim=1)).squeeze(1)


def _scaled_linear(linear: nn.Linear, x: Tensor) -> Tensor:
    """``linear(x * _INPUT_SCALE)``, scaling the (small) weight instead of the (large) input."""
    return F.linear(x, linear.weight * _INPUT_SCALE, linear.bias)


def _pool(h: Tensor, graph: Tensor, num_graphs: int) -> Tensor:
    """Mean and max of node states per graph.

    Shapes: ``h [N, H]``, ``graph [N]`` -> ``[B, 2H]``.
    """
    count = torch.bincount(graph, minlength=num_graphs).clamp_min(1).to(h.dtype)
    total = h.new_zeros(num_graphs, h.shape[1]).index_add_(0, graph, h)
    index = graph.unsqueeze(1).expand_as(h)
    peak = h.new_zeros(num_graphs, h.shape[1]).scatter_reduce(
        0, index, h, reduce="amax", include_self=False
    )
    return torch.cat([total / count.unsqueeze(1), peak], dim=1)
