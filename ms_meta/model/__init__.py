"""The learnable core: the loop-graph GNN, its few-shot adaptation, pretraining
(:mod:`ms_meta.model.pretrain`), checkpoints, and :class:`MetaCostModel`, MetaSchedule's
CostModel around it.

Everything but :class:`MetaCostModel` is TVM-free; names are imported on first use, so that
``import ms_meta.model.gnn`` stays fast and never imports TVM.
"""

from __future__ import annotations

from ms_meta.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "GNNConfig": "gnn",
    "LoopGraphGNN": "gnn",
    "GraphBatch": "batch",
    "AdaptConfig": "meta",
    "AdaptingScorer": "meta",
    "adapt": "meta",
    "normalized_throughput": "meta",
    "PretrainConfig": "pretrain",
    "PretrainResult": "pretrain",
    "validate": "validation",
    "Checkpoint": "weights",
    "load_checkpoint": "weights",
    "save_checkpoint": "weights",
    "MetaCostModel": "cost_model",
    "CostModelSummary": "cost_model",
    "COST_MODELS": "factory",
    "make_cost_model": "factory",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
