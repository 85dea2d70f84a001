"""Pretraining the GNN across tuning tasks: first-order meta-learning, or plain transfer.

TVM-free. A *task* is anything with ``graphs`` (a list of :class:`LoopGraph`), ``labels``
(per-task normalized throughput in [0, 1]) and ``name`` (:class:`ms_meta.data.dataset.TaskData`
is one).

Methods (MetaTune's comparison):

``fomaml``
    First-order MAML. Each episode draws a support set (``support_min`` to ``support_max``
    records, like the few measurements of one search round) and a disjoint query set from one
    task, adapts the meta-parameters on the support with exactly the inner loop
    :class:`~ms_meta.MetaCostModel` runs at tuning time (:func:`ms_meta.model.meta.adapt`), and
    takes the query loss's gradient at the adapted parameters as the meta-gradient.
``reptile``
    Reptile: the same inner loop on the support; the meta-gradient is ``theta - phi``.
``transfer``
    Plain pretraining on all records of all tasks (minibatches of whole tasks), MetaTune's
    baseline; adaptation at tuning time is the same.

An epoch visits every training task ``episodes_per_task`` times (meta methods) or every record
once (transfer). After each epoch the model is scored on the validation tasks (zero-shot and
``val_shots``-shot pairwise accuracy or top-1 score, on all records or only on those a search
met late, see :func:`validate`) and the training state is written
atomically, so an interrupted run resumes where it stopped and a fixed seed reproduces it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from ms_meta.data.split import records_after_line
from ms_meta.errors import MsMetaError, WeightsError
from ms_meta.feature.schema import FEATURE_VERSION
from ms_meta.model.batch import GraphBatch
from ms_meta.model.gnn import GNNConfig, LoopGraphGNN
from ms_meta.model.losses import pairwise_rank_loss, regression_loss
from ms_meta.model.meta import AdaptConfig, Params, adapt, parameters_of
from ms_meta.model.train import TrainConfig, batch_loss, group_minibatches, init_model
from ms_meta.model.validation import VAL_METRICS, Task, validate, validation_records
from ms_meta.model.weights import save_atomically

__all__ = [
    "EPISODE_ORDERS",
    "METHODS",
    "VAL_METRICS",
    "EpochReport",
    "PretrainConfig",
    "PretrainResult",
    "Task",
    "pretrain",
    "validate",
    "validation_records",
]

logger = logging.getLogger(__name__)

METHODS = ("fomaml", "reptile", "transfer")
STATE_FORMAT = "ms-meta-pretrain-state"


#: How meta-learning episodes split a task into support and query (see PretrainConfig).
EPISODE_ORDERS = ("random", "search")


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of :func:`pretrain`; all of them are recorded in the weights.

    Parameters
    ----------
    method : str
        ``"fomaml"``, ``"reptile"`` or ``"transfer"``.
    epochs : int
        Most epochs; early stopping may end sooner.
    patience : int
        Stop after this many epochs without a better validation score (0: never stop early).
    meta_batch_tasks : int
        Episodes per meta-update.
    episodes_per_task : int
        Episodes of each training task per epoch.
    support_min, support_max : int
        Size range of an episode's support set (drawn uniformly).
    query_size : int
        Most records of an episode's query set.
    episode_order : str
        Meta methods: how an episode splits a task. ``"random"``: the support is a random
        draw from all of its records and the query a disjoint one. ``"search"``: a window of
        the record file in its order, the support a run of consecutive records and the query
        the records measured right after them, the way ``MetaCostModel.update`` adapts on
        what a search measured so far and ``predict`` then ranks what it proposes next.
    inner_steps, inner_lr : int, float
        The inner loop, the same as :class:`~ms_meta.model.meta.AdaptConfig` at tuning time.
    outer_lr : float
        Adam learning rate of the meta-parameters (and of transfer training).
    batch_size : int
        Transfer minibatch size.
    regression_weight : float
        Weight of the regression loss next to the pairwise ranking loss.
    listwise_weight : float
        Transfer only: weight of ListNet's top-one loss (it concentrates on each task's fastest
        candidates, which is what picking the best schedule needs).
    val_shots : int
        Support size of the validation's few-shot score.
    val_after_line : int
        0: validate on a seeded random support and query drawn from all of a validation task's
        records. Otherwise only the records after this line of each record file count, in
        record-file order: the support is the first ``val_shots`` of them and the query the
        rest, the way a search meets them (e.g. 64: the guided records that follow a 64-trial
        stock search). Ranking random samples and ranking what a search proposes are
        different jobs; only the second pays off in tuning.
    val_metric : str
        ``"pairwise"`` (pairwise ranking accuracy) or ``"top1"`` (TenSet's top-1 score: the
        best query throughput over that of the model's pick).
    seed : int
        One seed, one run: initialization, episodes and minibatches derive from it.
    gnn : GNNConfig
        The model.
    """

    method: str = "fomaml"
    epochs: int = 30
    patience: int = 6
    meta_batch_tasks: int = 4
    episodes_per_task: int = 2
    support_min: int = 8
    support_max: int = 64
    query_size: int = 96
    episode_order: str = "random"
    inner_steps: int = 10
    inner_lr: float = 3e-3
    outer_lr: float = 1e-3
    batch_size: int = 64  # many small steps: 512 underfit badly (train pairwise 0.65 vs 0.69)
    regression_weight: float = 0.5
    listwise_weight: float = 0.0
    val_shots: int = 16
    val_after_line: int = 0
    val_metric: str = "pairwise"
    seed: int = 0
    gnn: GNNConfig = field(default_factory=GNNConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.epochs < 1 or self.meta_batch_tasks < 1 or self.episodes_per_task < 1:
            raise ValueError(f"invalid PretrainConfig: {self}")
        if not 1 <= self.support_min <= self.support_max or self.query_size < 2:
            raise ValueError(f"invalid support/query sizes in {self}")
        if self.episode_order not in EPISODE_ORDERS:
            raise ValueError(
                f"unknown episode order {self.episode_order!r}; "
                f"choose one of {', '.join(EPISODE_ORDERS)}"
            )
        if self.val_metric not in VAL_METRICS:
            raise ValueError(
                f"unknown validation metric {self.val_metric!r}; "
                f"choose one of {', '.join(VAL_METRICS)}"
            )
        if self.val_after_line < 0:
            raise ValueError(f"val_after_line must be 0 or more, got {self.val_after_line}")

    @property
    def adapt_config(self) -> AdaptConfig:
        """The inner loop, as MetaCostModel runs it."""
        return AdaptConfig(
            steps=self.inner_steps, lr=self.inner_lr, regression_weight=self.regression_weight
        )

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["gnn"] = self.gnn.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainConfig:
        values = dict(values)
        values["gnn"] = GNNConfig.from_dict(values.get("gnn", {}))
        return cls(**values)


@dataclass
class EpochReport:
    """One epoch: mean training loss, validation scores, wall seconds since the run began."""

    epoch: int
    train_loss: float
    val_zero_shot: float
    val_few_shot: float
    seconds: float

    @property
    def val_score(self) -> float:
        """What early stopping watches: the mean of the zero-shot and few-shot validation
        metric (``PretrainConfig.val_metric``)."""
        return 0.5 * (self.val_zero_shot + self.val_few_shot)


@dataclass
class PretrainResult:
    """The best model of a run (by validation score) and the run's history."""

    model: LoopGraphGNN
    config: PretrainConfig
    history: list[EpochReport]
    best_epoch: int
    stopped_early: bool
    resumed_from: int

    def summary(self) -> dict[str, Any]:
        best = next((r for r in self.history if r.epoch == self.best_epoch), None)
        return {
            "method": self.config.method,
            "epochs_run": len(self.history),
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "best_val_zero_shot": None if best is None else best.val_zero_shot,
            "best_val_few_shot": None if best is None else best.val_few_shot,
            "seconds": self.history[-1].seconds if self.history else 0.0,
        }


# --------------------------------------------------------------------------------------------
# One epoch of each method
# --------------------------------------------------------------------------------------------


def _episode(
    task: Task, config: PretrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Disjoint support and query indices of one task, or None when it is too small (see
    ``PretrainConfig.episode_order``)."""
    n = len(task.graphs)
    if n < config.support_min + 2:
        return None
    size = int(rng.integers(config.support_min, min(config.support_max, n - 2) + 1))
    if config.episode_order == "search":
        order = records_after_line(task.lines, 0)  # every record, in record-file order
        # the query is at least two records long, so the support starts early enough
        start = int(rng.integers(0, n - size - 2 + 1))
        return order[start : start + size], order[start + size : start + size + config.query_size]
    order = rng.permutation(n)
    return order[:size], order[size : size + config.query_size]


def _task_loss(model, params: Params, graphs, labels: np.ndarray, config) -> torch.Tensor:
    scores = functional_call(model, params, (GraphBatch.collate(graphs),))
    y = torch.as_tensor(labels, dtype=torch.float32)
    groups = torch.zeros(len(graphs), dtype=torch.int64)
    loss = pairwise_rank_loss(scores, y, groups)
    if config.regression_weight:
        loss = loss + config.regression_weight * regression_loss(scores, y)
    return loss


def _meta_epoch(
    model: LoopGraphGNN,
    optimizer: torch.optim.Optimizer,
    tasks: Sequence[Task],
    config: PretrainConfig,
    rng: np.random.Generator,
    on_step: Callable[[], None],
) -> float:
    schedule = np.concatenate(
        [rng.permutation(len(tasks)) for _ in range(config.episodes_per_task)]
    )
    names = [name for name, _ in model.named_parameters()]
    losses = []
    for start in range(0, len(schedule), config.meta_batch_tasks):
        meta_params = parameters_of(model)
        grads = {name: torch.zeros_like(p) for name, p in meta_params.items()}
        used = 0
        for t in schedule[start : start + config.meta_batch_tasks]:
            task = tasks[int(t)]
            picked = _episode(task, config, rng)
            if picked is None:
                continue
            support, query = picked
            labels = np.asarray(task.labels, np.float32)
            adapted = adapt(
                model,
                meta_params,
                [task.graphs[i] for i in support],
                labels[support],
                replace(config.adapt_config, max_samples=len(support)),
            )
            if config.method == "fomaml":
                fast = {k: v.clone().requires_grad_(True) for k, v in adapted.items()}
                loss = _task_loss(
                    model, fast, [task.graphs[i] for i in query], labels[query], config
                )
                task_grads = torch.autograd.grad(loss, [fast[k] for k in names], allow_unused=True)
                for name, g in zip(names, task_grads, strict=True):
                    if g is not None:
                        grads[name] += g
                losses.append(float(loss.detach()))
            else:  # reptile: move towards the adapted parameters
                for name in names:
                    grads[name] += meta_params[name] - adapted[name]
                with torch.no_grad():
                    loss = _task_loss(
                        model, adapted, [task.graphs[i] for i in query], labels[query], config
                    )
                losses.append(float(loss))
            used += 1
            on_step()
        if not used:
            continue
        optimizer.zero_grad(set_to_none=True)
        for name, p in model.named_parameters():
            p.grad = grads[name] / used
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return float(np.mean(losses)) if losses else float("nan")


def _transfer_epoch(
    model: LoopGraphGNN,
    optimizer: torch.optim.Optimizer,
    tasks: Sequence[Task],
    config: PretrainConfig,
    epoch_seed: int,
    on_step: Callable[[], None],
    on_plan: Callable[[int], None] | None = None,
) -> float:
    graphs = [g for t in tasks for g in t.graphs]
    labels = np.concatenate([np.asarray(t.labels, np.float32) for t in tasks])
    groups = torch.from_numpy(np.repeat(np.arange(len(tasks)), [len(t.graphs) for t in tasks]))
    train_config = TrainConfig(
        batch_size=config.batch_size,
        regression_weight=config.regression_weight,
        listwise_weight=config.listwise_weight,
    )
    generator = torch.Generator().manual_seed(epoch_seed)
    losses = []
    model.train()
    minibatches = group_minibatches(groups, config.batch_size, generator)
    if on_plan is not None:
        on_plan(len(minibatches))
    for index in minibatches:
        batch = GraphBatch.collate([graphs[i] for i in index.tolist()])
        loss = batch_loss(
            model(batch), torch.from_numpy(labels[index.numpy()]), groups[index], train_config
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        on_step()
    model.eval()
    return float(np.mean(losses)) if losses else float("nan")


def steps_per_epoch(tasks: Sequence[Task], config: PretrainConfig) -> int:
    """Progress units of one epoch: episodes (meta methods) or minibatches (transfer, approx.)."""
    if config.method == "transfer":
        return max(1, -(-sum(len(t.graphs) for t in tasks) // config.batch_size))
    return len(tasks) * config.episodes_per_task


# --------------------------------------------------------------------------------------------
# The run: state file, resume, early stopping
# --------------------------------------------------------------------------------------------


def _load_state(path: Path, config: PretrainConfig, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"cannot resume from {path}: unreadable ({err})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise WeightsError(f"cannot resume from {path}: not an ms-meta pretraining state")
    if state.get("config") != config.to_dict() or state.get("data") != fingerprint:
        raise MsMetaError(
            f"{path} belongs to a run with other settings or data; delete it or pass "
            "--no-resume (or another --out) to start a new run"
        )
    if state.get("feature_version") != FEATURE_VERSION:
        raise WeightsError(
            f"{path} was written for feature encoding v{state.get('feature_version')}"
        )
    return state


def data_fingerprint(tasks: Sequence[Task]) -> str:
    """Task names and record counts: enough to tell that a resumed run sees the same data."""
    return ";".join(f"{t.name}:{len(t.graphs)}" for t in tasks)


def pretrain(
    train_tasks: Sequence[Task],
    val_tasks: Sequence[Task],
    config: PretrainConfig,
    *,
    state_path: str | os.PathLike | None = None,
    resume: bool = True,
    init_state: dict[str, torch.Tensor] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> PretrainResult:
    """Pretrain a GNN on ``train_tasks``, early-stopping on ``val_tasks``.

    Parameters
    ----------
    train_tasks, val_tasks : sequences of tasks
        Disjoint task sets; ``val_tasks`` may be empty (then every epoch counts as the best and
        the run ends after ``config.epochs``).
    config : PretrainConfig
        Method and hyper-parameters.
    state_path : path, optional
        Training state written atomically after every epoch (model, optimizer, best model,
        history); with ``resume`` a matching state continues the run. Deleted by the caller when
        no longer wanted.
    progress : callable, optional
        ``progress(done, total, note)`` per episode or minibatch, over the whole run.
    on_epoch : callable, optional
        Called with each epoch's :class:`EpochReport`.
    init_state : dict, optional
        Start from these parameters (e.g. transfer-pretrained weights, then meta-train) instead
        of a fresh initialization; the model configuration must match.

    Raises
    ------
    MsMetaError
        When there are no training tasks, or the state file belongs to another run.
    """
    if not train_tasks:
        raise MsMetaError("no training tasks: pretraining needs tuning records")
    state_file = Path(state_path) if state_path is not None else None
    fingerprint = data_fingerprint(train_tasks) + "|" + data_fingerprint(val_tasks)
    model = init_model(config.gnn, seed=config.seed)
    if init_state is not None:
        try:
            model.load_state_dict(init_state)
        except RuntimeError as err:
            raise WeightsError(f"the initial weights do not fit the model: {err}") from None
    optimizer = torch.optim.Adam(model.parameters(), lr=config.outer_lr)
    history: list[EpochReport] = []
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    best_score, best_epoch, bad_epochs, elapsed = -np.inf, 0, 0, 0.0
    state = _load_state(state_file, config, fingerprint) if state_file and resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_state = state["best_model"]
        history = [EpochReport(**r) for r in state["history"]]
        best_score, best_epoch = state["best_score"], state["best_epoch"]
        bad_epochs, elapsed = state["bad_epochs"], state["seconds"]
        logger.info("resuming %s after epoch %d", state_file, len(history))
    resumed_from = len(history)
    per_epoch = steps_per_epoch(train_tasks, config)
    total = per_epoch * config.epochs
    done = per_epoch * len(history)
    stopped_early = bool(state and state.get("stopped_early"))
    started = time.perf_counter() - elapsed

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, f"epoch {epoch + 1}/{config.epochs}")

    def plan_epoch(steps: int) -> None:
        # Packing whole tasks into minibatches makes the count vary a little per epoch:
        # correct this epoch's share of the total once it is known.
        nonlocal total
        total += steps - per_epoch

    for epoch in range(len(history), config.epochs):
        if stopped_early:
            break
        # Per-epoch generators derived from (seed, epoch): a resumed run draws what an
        # uninterrupted one would have drawn.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed * 100_003 + epoch)
            if config.method == "transfer":
                loss = _transfer_epoch(
                    model, optimizer, train_tasks, config, config.seed * 100_003 + epoch, step,
                    plan_epoch,
                )  # fmt: skip
            else:
                rng = np.random.default_rng([config.seed, epoch])
                loss = _meta_epoch(model, optimizer, train_tasks, config, rng, step)
        zero, few = validate(
            model,
            val_tasks,
            shots=config.val_shots,
            adapt_config=config.adapt_config,
            seed=config.seed,
            after_line=config.val_after_line,
            metric=config.val_metric,
        )
        report = EpochReport(epoch + 1, loss, zero, few, time.perf_counter() - started)
        history.append(report)
        score = report.val_score if np.isfinite(report.val_score) else -np.inf
        if score > best_score or not val_tasks:
            best_score, best_epoch, bad_epochs = score, epoch + 1, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        stopped_early = bool(val_tasks) and config.patience > 0 and bad_epochs >= config.patience
        if on_epoch is not None:
            on_epoch(report)
        if state_file is not None:
            save_atomically(
                {
                    "format": STATE_FORMAT,
                    "feature_version": FEATURE_VERSION,
                    "config": config.to_dict(),
                    "data": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best_model": best_state,
                    "best_score": float(best_score),
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "history": [asdict(r) for r in history],
                    "seconds": report.seconds,
                    "stopped_early": stopped_early,
                },
                state_file,
            )
    model.load_state_dict(best_state)
    model.eval()
    return PretrainResult(model, config, history, best_epoch, stopped_early, resumed_from)
