"""Adapting shipped weights to a CPU that has none, from a few hundred of its records.

Ranking learned on one x86 CPU carries over to another only in part, and collecting a full
record set on a new CPU takes hours. The recipe here fine-tunes the nearest shipped weights on
whatever records the new CPU has, for a fixed number of optimizer steps whatever their number
(``benchmarks/cross_cpu`` measured it against fine-tuning a meta-trained initialization,
training from scratch and full-data training). TVM-free: the caller builds the data set.

Functions
---------
:func:`nearest_weights`
    The shipped weights to start from for a target.
:func:`sample_records`
    A seeded sample of ``k`` records spread over tasks, labels renormalized within the sample
    (what a user who measured only those records knows).
:func:`train_recipe`
    Fine-tune (or train from scratch) with an :class:`AdaptRecipe`.
:func:`evaluate_model`
    The k-shot protocol of :mod:`ms_meta.eval` on held-out tasks.
:func:`adapt_to_cpu`
    All of it: optional before/after figures on held-out tasks, then the weights to save.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.data.split import make_task_split
from ms_meta.errors import DatabaseError, MsMetaError, WeightsError
from ms_meta.eval.protocol import MIN_QUERY, EvalResult, evaluate
from ms_meta.labels import cpu_label, normalized_throughput, target_label
from ms_meta.model.gnn import GNNConfig, LoopGraphGNN
from ms_meta.model.meta import AdaptConfig, AdaptingScorer
from ms_meta.model.pretrain import PretrainConfig, pretrain
from ms_meta.model.train import init_model
from ms_meta.model.weights import (
    Checkpoint,
    check_target,
    default_weights_path,
    load_checkpoint,
    other_cpu_weights_path,
)

__all__ = [
    "DEFAULT_RECIPE",
    "AdaptRecipe",
    "AdaptResult",
    "adapt_to_cpu",
    "evaluate_model",
    "export_store_records",
    "nearest_weights",
    "sample_records",
    "train_recipe",
]

logger = logging.getLogger(__name__)

#: ``progress(done, total, note)``, as :func:`ms_meta.model.pretrain.pretrain` reports.
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class AdaptRecipe:
    """How :func:`train_recipe` trains: plain transfer training (pairwise and regression
    losses, the objective the shipped weights were trained with) for a fixed number of
    optimizer steps.

    A fixed step count, not a fixed epoch count, keeps the amount of change to the starting
    weights the same for 64 records (many passes) and 1,024 (a few).

    Parameters
    ----------
    steps : int
        Adam steps (minibatches) in all; the epochs follow from the number of records.
    lr : float
        Adam learning rate.
    batch_size : int
        Records per minibatch (whole tasks where they fit).
    listwise_weight, regression_weight : float
        Weights of ListNet's top-one loss and the regression loss beside the pairwise loss.
        A listwise loss of weight 1 cost 0.013 pairwise accuracy on few records
        (``benchmarks/cross_cpu``), so the default leaves it out.
    inner_steps, inner_lr : int, float
        The per-task adaptation that ``MetaCostModel.update()`` runs at tuning time with the
        written weights (recorded in them, as ``ms-meta pretrain`` does).
    """

    steps: int = 150
    lr: float = 1e-3
    batch_size: int = 64
    listwise_weight: float = 0.0
    regression_weight: float = 0.5
    inner_steps: int = 20
    inner_lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.inner_steps < 1:
            raise ValueError(f"invalid AdaptRecipe: {self}")

    def epochs_for(self, n_records: int) -> int:
        """Epochs that make about :attr:`steps` minibatches of ``n_records`` records."""
        per_epoch = max(1, math.ceil(n_records / self.batch_size))
        return max(1, round(self.steps / per_epoch))

    def pretrain_config(self, n_records: int, gnn: GNNConfig, seed: int = 0) -> PretrainConfig:
        """The :class:`PretrainConfig` of this recipe for ``n_records`` training records."""
        return PretrainConfig(
            method="transfer",
            epochs=self.epochs_for(n_records),
            patience=0,
            inner_steps=self.inner_steps,
            inner_lr=self.inner_lr,
            outer_lr=self.lr,
            batch_size=self.batch_size,
            regression_weight=self.regression_weight,
            listwise_weight=self.listwise_weight,
            seed=seed,
            gnn=gnn,
        )

    @property
    def adapt_config(self) -> AdaptConfig:
        """The per-task inner loop the written weights are used with."""
        return AdaptConfig(
            steps=self.inner_steps, lr=self.inner_lr, regression_weight=self.regression_weight
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The recipe ``ms-meta adapt`` applies (the winner of ``benchmarks/cross_cpu``).
DEFAULT_RECIPE = AdaptRecipe()


@dataclass
class AdaptResult:
    """What :func:`adapt_to_cpu` made: the checkpoint to save and, when asked, the figures.

    Attributes
    ----------
    checkpoint : Checkpoint
        The adapted weights, trained on every usable task, with metadata (target, recipe,
        starting weights, data).
    before, after : EvalResult or None
        The starting weights and the same recipe trained without the held-out tasks, scored on
        them (``report_fraction > 0`` only).
    held_out : list of str
        The tasks held out for ``before`` and ``after``.
    """

    checkpoint: Checkpoint
    before: EvalResult | None = None
    after: EvalResult | None = None
    held_out: list[str] = field(default_factory=list)


def nearest_weights(target: dict[str, Any]) -> tuple[Path, bool]:
    """The shipped weights to start from for ``target``, and whether they were trained for
    that very CPU (else they are another CPU's: the same ``mcpu`` with another vector width
    first, then the first of the target kind).

    Raises
    ------
    WeightsError
        When this build ships no weights of the target's kind.
    """
    own = default_weights_path(target)
    if own is not None:
        return own, True
    other = other_cpu_weights_path(target)
    if other is None:
        raise WeightsError(
            f"this build ships no weights for target kind {target.get('kind')!r} to start "
            "from; pass --init weights of that kind"
        )
    return other, False


def export_store_records(
    store_path: str | os.PathLike | None, target: dict[str, Any], out_dir: str | os.PathLike
) -> list[Path]:
    """Write the record store's records of ``target`` as MetaSchedule JSON databases under
    ``out_dir`` (:func:`ms_meta.store.export_json_databases`); ``None``: the default store.

    Raises
    ------
    DatabaseError
        When the store file does not exist or holds no record of the target.
    """
    from ms_meta.store import SqlStore, default_store_path, export_json_databases, target_key

    path = Path(store_path) if store_path is not None else default_store_path()
    if not path.is_file():  # SqlStore would create an empty store there
        raise DatabaseError(f"record store {path} does not exist")
    with SqlStore(path) as store:
        written = export_json_databases(store, out_dir, key=target_key(target))
    if not written:
        raise DatabaseError(f"record store {path} holds no records of {target_label(target)}")
    return written


def sample_records(tasks: Sequence[Any], k: int, *, per_task: int = 8, seed: int = 0) -> list:
    """A seeded sample of ``k`` records: ``per_task`` records from each of ``k / per_task``
    tasks drawn at random (fewer where the tasks run out).

    Each task (by split name) contributes its largest measurement group only, so that its
    labels come from one machine and time. Labels are renormalized within the sample: a user
    who measured only these records knows nothing faster.

    Parameters
    ----------
    tasks : sequence of TaskData
        The pool, e.g. a data set's training tasks.
    k : int
        Records in all.
    per_task : int
        Records taken from each task (at least 2: one record ranks nothing).
    seed : int
        One seed, one sample; a larger ``k`` with the same seed starts with the same tasks.

    Returns
    -------
    list of TaskData
        Copies holding the sampled records, in record-file order.
    """
    if k < 2 or per_task < 2:
        raise ValueError(f"k and per_task must be at least 2, got {k} and {per_task}")
    largest: dict[str, Any] = {}
    for task in tasks:
        name = task.split_name
        if len(task) >= 2 and (name not in largest or len(task) > len(largest[name])):
            largest[name] = task
    pool = [largest[name] for name in sorted(largest)]
    rng = np.random.default_rng(seed)
    out, left = [], k
    for i in rng.permutation(len(pool)).tolist():
        if left < 2:
            break
        task = pool[i]
        take = min(per_task, left, len(task))
        index = np.sort(rng.choice(len(task), size=take, replace=False))
        latencies = np.asarray(task.latencies)[index]
        out.append(
            dataclasses.replace(
                task,
                graphs=[task.graphs[j] for j in index.tolist()],
                latencies=latencies,
                labels=normalized_throughput(latencies),
                lines=np.asarray(task.lines)[index],
            )
        )
        left -= take
    return out


def _trainable(tasks: Sequence[Any]) -> list:
    return [t for t in tasks if len(t) >= 2]


def train_recipe(
    tasks: Sequence[Any],
    recipe: AdaptRecipe = DEFAULT_RECIPE,
    *,
    init: Checkpoint | None = None,
    gnn: GNNConfig | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> tuple[LoopGraphGNN, PretrainConfig]:
    """Train with ``recipe`` on ``tasks``: fine-tune ``init``, or from scratch without it.

    Returns
    -------
    (LoopGraphGNN, PretrainConfig)
        The trained model (eval mode) and the configuration it was trained with.

    Raises
    ------
    MsMetaError
        When no task has two records or more.
    """
    usable = _trainable(tasks)
    if not usable:
        raise MsMetaError("no task has two records or more: nothing to rank, nothing to learn")
    gnn = init.gnn_config if init is not None else (gnn or GNNConfig())
    config = recipe.pretrain_config(sum(len(t) for t in usable), gnn, seed)
    result = pretrain(
        usable,
        [],
        config,
        init_state=None if init is None else init.state_dict,
        progress=progress,
    )
    return result.model, config


def evaluate_model(
    model: LoopGraphGNN,
    tasks: Sequence[Any],
    adapt_config: AdaptConfig,
    *,
    name: str = "gnn",
    ks: Sequence[int] = (0, 32),
    seed: int = 0,
) -> EvalResult:
    """Score ``model`` on held-out ``tasks`` with the k-shot protocol of :mod:`ms_meta.eval`
    (pairwise accuracy, top-1, top-5, Kendall tau), adapting per task with ``adapt_config``
    as ``MetaCostModel`` does."""
    return evaluate(AdaptingScorer(name, model, adapt_config), tasks, ks=ks, seed=seed)


def _model_of(checkpoint: Checkpoint) -> LoopGraphGNN:
    model = init_model(checkpoint.gnn_config)
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError as err:
        raise WeightsError(f"the starting weights do not fit the model: {err}") from None
    model.eval()
    return model


def _names(tasks: Sequence[Any]) -> list[str]:
    return sorted({t.split_name for t in tasks})


def adapt_to_cpu(
    tasks: Sequence[Any],
    target: dict[str, Any],
    *,
    init_path: str | os.PathLike,
    recipe: AdaptRecipe = DEFAULT_RECIPE,
    seed: int = 0,
    report_fraction: float = 0.0,
    ks: Sequence[int] = (0, 8),
    sources: Sequence[str] = (),
    progress: ProgressFn | None = None,
) -> AdaptResult:
    """Adapt the weights at ``init_path`` to ``target`` from its records ``tasks``.

    With ``report_fraction > 0`` a seeded share of the tasks (stratified by operator kind,
    :func:`ms_meta.data.split.make_task_split`) is held out first: the starting weights and the
    recipe trained on the other tasks are scored on it (``before`` / ``after``). The weights
    returned are always trained on every task.

    Parameters
    ----------
    tasks : sequence of TaskData
        The target CPU's records (a data set's tasks).
    target : dict
        The CPU the records were measured on; written into the weights.
    init_path : path
        Weights to start from, of the same target kind (e.g. :func:`nearest_weights`).
    ks : sequence of int
        Shots of the before/after figures.
    sources : sequence of str
        Where the records came from, recorded in the weights' metadata.

    Raises
    ------
    MsMetaError
        No usable task, weights of another target kind, or too few tasks for a report.
    """
    init = load_checkpoint(init_path)
    check_target(init.target, target, f"weights {init_path}", allow_other_cpu=True)
    usable = _trainable(tasks)
    if not usable:
        raise MsMetaError(
            "no task has two records or more: nothing to rank, nothing to learn "
            f"({len(tasks)} tasks, {sum(len(t) for t in tasks)} records)"
        )
    before = after = None
    held_out: list[str] = []
    if report_fraction > 0:
        before, after, held_out = _report(usable, init, recipe, seed, report_fraction, ks)
    model, config = train_recipe(usable, recipe, init=init, seed=seed, progress=progress)
    meta = {
        "method": "adapt",
        "recipe": recipe.to_dict(),
        "init": str(init_path),
        "init_target": init.target,
        "init_cpu": cpu_label(init.target) if init.target else None,
        "adapt": {"steps": recipe.inner_steps, "lr": recipe.inner_lr},
        "pretrain_config": config.to_dict(),
        "data": {
            "tasks": len(_names(usable)),
            "records": sum(len(t) for t in usable),
            "train_tasks": _names(usable),
            "sources": list(sources),
        },
    }
    if before is not None and after is not None:
        meta["report"] = {
            "held_out_tasks": held_out,
            "before": before.to_dict()["summary"],
            "after": after.to_dict()["summary"],
        }
    checkpoint = Checkpoint(
        gnn_config=init.gnn_config,
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        target=target,
        meta=meta,
    )
    return AdaptResult(checkpoint, before, after, held_out)


def _report(
    tasks: list, init: Checkpoint, recipe: AdaptRecipe, seed: int, fraction: float, ks
) -> tuple[EvalResult, EvalResult, list[str]]:
    split = make_task_split({t.split_name: t.op for t in tasks}, fraction, seed=seed)
    held_names = set(split["held_out"])
    held = [t for t in tasks if t.split_name in held_names]
    train = [t for t in tasks if t.split_name not in held_names]
    need = max(ks) + MIN_QUERY
    if not train or not any(len(t) >= need for t in held):
        raise MsMetaError(
            f"too few tasks to report held-out figures: {len(_names(tasks))} tasks, "
            f"{len(held_names)} held out, none with {need} records or more "
            f"(max(ks) + {MIN_QUERY}); collect more tasks, lower --ks, or drop --report"
        )
    model, _ = train_recipe(train, recipe, init=init, seed=seed)
    before = evaluate_model(_model_of(init), held, recipe.adapt_config, name="before", ks=ks)
    after = evaluate_model(model, held, recipe.adapt_config, name="after", ks=ks)
    return before, after, sorted(held_names)
