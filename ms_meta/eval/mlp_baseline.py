"""TVM's ``MLPModel`` as a scorer for :func:`ms_meta.eval.protocol.evaluate` (a thin adapter).

``mlp-pretrained``
    MetaSchedule's ``MLPModel`` (``SegmentSumMLPTrainer``) trained on every record of the
    training tasks (:func:`pretrain_mlp`); k-shot through the trainer's own ``update`` (a few
    epochs of incremental training on the support).

The adapter drives the trainer on cached features
(:class:`~ms_meta.eval.per_store.PerStoreFeatures`) instead of ``update``/``predict``, which
would extract the features again on every call.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.errors import MsMetaError, first_line
from ms_meta.eval.per_store import (
    MLP_COLUMNS,
    FeatureTask,
    PerStoreFeatures,
    _costs,
    _score_seed,
    _seeded,
    _training_groups,
)

__all__ = ["MLPPretrained", "pretrain_mlp"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# MLPModel
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _stock_mlp_training() -> Iterator[None]:
    """Let TVM 0.27's ``SegmentSumMLPTrainer.train_full`` run on current torch.

    ``train_full`` builds ``torch.optim.lr_scheduler.StepLR(..., verbose=True)``; torch removed
    that argument (deprecated in 2.2), so on torch 2.13 the stock full training raises
    ``TypeError: StepLR.__init__() got an unexpected keyword argument 'verbose'``, which breaks
    ``MLPModel.update`` on its first call. This context swaps in a StepLR that drops the
    argument. It also points :mod:`tempfile` at a private directory, because ``train_full``
    keeps its best epoch in a ``NamedTemporaryFile().name`` that it never deletes.
    """
    import torch

    original = torch.optim.lr_scheduler.StepLR

    class StepLR(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, verbose: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    old_tempdir = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="ms-meta-mlp-") as scratch:
        torch.optim.lr_scheduler.StepLR = StepLR
        tempfile.tempdir = scratch
        try:
            yield
        finally:
            torch.optim.lr_scheduler.StepLR = original
            tempfile.tempdir = old_tempdir


def _mlp_trainer(state, config=None):
    from tvm.s_tir.meta_schedule.cost_model.mlp_model import SegmentSumMLPTrainer

    return SegmentSumMLPTrainer(train_config=config, state=state)


def _quiet_mlp_logger() -> contextlib.AbstractContextManager[None]:
    """The stock trainer logs every epoch and batch at INFO on the ``mlp_model`` logger."""
    return _logger_level("mlp_model", logging.WARNING)


@contextlib.contextmanager
def _logger_level(name: str, level: int) -> Iterator[None]:
    target = logging.getLogger(name)
    old = target.level
    target.setLevel(max(level, old))
    try:
        yield
    finally:
        target.setLevel(old)


def pretrain_mlp(
    train_tasks: Sequence[FeatureTask],
    *,
    features: PerStoreFeatures | None = None,
    seed: int = 0,
    epochs: int = 50,
    validation_split: float = 0.2,
    path: str | os.PathLike[str] | None = None,
) -> MLPPretrained:
    """Train MetaSchedule's MLPModel on every record of the training tasks.

    The stock ``SegmentSumMLPTrainer.train_full``: lambda-rank loss on per-task normalized
    throughput, 20 % of the tasks held out to pick the best epoch, Adam with a step schedule.

    Parameters
    ----------
    train_tasks : sequence of TaskData
        The training tasks.
    features : PerStoreFeatures, optional
        The feature source (172 columns with the workload columns, as MLPModel extracts).
    seed : int
        Seeds torch and :mod:`random`, from which the trainer draws.
    epochs : int
        ``TrainerConfig.num_epoch_full`` (the stock 50 by default; at least 10, because the
        trainer's step schedule divides it by 10).
    validation_split : float
        ``TrainerConfig.test_split``: the share of tasks kept out of training to pick the best
        epoch (the stock 0.2 needs at least 5 tasks; at least one task must land on each side).
    path : path, optional
        Also save the model with ``State.save`` (loadable by ``MLPModel.load``).

    Returns
    -------
    MLPPretrained
        The trained scorer.
    """
    from tvm.s_tir.meta_schedule.cost_model.mlp_model import State, TrainerConfig

    if epochs < 10:
        raise MsMetaError(f"epochs must be at least 10 (the trainer's step schedule), got {epochs}")
    features = features or PerStoreFeatures()
    state = State()
    groups = _training_groups(train_tasks, features, MLP_COLUMNS)
    # train_full samples floor(share * groups) validation tasks and concatenates their labels:
    # none on either side raises a bare "need at least one array to concatenate".
    held = math.floor(len(groups) * validation_split)
    if not 1 <= held < len(groups):
        raise MsMetaError(
            f"MLPModel's trainer keeps floor({validation_split} x {len(groups)} tasks) = {held} "
            "tasks out of training to pick its best epoch; it needs at least one on each side: "
            "give more training tasks or another validation_split"
        )
    for group_hash, feats, costs in groups:
        state.add_to_group(feats, costs, group_hash)
    config = TrainerConfig(num_epoch_full=epochs, test_split=validation_split)
    trainer = _mlp_trainer(state, config)
    start = time.perf_counter()
    with _stock_mlp_training(), _seeded(seed), _quiet_mlp_logger():
        trainer.train_full()
    logger.info(
        "pretrained MLPModel on %d records of %d tasks in %.1f s",
        state.data_size,
        len(state.data),
        time.perf_counter() - start,
    )
    scorer = MLPPretrained(state, features, seed=seed)
    if path is not None:
        scorer.save(path)
    return scorer


class MLPPretrained:
    """MetaSchedule's MLPModel pretrained on the training tasks (:func:`pretrain_mlp`).

    Zero-shot, the pretrained network scores the query. With a support set, a copy of it goes
    through the trainer's own ``update``: the support is added to the data, and since it is far
    below the trainer's 20 % threshold, ``train_incremental`` runs ``num_epoch_incremental`` (5)
    epochs of lambda-rank steps on the support only.

    Parameters
    ----------
    state : mlp_model.State
        A trained state (its model is never changed).
    features : PerStoreFeatures
        The feature source.
    seed : int
        Seeds the incremental training.
    """

    name = "mlp-pretrained"

    def __init__(self, state, features: PerStoreFeatures, *, seed: int = 0) -> None:
        self.state = state
        self.features = features
        self.seed = int(seed)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save with ``State.save`` (a tar of the network and the samples)."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.state.save(str(path))
        except OSError as err:
            raise MsMetaError(f"cannot write the MLPModel to {path}: {err}") from None
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], features: PerStoreFeatures, *, seed: int = 0
    ) -> MLPPretrained:
        """Load a state written by :meth:`save`.

        ``State.load`` counts every loaded sample as untrained, so the trainer's next
        ``update`` would retrain fully; the state's model *is* trained on them, so the count is
        reset to 0 here.
        """
        from tvm.s_tir.meta_schedule.cost_model.mlp_model import State

        path = Path(path)
        if not path.is_file():
            raise MsMetaError(f"MLPModel file not found: {path}")
        state = State()
        try:
            state.load(str(path))
        except Exception as err:  # tar, numpy or torch errors
            raise MsMetaError(
                f"{path} is not an MLPModel file: {type(err).__name__}: {first_line(err)}"
            ) from None
        state.untrained_size = 0
        return cls(state, features, seed=seed)

    def _continued(self, group_hash: str, feats: list[np.ndarray], costs: np.ndarray):
        from tvm.s_tir.meta_schedule.cost_model.mlp_model import State

        base = self.state
        state = State(extractor=base.extractor)
        state.model = copy.deepcopy(base.model)
        state.data = OrderedDict(base.data)
        if group_hash in state.data:  # never append to the shared group
            group = state.data[group_hash]
            state.data[group_hash] = type(group)(
                group_hash, list(group.features), np.asarray(group.costs).copy()
            )
        state.data_size = base.data_size
        state.untrained_size = base.untrained_size
        trainer = _mlp_trainer(state)
        with _stock_mlp_training():
            trainer.update(feats, costs, group_hash)
        return trainer

    def score(self, task: FeatureTask, support: np.ndarray, query: np.ndarray) -> np.ndarray:
        feats = self.features(task)
        call_seed = _score_seed(self.seed, task.name, len(support))
        with _seeded(call_seed), _quiet_mlp_logger():
            support = support[feats.extracted[support]]
            if len(support):
                trainer = self._continued(
                    feats.group_hash, feats.select(support, MLP_COLUMNS), _costs(task, support)
                )
            else:
                trainer = _mlp_trainer(self.state)
            extracted = feats.extracted[query]
            out = np.zeros(len(query))
            if extracted.any():
                pred = trainer.predict_incremental(feats.select(query[extracted], MLP_COLUMNS))
                pred = np.atleast_1d(np.asarray(pred, np.float64))
                out[extracted] = pred
                out[~extracted] = pred.min() - 1.0
        return out
