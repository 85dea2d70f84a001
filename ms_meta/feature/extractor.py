"""``GraphFeatureExtractor``: MetaSchedule's FeatureExtractor interface over loop-nest graphs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.feature_extractor import PyFeatureExtractor

from ms_meta.feature.graph import BlockCache, EncodedBatch, encode_primfuncs
from ms_meta.feature.schema import FEATURE_VERSION, LoopGraph
from ms_meta.feature.task import task_features

logger = logging.getLogger(__name__)

_MAX_WARNINGS_PER_TASK = 3


@dataclass
class _TaskState:
    features: np.ndarray
    cache: BlockCache
    failures: int = 0


@dataclass
class ExtractionStats:
    """Counters over the extractor's lifetime (reported in tuning summaries)."""

    encoded: int = 0
    unencodable: int = 0


def _task_module(context, candidate):
    mod = getattr(context, "mod", None) if context is not None else None
    return mod if mod is not None else candidate.sch.mod


@derived_object
class GraphFeatureExtractor(PyFeatureExtractor):
    """Encode each scheduled candidate as a graph of its loops, blocks and buffer accesses.

    ``extract_from`` returns what MetaSchedule's interface requires (one 2-D float32 tensor per
    candidate: the graph in :meth:`LoopGraph.pack` layout); :meth:`encode` returns the
    :class:`LoopGraph` objects themselves, which :class:`~ms_meta.MetaCostModel` batches for
    the GNN. A candidate that cannot be encoded gets a neutral graph (task features only) and a
    logged warning; it never stops the search.
    """

    feature_version = FEATURE_VERSION

    def __init__(self) -> None:
        super().__init__()
        self._tasks: dict[tuple[str, int], _TaskState] = {}
        self.stats = ExtractionStats()

    def _task_state(self, context, candidate) -> _TaskState:
        mod = _task_module(context, candidate)
        name = str(getattr(context, "task_name", "") or "") if context is not None else ""
        key = (name, hash(mod))
        state = self._tasks.get(key)
        if state is None:
            try:
                features = task_features(mod)
            except Exception as err:  # never let task analysis stop the search
                logger.warning("task features unavailable for %s: %s", name or "task", err)
                features = LoopGraph.neutral().task
            state = _TaskState(features, BlockCache.for_module(mod))
            self._tasks[key] = state
        return state

    def encode_batch(self, context, candidates) -> EncodedBatch:
        """All candidates as one disconnected graph (what the GNN consumes); candidates that
        cannot be encoded get a neutral graph (``failed`` marks them) and a logged warning."""
        if not candidates:
            raise ValueError("no candidates to encode")
        state = self._task_state(context, candidates[0])
        funcs = []
        broken: dict[int, Exception] = {}
        for i, candidate in enumerate(candidates):
            try:
                funcs.append(candidate.sch.mod["main"])
            except Exception as err:  # e.g. a module without "main"
                broken[i] = err
                funcs.append(None)

        def on_error(index: int, err: Exception) -> None:
            state.failures += 1
            self.stats.unencodable += 1
            if state.failures <= _MAX_WARNINGS_PER_TASK:
                suppressed = state.failures == _MAX_WARNINGS_PER_TASK
                logger.warning(
                    "could not encode a candidate (%s: %s); scoring it as neutral%s",
                    type(err).__name__,
                    broken.get(index, err),
                    " (further warnings for this task suppressed)" if suppressed else "",
                )

        batch = encode_primfuncs(funcs, state.features, state.cache, on_error=on_error)
        self.stats.encoded += len(candidates) - int(batch.failed.sum())
        return batch

    def encode(self, context, candidates) -> list[LoopGraph]:
        """One :class:`LoopGraph` per candidate (neutral for those that cannot be encoded)."""
        if not candidates:
            return []
        return self.encode_batch(context, candidates).graphs()

    def extract_from(self, context, candidates) -> list[tvm.runtime.Tensor]:
        return [tvm.runtime.tensor(g.pack()) for g in self.encode(context, candidates)]
