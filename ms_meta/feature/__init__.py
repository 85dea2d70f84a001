"""Program encoding: a scheduled TIR PrimFunc as a loop-nest graph (:class:`LoopGraph`).

:mod:`ms_meta.feature.schema` (the graph's layout) is TVM-free; the encoder and
:class:`GraphFeatureExtractor` need TVM. Names are imported on first use, so that importing
the schema never imports TVM.
"""

from __future__ import annotations

from ms_meta.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "FEATURE_VERSION": "schema",
    "LoopGraph": "schema",
    "BlockCache": "blocks",
    "encode_primfunc": "graph",
    "encode_primfuncs": "graph",
    "GraphFeatureExtractor": "extractor",
    "task_features": "task",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
