"""TVM's ``XGBModel`` as a scorer for :func:`ms_meta.eval.protocol.evaluate` (a thin adapter).

``xgb-stock``
    MetaSchedule's ``XGBModel`` fitted only on the task's support records, as in tuning.
    Below ``num_warmup_samples`` (100) it returns uniform random scores, so with k <= 32
    it is random search; it is reported because that is what stock tuning does.
``xgb-kshot``
    The same with ``num_warmup_samples=0``: the booster fitted on the k support records.
``xgb-pretrained``
    TenSet's approach: an XGBModel trained on every record of the training tasks
    (:func:`pretrain_xgb`), zero-shot on a held-out task, and k-shot by retraining on the
    pretraining data plus the support records, which is what ``XGBModel.update`` does on
    the first measured batch after ``XGBModel.load``.

The adapter drives the model's training and prediction code on cached features
(:class:`~ms_meta.eval.per_store.PerStoreFeatures`) instead of ``update``/``predict``, which
would extract the features again on every call; the private helpers mirror those two methods
line by line and say where they differ. :mod:`ms_meta.eval.baselines` says how to use the
pretrained XGBModel in tuning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ms_meta.errors import MsMetaError, first_line
from ms_meta.eval.per_store import (
    XGB_COLUMNS,
    FeatureTask,
    PerStoreFeatures,
    _costs,
    _score_seed,
    _training_groups,
    _tvm_version,
)

__all__ = ["XGBFewShot", "XGBPretrained", "pretrain_xgb"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# XGBModel
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_xgboost_formats() -> Iterator[None]:
    """XGBModel saves its booster as ``model.bin``; xgboost warns on save and load that it
    guesses the format (UBJSON) from that name. The guess is right, so the warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(UBJSON|Unknown file format).*")
        yield


def _xgb_model(num_warmup_samples: int, seed: int):
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.cost_model.xgb_model import XGBConfig

    return ms.cost_model.XGBModel(
        config=XGBConfig(seed=seed), num_warmup_samples=num_warmup_samples
    )


def _xgb_add(model, group_hash: str, features: list[np.ndarray], costs: np.ndarray) -> None:
    """``XGBModel.update`` step 4 (filter records without rows, add to the task's group); the
    group of ``group_hash`` is copied first so that a shared model is never changed."""
    from tvm.s_tir.meta_schedule.cost_model.xgb_model import FeatureGroup

    keep = [i for i, f in enumerate(features) if len(f) != 0]
    if not keep:
        return
    features = [features[i] for i in keep]
    costs = np.asarray(costs, np.float32)[keep]
    group = model.data.get(group_hash)
    if group is None:
        group = FeatureGroup(group_hash=group_hash, features=features, costs=costs)
    else:
        group = FeatureGroup(group_hash, list(group.features), np.asarray(group.costs).copy())
        group.append(features, costs)
    model.data[group_hash] = group
    model.data_size += len(features)


def _xgb_retrain(model) -> bool:
    """``XGBModel.update`` step 5: the adaptive-training check, then a fit from scratch on all
    samples with per-group labels ``min_cost / cost``. Returns whether it trained."""
    if model.adaptive_training and model.data_size - model.last_train_size < (
        model.last_train_size / 5
    ):
        return False
    model.last_train_size = model.data_size
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = [f for g in model.data.values() for f in g.features]
        ys = np.concatenate(
            [
                np.divide(g.min_cost, g.costs, out=np.zeros_like(g.costs), where=g.costs != 0)
                for g in model.data.values()
            ]
        )
    model._train(xs=xs, ys=ys)  # the stock fit (PackSum, custom objective, early stopping)
    return True


def _xgb_predict(model, features: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``XGBModel.predict``: the booster's pack-sum scores once ``data_size`` reaches
    ``num_warmup_samples``, uniform random scores before (from ``rng``, not the global numpy
    generator the stock method uses, so that scores are reproducible)."""
    if model.data_size >= model.num_warmup_samples and model.booster is not None:
        # A record without rows (extraction failed) ranks below every other one.
        has_rows = np.asarray([len(f) > 0 for f in features], bool)
        out = np.zeros(len(features))
        if has_rows.any():
            pred = model._predict(xs=[f for f in features if len(f)])
            out[has_rows] = pred
            out[~has_rows] = pred.min() - 1.0
        return out
    return rng.uniform(0.0, 1.0, size=len(features))


class XGBFewShot:
    """MetaSchedule's XGBModel fitted only on the task's support records.

    Parameters
    ----------
    features : PerStoreFeatures
        The feature source.
    num_warmup_samples : int
        XGBModel's warm-up: below it the model scores at random. 100 is the stock default
        (``xgb-stock``); 0 fits the booster on any support (``xgb-kshot``).
    seed : int
        Seeds the booster (``XGBConfig.seed``) and the warm-up's random scores.
    name : str, optional
        Defaults to ``xgb-stock`` (warm-up 100), ``xgb-kshot`` (0) or ``xgb-warmup<n>``.
    """

    def __init__(
        self,
        features: PerStoreFeatures,
        *,
        num_warmup_samples: int = 100,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        self.features = features
        self.num_warmup_samples = int(num_warmup_samples)
        self.seed = int(seed)
        default = {100: "xgb-stock", 0: "xgb-kshot"}.get(
            self.num_warmup_samples, f"xgb-warmup{self.num_warmup_samples}"
        )
        self.name = name or default

    @classmethod
    def stock(cls, features: PerStoreFeatures, seed: int = 0) -> XGBFewShot:
        """``xgb-stock``: the stock warm-up of 100 samples (random scores for k < 100)."""
        return cls(features, num_warmup_samples=100, seed=seed)

    @classmethod
    def kshot(cls, features: PerStoreFeatures, seed: int = 0) -> XGBFewShot:
        """``xgb-kshot``: no warm-up, the booster fitted on the k support records."""
        return cls(features, num_warmup_samples=0, seed=seed)

    def score(self, task: FeatureTask, support: np.ndarray, query: np.ndarray) -> np.ndarray:
        feats = self.features(task)
        call_seed = _score_seed(self.seed, task.name, len(support))
        model = _xgb_model(self.num_warmup_samples, call_seed)
        if len(support):
            _xgb_add(
                model, feats.group_hash, feats.select(support, XGB_COLUMNS), _costs(task, support)
            )
            # Below the warm-up the stock model fits a booster it never predicts with: skip the
            # fit, which changes no score and saves seconds per call.
            if model.data_size >= self.num_warmup_samples:
                _xgb_retrain(model)
        rng = np.random.default_rng(call_seed)
        return _xgb_predict(model, feats.select(query, XGB_COLUMNS), rng)


def pretrain_xgb(
    train_tasks: Sequence[FeatureTask],
    path: str | os.PathLike[str],
    *,
    features: PerStoreFeatures | None = None,
    seed: int = 0,
) -> Path:
    """Fit an XGBModel on every record of the training tasks and save it for ``XGBModel.load``.

    Labels are per-task normalized throughput ``min_cost / cost``, as ``XGBModel.update``
    computes them; the stock fit (pack-sum squared error weighted by the label, early stopping
    on training RMSE) is used unchanged. A JSON manifest (tasks, records, versions, seconds) is
    written next to the model as ``<path>.json``.

    Parameters
    ----------
    train_tasks : sequence of TaskData
        The training tasks.
    path : path
        The model file to write (a tar of the booster and the samples, TVM's format).
    features : PerStoreFeatures, optional
        The feature source; a default :class:`PerStoreFeatures` if omitted.
    seed : int
        ``XGBConfig.seed``.

    Returns
    -------
    Path
        ``path``. See the module docstring for using it as ``cost_model=`` in ``ms.tune_tir``.

    Raises
    ------
    MsMetaError
        When there are no training tasks or records, or the file cannot be written.
    """
    import xgboost

    features = features or PerStoreFeatures()
    path = Path(path)
    groups = _training_groups(train_tasks, features, XGB_COLUMNS)
    model = _xgb_model(100, seed)
    for group_hash, feats, costs in groups:
        _xgb_add(model, group_hash, feats, costs)
    start = time.perf_counter()
    _xgb_retrain(model)
    seconds = time.perf_counter() - start
    if model.data_size < model.num_warmup_samples:
        logger.warning(
            "the pretrained XGBModel holds %d samples, fewer than XGBModel's default warm-up of "
            "%d: loaded into a default XGBModel it predicts random scores until tuning adds more",
            model.data_size,
            model.num_warmup_samples,
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _quiet_xgboost_formats():
            model.save(str(path))
        manifest = {
            "model": "XGBModel (MetaSchedule), pretrained by ms_meta.eval.baselines.pretrain_xgb",
            "tasks": [t.name for t in train_tasks],
            "records": int(model.data_size),
            "groups": len(model.data),
            "seed": seed,
            "boosting_rounds": int(model.booster.num_boosted_rounds()),
            "train_seconds": round(seconds, 2),
            "tvm": _tvm_version(),
            "xgboost": xgboost.__version__,
            "extractor": "PerStoreFeature() (164 columns)",
        }
        path.with_name(path.name + ".json").write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError as err:
        raise MsMetaError(f"cannot write the pretrained XGBModel to {path}: {err}") from None
    logger.info(
        "pretrained XGBModel on %d records of %d tasks in %.1f s -> %s",
        model.data_size,
        len(model.data),
        seconds,
        path,
    )
    return path


class XGBPretrained:
    """TenSet's approach: an XGBModel pretrained on the training tasks (:func:`pretrain_xgb`).

    Zero-shot, the pretrained booster scores the query. With a support set the model is
    retrained from scratch on the pretraining samples plus the support (the task's labels
    normalized by its best support record), which is what ``XGBModel.update`` does on the first
    batch after ``XGBModel.load``.

    Parameters
    ----------
    model : XGBModel
        A trained model (e.g. from :meth:`load`); it is never changed.
    features : PerStoreFeatures
        The feature source.
    seed : int
        Seeds the retraining booster.
    """

    name = "xgb-pretrained"

    def __init__(self, model, features: PerStoreFeatures, *, seed: int = 0) -> None:
        if model.booster is None:
            raise MsMetaError("the XGBModel has no booster: pretrain it with pretrain_xgb first")
        self.model = model
        self.features = features
        self.seed = int(seed)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], features: PerStoreFeatures, *, seed: int = 0
    ) -> XGBPretrained:
        """Load a model written by :func:`pretrain_xgb` with ``XGBModel.load``.

        Raises
        ------
        MsMetaError
            When the file is missing or is not an XGBModel with a booster.
        """
        from tvm.s_tir import meta_schedule as ms

        path = Path(path)
        if not path.is_file():
            raise MsMetaError(f"pretrained XGBModel not found: {path}")
        model = ms.cost_model.XGBModel()
        try:
            with _quiet_xgboost_formats():
                model.load(str(path))
        except Exception as err:  # TVM's loader raises tar/numpy/xgboost errors, or NameError
            raise MsMetaError(
                f"{path} is not an XGBModel file: {type(err).__name__}: {first_line(err)}"
            ) from None
        return cls(model, features, seed=seed)

    def _continued(self, group_hash: str, feats: list[np.ndarray], costs: np.ndarray, seed: int):
        base = self.model
        model = _xgb_model(base.num_warmup_samples, seed)
        model.config = base.config._replace(seed=seed)
        model.data = OrderedDict(base.data)  # groups are copied by _xgb_add before changing
        model.data_size = base.data_size
        model.booster = base.booster
        model.last_train_size = 0  # as after XGBModel.load, which does not restore it
        _xgb_add(model, group_hash, feats, costs)
        _xgb_retrain(model)
        return model

    def score(self, task: FeatureTask, support: np.ndarray, query: np.ndarray) -> np.ndarray:
        feats = self.features(task)
        call_seed = _score_seed(self.seed, task.name, len(support))
        model = self.model
        if len(support):
            model = self._continued(
                feats.group_hash,
                feats.select(support, XGB_COLUMNS),
                _costs(task, support),
                call_seed,
            )
        return _xgb_predict(
            model, feats.select(query, XGB_COLUMNS), np.random.default_rng(call_seed)
        )
