"""ms-meta: a meta-learned, hardware-aware cost model for TVM MetaSchedule."""

from __future__ import annotations

from ms_meta.lazy import lazy_exports

__version__ = "0.1.0"

__all__ = [
    "GraphFeatureExtractor",
    "MetaCostModel",
    "RecordStore",
    "__version__",
    "make_builder",
    "one_shot",
]

# TVM takes seconds to import; the learnable core (ms_meta.model.gnn) must stay importable
# without it, so the TVM adapters are loaded on first use.
_EXPORTS = {
    "GraphFeatureExtractor": "ms_meta.feature.extractor",
    "MetaCostModel": "ms_meta.model.cost_model",
    "RecordStore": "ms_meta.store",
    "make_builder": "ms_meta.tuning.builder",
    "one_shot": "ms_meta.one_shot",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
