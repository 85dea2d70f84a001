"""``MetaCostModel``: MetaSchedule's CostModel interface around the loop-graph GNN.

A thin adapter: encoding is :class:`~ms_meta.GraphFeatureExtractor`'s job, learning is in
:mod:`ms_meta.model.meta` (TVM-free). On every ``update`` the model adapts, from its
(pre-trained or freshly initialized) parameters, to all samples measured so far for the task,
and ``predict`` scores with the adapted parameters of that task. A task's samples start with
what the record store (:mod:`ms_meta.store`) measured of the same workload for the same target,
so a search of a task measured before adapts before its first measurement (the warm start).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import weakref
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import tvm_ffi
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.cost_model import PyCostModel

from ms_meta.errors import WeightsError
from ms_meta.feature.extractor import GraphFeatureExtractor
from ms_meta.feature.schema import LoopGraph
from ms_meta.labels import cpu_label
from ms_meta.model.batch import GraphBatch
from ms_meta.model.gnn import GNNConfig
from ms_meta.model.meta import (
    AdaptConfig,
    adapt,
    normalized_throughput,
    parameters_of,
    predict_batch,
)
from ms_meta.model.scoring_process import ScoringProcess, ScoringProcessError
from ms_meta.model.train import init_model
from ms_meta.model.warm_start import WarmStart
from ms_meta.model.weights import (
    Checkpoint,
    check_target,
    default_weights_path,
    load_checkpoint,
    other_cpu_weights_path,
    save_checkpoint,
)

logger = logging.getLogger(__name__)

# Untrained models need more steps to learn anything from the task's samples than pre-trained
# ones need to adapt.
_ONLINE_STEPS, _ONLINE_LR = 60, 1e-2
_PRETRAINED_STEPS, _PRETRAINED_LR = 10, 3e-3
# Scores are mapped through a steep softplus: strictly positive (MetaSchedule clamps negative
# scores to zero and samples parents in proportion to them) and order-preserving.
_SOFTPLUS_SHARPNESS = 8.0
# predict() encodes and scores candidates in chunks: the search's populations run to thousands
# of candidates. Chunks of 64 graphs (about 3,000 nodes) keep the GNN's intermediate tensors
# near the size of a core's L2 cache; 64 scored fastest of 16-128 on the Zen 4 guest (about
# 5,900 against 5,000 candidates/s at 128); the GNN on the other core also slowed the
# encoder by up to 10-20% in some runs, through the shared L3 cache, and not at all in others
# (docs/bench/contention_encoder.py). With a scoring process (see
# ms_meta.model.scoring_process) the child scores chunk k while this process encodes chunk
# k+1; only the last chunk's scoring is not overlapped, so the last chunks are smaller.
# Both paths use the same chunks, so their scores are bit-identical. A thread instead of a
# process gained nothing: the encoder's FFI calls and the GNN's torch ops hand the GIL back
# and forth thousands of times per chunk.
_CHUNK = 64
_TAIL_CHUNKS = (32, 16, 16)


def _chunk_bounds(count: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of ``count`` candidates: chunks of ``_CHUNK``, except
    that the last ``_CHUNK`` are split into ``_TAIL_CHUNKS`` and the first absorbs the rest."""
    sizes = []
    remaining = count
    for size in reversed(_TAIL_CHUNKS):
        if remaining <= 0:
            break
        sizes.append(min(size, remaining))
        remaining -= sizes[-1]
    sizes += [_CHUNK] * (remaining // _CHUNK)
    if remaining % _CHUNK:
        sizes.append(remaining % _CHUNK)
    bounds, start = [], 0
    for size in reversed(sizes):
        bounds.append((start, start + size))
        start += size
    return bounds


def _first_given(*values):
    """The first of ``values`` that is not ``None`` (a given 0 counts)."""
    return next(v for v in values if v is not None)


# Calls with fewer candidates are scored in this process: the child's start-up (about 2-3 s,
# mostly importing torch) pays off only over many candidates.
SCORING_PROCESS_MIN_CANDIDATES = 256


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run torch with ``n`` intra-op threads, then restore the caller's setting. One thread:
    with another process busy on the second core, two threads made the GNN 4-10x slower."""
    previous = torch.get_num_threads()
    if previous != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if previous != n:
            torch.set_num_threads(previous)


@dataclass
class _TaskSamples:
    graphs: list[LoopGraph] = field(default_factory=list)
    latencies: list[float | None] = field(default_factory=list)


@dataclass
class CostModelSummary:
    """Counters of one model's life, for tuning reports."""

    predicted: int = 0
    updates: int = 0
    samples: int = 0
    unencodable: int = 0
    warm_tasks: int = 0  # tasks whose samples started with the record store's records
    warm_samples: int = 0  # those records


def _host_target_dict() -> dict:
    from ms_meta.tuning.target import host_target, target_summary

    return target_summary(host_target())


def _writing_predict(predict_func):
    """MetaSchedule's ``f_predict`` callback: score ``candidates`` into the C++ result buffer.

    As TVM's own (``_PyCostModel``), except that an empty list returns at once: there is
    nothing to write, and the buffer of an empty result is a NULL pointer, which numpy refuses
    (``ValueError: NULL pointer access``, TVM 0.27).
    """

    def f_predict(context, candidates, return_ptr) -> None:
        n = len(candidates)
        if n == 0:
            return
        pointer = ctypes.cast(return_ptr, ctypes.POINTER(ctypes.c_double))
        np.ctypeslib.as_array(pointer, shape=(n,))[:] = predict_func(context, candidates)

    return f_predict


class _PyCostModelObject(PyCostModel._tvm_metadata["cls"]):
    """MetaSchedule's ``PyCostModel`` object, with a predict callback that takes empty lists."""

    def __init__(self, f_load=None, f_save=None, f_update=None, predict_func=None) -> None:
        self.__init_handle_by_constructor__(
            tvm_ffi.get_global_func("s_tir.meta_schedule.CostModelPyCostModel"),
            f_load,
            f_save,
            f_update,
            _writing_predict(predict_func),
        )


class _PyCostModel(PyCostModel):
    """``PyCostModel`` whose TVM object is :class:`_PyCostModelObject`."""

    _tvm_metadata = {**PyCostModel._tvm_metadata, "cls": _PyCostModelObject}  # noqa: RUF012


@derived_object
class MetaCostModel(_PyCostModel):
    """A GNN cost model that adapts to each task from a few measurements.

    Parameters
    ----------
    weights : "default", path or None
        ``"default"``: the weights shipped for this machine's CPU; for a CPU without its own,
        the shipped weights of another CPU of the same target kind, with a logged warning
        (an untrained model if there are none); a path: a checkpoint written by
        :meth:`save` or ``ms-meta pretrain``; ``None``: an untrained online model.
    target : dict or tvm.target.Target, optional
        The target the model scores programs for (default: this machine); weights trained for
        another CPU are refused unless ``allow_other_cpu``.
    adapt_steps : int, optional
        Inner gradient steps per ``update`` (0: no adaptation). Default: what the weights
        record (the shipped ones: 5 on rocketlake, 20 on the Zen 4 guest), else 10 with
        pre-trained weights and 60 without.
    adapt_lr : float, optional
        Learning rate of the inner steps. Default: what the weights record (1e-3 for both
        shipped files), else 3e-3 pre-trained, 1e-2 untrained.
    seed : int
        Seeds the initialization of an untrained model.
    scoring_process : bool, optional
        Score large batches in a child process, on another core, while this process encodes
        the next chunk (default: when the machine has two or more cores). The first call with
        many candidates starts the child (2-3 s, in the background) and later calls use it.
        Scores are the same either way; if the child fails, scoring falls back to this process
        with a warning.
    allow_other_cpu : bool
        Accept weights trained for another ``mcpu`` of the same target kind (with a logged
        warning) instead of refusing them; the README's "Other CPUs" has measured figures.
    store : "default", path or None
        The record store whose records of a task (same workload, same target; the last
        ``max_samples`` of the adaptation) start that task's samples the first time the model
        meets the task, so that it adapts before measuring anything. ``"default"``:
        ``$MS_META_STORE``, else the user's cache file; ``None``: no warm start.
    """

    def __init__(
        self,
        *,
        weights: str | os.PathLike | Literal["default"] | None = "default",
        target=None,
        adapt_steps: int | None = None,
        adapt_lr: float | None = None,
        seed: int = 0,
        gnn_config: GNNConfig | None = None,
        extractor: GraphFeatureExtractor | None = None,
        scoring_process: bool | None = None,
        allow_other_cpu: bool = False,
        store: str | os.PathLike | None = "default",
    ) -> None:
        super().__init__()
        self.target = self._target_dict(target)
        self.allow_other_cpu = allow_other_cpu
        self.seed = seed
        self.extractor = extractor if extractor is not None else GraphFeatureExtractor()
        checkpoint = self._resolve_weights(weights)
        self.weights_source = checkpoint.meta.get("source") if checkpoint else None
        self.pretrained = checkpoint is not None
        config = checkpoint.gnn_config if checkpoint else (gnn_config or GNNConfig())
        self.model = init_model(config, seed=seed)
        if checkpoint is not None:
            self._load_state(checkpoint)
        self.model.eval()
        self.meta_params = parameters_of(self.model)
        # Pretrained weights carry the inner loop they were meta-trained with.
        trained = checkpoint.meta.get("adapt", {}) if checkpoint else {}
        # (recorded zeros count: 0 steps is a model that never adapts)
        steps = _first_given(adapt_steps, trained.get("steps"),
                             _PRETRAINED_STEPS if self.pretrained else _ONLINE_STEPS)  # fmt: skip
        lr = _first_given(adapt_lr, trained.get("lr"),
                          _PRETRAINED_LR if self.pretrained else _ONLINE_LR)  # fmt: skip
        self.adapt_config = AdaptConfig(steps=steps, lr=lr, seed=seed)
        self._samples: dict[str, _TaskSamples] = {}
        self._adapted: dict[str, dict[str, torch.Tensor]] = (
            dict(checkpoint.adapted) if checkpoint else {}
        )
        self._task_keys: dict[tuple[str, int], str] = {}
        self.summary = CostModelSummary()
        self.checkpoint_meta = dict(checkpoint.meta) if checkpoint else {}
        self.torch_threads = 1
        if scoring_process is None:
            scoring_process = (os.cpu_count() or 1) >= 2
        self.scoring_process = scoring_process
        self._scorer: ScoringProcess | None = None
        self.store = store
        self._warm_start = WarmStart(store)

    # -- construction helpers -------------------------------------------------------------
    @staticmethod
    def _target_dict(target) -> dict:
        if target is None:
            return _host_target_dict()
        if isinstance(target, dict):
            return target
        from ms_meta.tuning.target import target_summary

        return target_summary(target)

    def _resolve_weights(self, weights) -> Checkpoint | None:
        if weights is None:
            return None
        if isinstance(weights, str) and weights == "default":
            path = default_weights_path(self.target)
            if path is None:
                return self._other_cpu_weights()
        else:
            path = weights
        checkpoint = load_checkpoint(path)
        other_cpu = check_target(
            checkpoint.target, self.target, f"weights {path}", allow_other_cpu=self.allow_other_cpu
        )
        checkpoint.meta.setdefault("source", str(path))
        if other_cpu:
            logger.warning(
                "weights %s were trained for %s, the target is %s (allowed by allow_other_cpu)",
                path, other_cpu, cpu_label(self.target),
            )  # fmt: skip
            checkpoint.meta["other_cpu"] = other_cpu
        return checkpoint

    def _other_cpu_weights(self) -> Checkpoint | None:
        cpu = cpu_label(self.target) or self.target.get("kind")
        path = other_cpu_weights_path(self.target)
        if path is None:
            logger.info("no shipped weights for %s; using an untrained online model", cpu)
            return None
        checkpoint = load_checkpoint(path)
        trained_for = cpu_label(checkpoint.target or {}) or path.stem
        logger.warning(
            "no shipped weights for %s; starting from the weights trained on %s (%s), which "
            "update() adapts to this CPU's measurements. How well they carry over, and how to "
            "train weights for this CPU: README, Other CPUs", cpu, trained_for, path.name,
        )  # fmt: skip
        checkpoint.meta.setdefault("source", str(path))
        checkpoint.meta["other_cpu"] = str(trained_for)
        return checkpoint

    def _load_state(self, checkpoint: Checkpoint) -> None:
        try:
            self.model.load_state_dict(checkpoint.state_dict)
        except RuntimeError as err:
            raise WeightsError(f"weights do not fit the model: {err}") from None

    # -- task bookkeeping ---------------------------------------------------------------
    def _task_key(self, context, candidates) -> str:
        mod = getattr(context, "mod", None) if context is not None else None
        if mod is None:
            mod = candidates[0].sch.mod if candidates else None
        name = str(getattr(context, "task_name", "") or "") if context is not None else ""
        fast_key = (name, hash(mod))
        key = self._task_keys.get(fast_key)
        if key is None:
            # Structural, so that saved adapted parameters find their task in a new process.
            key = f"{tvm_ffi.structural_hash(mod) & 0xFFFFFFFFFFFF:012x}" if mod is not None \
                else name  # fmt: skip
            self._task_keys[fast_key] = key
        return key

    # -- CostModel interface --------------------------------------------------------------
    def load(self, path: str) -> None:
        checkpoint = load_checkpoint(path)
        check_target(
            checkpoint.target, self.target, f"weights {path}", allow_other_cpu=self.allow_other_cpu
        )
        self.model = init_model(checkpoint.gnn_config, seed=self.seed)
        self._load_state(checkpoint)
        self.model.eval()
        self._close_scorer()  # it holds the old weights
        self.meta_params = parameters_of(self.model)
        self._adapted = dict(checkpoint.adapted)
        self.checkpoint_meta = dict(checkpoint.meta)
        self.pretrained = True

    def save(self, path: str) -> None:
        meta = dict(self.checkpoint_meta)
        meta["source"] = str(path)
        save_checkpoint(
            Checkpoint(
                gnn_config=self.model.config,
                state_dict={k: v.clone() for k, v in self.meta_params.items()},
                target=self.target,
                adapted={k: dict(v) for k, v in self._adapted.items()},
                meta=meta,
            ),
            path,
        )

    def _start_task(self, key: str, context) -> None:
        """On first meeting a task: its samples start with the record store's records of it,
        and the model adapts to them at once."""
        if not self._warm_start.first_time(key):
            return
        found = self._warm_start.samples(context, self.target, self.adapt_config.max_samples)
        if not found:
            return
        candidates, latencies = found
        samples = self._samples.setdefault(key, _TaskSamples())
        samples.graphs.extend(self.extractor.encode(context, candidates))
        samples.latencies.extend(latencies)
        self._adapt(key, samples)
        self.summary.warm_tasks += 1
        self.summary.warm_samples += len(candidates)
        logger.info("task %s: adapted to %d records of the record store before measuring",
                    key, len(candidates))  # fmt: skip

    def _adapt(self, key: str, samples: _TaskSamples) -> None:
        labels = normalized_throughput(samples.latencies)
        with _torch_threads(self.torch_threads):
            self._adapted[key] = adapt(
                self.model, self.meta_params, samples.graphs, labels, self.adapt_config
            )

    def update(self, context, candidates, results) -> None:
        if len(candidates) == 0:
            return
        key = self._task_key(context, candidates)
        self._start_task(key, context)
        samples = self._samples.setdefault(key, _TaskSamples())
        samples.graphs.extend(self.extractor.encode(context, candidates))
        for result in results:
            secs = None if result.error_msg is not None else result.run_secs
            # The minimum over repeats, as in the pretraining data (robust to interference).
            samples.latencies.append(min(float(s) for s in secs) if secs else None)
        self._adapt(key, samples)
        self.summary.updates += 1
        self.summary.samples = sum(len(s.graphs) for s in self._samples.values())
        self.summary.unencodable = self.extractor.stats.unencodable

    # -- scoring in a child process -------------------------------------------------------
    def _scorer_for(self, num_candidates: int) -> ScoringProcess | None:
        """The child process, once it is ready; the first large call starts it and is scored
        here, so that nobody waits for its start-up."""
        if not self.scoring_process or num_candidates < SCORING_PROCESS_MIN_CANDIDATES:
            return None
        if self._scorer is None:
            try:
                self._scorer = ScoringProcess(self.model.config.to_dict(), self.model.state_dict())
            except ScoringProcessError as err:
                logger.warning("%s; scoring in this process", err)
                self.scoring_process = False
                return None
            # end the child with this model (it also ends when this process does)
            weakref.finalize(self, self._scorer.close)
        try:
            return self._scorer if self._scorer.ready() else None
        except ScoringProcessError as err:
            self._give_up_scorer(err)
            return None

    def start_scoring_process(self, wait: bool = True) -> bool:
        """Start the scoring child now instead of at the first large ``predict`` call (and wait
        for it, by default); returns whether large calls will use it."""
        scorer = self._scorer_for(SCORING_PROCESS_MIN_CANDIDATES)
        if scorer is None and self._scorer is not None and wait:
            try:
                self._scorer.ready(wait=True)
            except ScoringProcessError as err:
                self._give_up_scorer(err)
        return self._scorer is not None

    def _encoded_chunks(self, context, candidates):
        """The candidates encoded one chunk at a time (see ``_chunk_bounds``)."""
        for start, stop in _chunk_bounds(len(candidates)):
            yield self.extractor.encode_batch(context, candidates[start:stop])

    def _predict_pipelined(self, scorer, context, candidates, params):
        failed, pending = [], 0
        try:
            for encoded in self._encoded_chunks(context, candidates):
                failed.append(encoded.failed)
                scorer.submit(vars(encoded), params, params)
                pending += 1
            scores = np.concatenate([scorer.receive() for _ in range(pending)])
        except ScoringProcessError:
            raise
        except BaseException:
            # batches may be left in flight: never read their scores as another call's
            self._close_scorer()
            raise
        return scores, failed

    def _close_scorer(self) -> None:
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None

    def _give_up_scorer(self, err: Exception) -> None:
        logger.warning("%s; scoring in this process from now on", err)
        self._close_scorer()
        self.scoring_process = False

    def predict(self, context, candidates) -> np.ndarray:
        if len(candidates) == 0:
            return np.zeros(0, np.float64)
        key = self._task_key(context, candidates)
        self._start_task(key, context)
        params = self._adapted.get(key)
        scores, failed = None, []
        scorer = self._scorer_for(len(candidates))
        if scorer is not None:
            try:
                scores, failed = self._predict_pipelined(scorer, context, candidates, params)
            except ScoringProcessError as err:
                self._give_up_scorer(err)
                scores, failed = None, []
        if scores is None:
            chunks = []
            with _torch_threads(self.torch_threads):
                for encoded in self._encoded_chunks(context, candidates):
                    failed.append(encoded.failed)
                    chunks.append(
                        predict_batch(self.model, params, GraphBatch.from_encoded(encoded))
                    )
            scores = np.concatenate(chunks)
        neutral = np.concatenate(failed)
        self.summary.predicted += len(candidates)
        self.summary.unencodable = self.extractor.stats.unencodable
        unscored = ~np.isfinite(scores) & ~neutral
        if unscored.any():  # e.g. features out of any trained range: never a NaN to the search
            logger.warning("%d candidates scored non-finite; scoring them as neutral",
                           int(unscored.sum()))  # fmt: skip
            neutral = neutral | unscored
        # Candidates without a usable score get the neutral score: the median of the others.
        if neutral.any() and (~neutral).any():
            scores[neutral] = np.median(scores[~neutral])
        elif unscored.any():  # no candidate has a usable score: all alike
            scores[:] = 0.0
        softplus = np.logaddexp(0.0, _SOFTPLUS_SHARPNESS * scores) / _SOFTPLUS_SHARPNESS
        return softplus.astype(np.float64)  # what MetaSchedule's result buffer holds
