"""Batches of loop-nest graphs as torch tensors (one disconnected graph, PyG style)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ms_meta.feature.schema import LoopGraph


@dataclass
class GraphBatch:
    """Many :class:`LoopGraph` s as one disconnected graph.

    Shapes: ``x [N, F_node]``, ``node_type [N]``, ``edge_index [2, E]`` (offset into the batch),
    ``edge_type [E]``, ``edge_attr [E, F_edge]``, ``batch [N]`` (graph of each node),
    ``task [B, F_task]``; ``num_graphs = B``.
    """

    x: torch.Tensor
    node_type: torch.Tensor
    edge_index: torch.Tensor
    edge_type: torch.Tensor
    edge_attr: torch.Tensor
    batch: torch.Tensor
    task: torch.Tensor
    num_graphs: int

    @classmethod
    def collate(cls, graphs: Sequence[LoopGraph]) -> GraphBatch:
        if len(graphs) == 0:
            raise ValueError("cannot collate an empty list of graphs")
        num_nodes = np.fromiter((g.num_nodes for g in graphs), np.int64, len(graphs))
        offsets = np.zeros(len(graphs), np.int64)
        np.cumsum(num_nodes[:-1], out=offsets[1:])
        edge_index = np.concatenate(
            [g.edge_index + off for g, off in zip(graphs, offsets, strict=True)], axis=1
        )
        return cls(
            x=torch.from_numpy(np.concatenate([g.x for g in graphs])),
            node_type=torch.from_numpy(np.concatenate([g.node_type for g in graphs])),
            edge_index=torch.from_numpy(edge_index),
            edge_type=torch.from_numpy(np.concatenate([g.edge_type for g in graphs])),
            edge_attr=torch.from_numpy(np.concatenate([g.edge_attr for g in graphs])),
            batch=torch.from_numpy(np.repeat(np.arange(len(graphs)), num_nodes)),
            task=torch.from_numpy(np.stack([g.task for g in graphs])),
            num_graphs=len(graphs),
        )

    @classmethod
    def from_encoded(cls, encoded) -> GraphBatch:
        """From an :class:`~ms_meta.feature.graph.EncodedBatch` (already one graph; no copy)."""
        return cls(
            x=torch.from_numpy(encoded.x),
            node_type=torch.from_numpy(encoded.node_type),
            edge_index=torch.from_numpy(encoded.edge_index),
            edge_type=torch.from_numpy(encoded.edge_type),
            edge_attr=torch.from_numpy(encoded.edge_attr),
            batch=torch.from_numpy(encoded.batch),
            task=torch.from_numpy(encoded.task),
            num_graphs=encoded.num_graphs,
        )
