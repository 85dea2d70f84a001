"""TVM's own cost models as scorers for :func:`ms_meta.eval.protocol.evaluate` (thin adapters).

The adapters live in :mod:`ms_meta.eval.per_store` (features), :mod:`ms_meta.eval.xgb_baseline`
and :mod:`ms_meta.eval.mlp_baseline`; this module gathers them.

Features
    :class:`PerStoreFeatures` replays each record's trace on its workload and runs MetaSchedule's
    ``PerStoreFeature`` on the scheduled candidate, as XGBModel and MLPModel do at tuning time.
    The rows are cached on disk as ``.npz`` (no pickle), one file per workload; records files are
    append-only, so a cache that covers a prefix of the file is re-used and only new lines are
    extracted. The rows come out aligned with ``TaskData.lines``.

Scorers (each seeded and deterministic)
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
    ``mlp-pretrained``
        MetaSchedule's ``MLPModel`` (``SegmentSumMLPTrainer``) trained on the same records
        (:func:`pretrain_mlp`); k-shot through the trainer's own ``update`` (a few epochs of
        incremental training on the support).

The adapters drive the models' training and prediction code on cached features instead of
``update(context, candidates, results)``/``predict(context, candidates)``, which would extract
the features again on every call; the private helpers below mirror those two methods line by
line and say where they differ.

Using the pretrained XGBModel in tuning
---------------------------------------
``pretrain_xgb(train_tasks, "xgb.tar")`` writes a file that ``XGBModel.load`` reads::

    model = ms.cost_model.XGBModel()      # default PerStoreFeature(), as in pretraining
    model.load("xgb.tar")
    ms.tune_tir(mod, target, work_dir, cost_model=model, ...)

``load`` restores the booster and the pretraining samples, so ``data_size`` (thousands) is past
``num_warmup_samples`` and ``predict`` uses the booster from the first search round (no random
warm-up). ``load`` does not restore ``last_train_size`` (it is 0), so the first ``update``
retrains from scratch on the pretraining samples plus the new batch; with the default
``adaptive_training=True`` later updates retrain only when the data has grown by 20 % (about a
thousand new samples), so in a short run the model stays the one fitted after the first batch.
``adaptive_training=False`` retrains on every batch (one full fit per batch).
"""

from __future__ import annotations

from ms_meta.eval.mlp_baseline import MLPPretrained, pretrain_mlp
from ms_meta.eval.per_store import (
    FEATURE_CACHE_VERSION,
    MLP_COLUMNS,
    PER_STORE_CONFIG,
    XGB_COLUMNS,
    FeatureStats,
    FeatureTask,
    PerStoreFeatures,
    TaskFeatures,
)
from ms_meta.eval.xgb_baseline import XGBFewShot, XGBPretrained, pretrain_xgb

__all__ = [
    "FEATURE_CACHE_VERSION",
    "MLP_COLUMNS",
    "PER_STORE_CONFIG",
    "XGB_COLUMNS",
    "FeatureStats",
    "FeatureTask",
    "MLPPretrained",
    "PerStoreFeatures",
    "TaskFeatures",
    "XGBFewShot",
    "XGBPretrained",
    "pretrain_mlp",
    "pretrain_xgb",
]
