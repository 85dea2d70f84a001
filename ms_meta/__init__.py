"""ms-meta: a meta-learned, hardware-aware cost model for TVM MetaSchedule."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "GraphFeatureExtractor",
    "MetaCostModel",
    "RecordStore",
    "__version__",
    "make_builder",
    "one_shot",
]


def __getattr__(name: str):
    # TVM takes seconds to import; the learnable core (ms_meta.model.gnn) must stay importable
    # without it, so the TVM adapters are loaded on first use.
    if name == "GraphFeatureExtractor":
        from ms_meta.feature.extractor import GraphFeatureExtractor

        return GraphFeatureExtractor
    if name == "MetaCostModel":
        from ms_meta.model.cost_model import MetaCostModel

        return MetaCostModel
    if name == "RecordStore":
        from ms_meta.store import RecordStore

        return RecordStore
    if name == "make_builder":
        from ms_meta.tuning.builder import make_builder

        return make_builder
    if name == "one_shot":
        import importlib

        return importlib.import_module("ms_meta.one_shot")
    raise AttributeError(f"module 'ms_meta' has no attribute {name!r}")
