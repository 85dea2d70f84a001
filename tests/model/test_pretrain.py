"""Meta-training and transfer pretraining on synthetic tasks: learning, determinism, resume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from ms_meta.errors import MsMetaError
from ms_meta.feature.schema import LoopGraph
from ms_meta.model.gnn import GNNConfig
from ms_meta.model.meta import AdaptConfig, AdaptingScorer, predict_with
from ms_meta.model.metrics import pairwise_accuracy
from ms_meta.model.pretrain import PretrainConfig, pretrain, validate, validation_records
from ms_meta.model.train import init_model

from .conftest import SyntheticDataset

SMALL = GNNConfig(hidden=16, num_layers=1)


@dataclass
class Task:
    name: str
    graphs: list[LoopGraph]
    labels: np.ndarray


def tasks_of(data: SyntheticDataset, prefix: str) -> list[Task]:
    return [
        Task(f"{prefix}{g}", [data.graphs[i] for i in np.nonzero(data.groups == g)[0]],
             data.labels[data.groups == g].astype(np.float32))
        for g in np.unique(data.groups)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def train_tasks(train_set) -> list[Task]:
    return tasks_of(train_set, "train")


@pytest.fixture(scope="module")
def val_tasks(test_set) -> list[Task]:
    return tasks_of(test_set, "val")


def config(method: str, **kw) -> PretrainConfig:
    settings = dict(method=method, epochs=3, patience=0, meta_batch_tasks=4, episodes_per_task=1,
                    support_min=8, support_max=16, query_size=16, inner_steps=2, outer_lr=3e-3,
                    batch_size=64, val_shots=8, gnn=SMALL)  # fmt: skip
    settings.update(kw)
    return PretrainConfig(**settings)


@pytest.mark.parametrize("method", ["fomaml", "reptile", "transfer"])
def test_pretraining_learns_to_rank_unseen_tasks(method, train_tasks, val_tasks):
    untrained = validate(init_model(SMALL), val_tasks, shots=8, adapt_config=AdaptConfig(steps=2))
    result = pretrain(train_tasks, val_tasks, config(method, epochs=4))
    assert len(result.history) == 4 and 1 <= result.best_epoch <= 4
    best = result.history[result.best_epoch - 1]
    # The synthetic tasks share one latency model, so pretraining must beat the untrained model
    # on tasks it never saw, zero-shot.
    assert best.val_zero_shot > max(untrained[0], 0.6)
    again = validate(result.model, val_tasks, shots=8, adapt_config=config(method).adapt_config)
    assert again == pytest.approx((best.val_zero_shot, best.val_few_shot))


def test_a_seed_reproduces_a_run(train_tasks, val_tasks):
    first = pretrain(train_tasks, val_tasks, config("fomaml", epochs=2))
    second = pretrain(train_tasks, val_tasks, config("fomaml", epochs=2))
    assert [r.train_loss for r in first.history] == [r.train_loss for r in second.history]
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, train_tasks, val_tasks):
    state = tmp_path / "run.state.pt"
    straight = pretrain(train_tasks, val_tasks, config("reptile", epochs=3))

    class Interrupt(Exception):
        pass

    def stop_after_two(report):
        if report.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        pretrain(train_tasks, val_tasks, config("reptile", epochs=3), state_path=state,
                 on_epoch=stop_after_two)  # fmt: skip
    assert state.is_file()
    resumed = pretrain(train_tasks, val_tasks, config("reptile", epochs=3), state_path=state)
    assert resumed.resumed_from == 1  # epoch 2's state was not written: the callback raised first
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in straight.history]
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_a_state_of_another_run(tmp_path, train_tasks, val_tasks):
    state = tmp_path / "run.state.pt"
    pretrain(train_tasks, val_tasks, config("transfer", epochs=1), state_path=state)
    with pytest.raises(MsMetaError, match="other settings or data"):
        pretrain(train_tasks, val_tasks, config("transfer", epochs=2), state_path=state)
    state.write_bytes(b"garbage")
    with pytest.raises(MsMetaError, match="cannot resume"):
        pretrain(train_tasks, val_tasks, config("transfer", epochs=1), state_path=state)
    # without resume the file is simply overwritten by the new run
    pretrain(train_tasks, val_tasks, config("transfer", epochs=1), state_path=state, resume=False)


def test_early_stopping_keeps_the_best_epoch(train_tasks, val_tasks):
    result = pretrain(train_tasks, val_tasks, config("transfer", epochs=12, patience=1,
                                                     outer_lr=0.05))  # fmt: skip
    scores = [r.val_score for r in result.history]
    assert result.best_epoch == int(np.argmax(scores)) + 1
    if result.stopped_early:
        assert len(result.history) < 12 and scores[-1] <= max(scores)


@dataclass
class TaskWithLines(Task):
    lines: np.ndarray = None


def test_validation_on_late_records_takes_them_in_search_order(val_tasks):
    model = init_model(SMALL)
    task = val_tasks[0]
    n = len(task.graphs)
    lines = np.arange(n, 0, -1) * 2  # record i on line 2(n - i): file order is reversed
    late_task = TaskWithLines(task.name, task.graphs, task.labels, lines)
    after = int(lines[n // 2])
    records = validation_records(late_task, after)
    assert records.tolist() == list(range(n // 2 - 1, -1, -1))  # lines after `after`, ascending
    assert validation_records(late_task, 0).tolist() == list(range(n))

    query = records[8:]
    scores = predict_with(model, None, [task.graphs[i] for i in query])
    labels = task.labels[query]
    top1, _ = validate(model, [late_task], shots=8, adapt_config=AdaptConfig(steps=1),
                       after_line=after, metric="top1")  # fmt: skip
    assert top1 == pytest.approx(labels[np.argmax(scores)] / labels.max())
    pairwise, _ = validate(model, [late_task], shots=8, adapt_config=AdaptConfig(steps=1),
                           after_line=after)  # fmt: skip
    assert pairwise == pytest.approx(pairwise_accuracy(scores, labels, np.zeros(len(query))))
    # too few late records: nothing to validate on
    few = validate(model, [late_task], shots=8, adapt_config=AdaptConfig(steps=1),
                   after_line=int(lines[5]))  # fmt: skip
    assert np.isnan(few).all()

    late_tasks = [TaskWithLines(t.name, t.graphs, t.labels, np.arange(1, len(t.graphs) + 1))
                  for t in val_tasks]  # fmt: skip
    result = pretrain(late_tasks[:2], late_tasks[2:], config("transfer", epochs=1,
                      val_after_line=10, val_metric="top1"))  # fmt: skip
    assert 0 < result.history[0].val_zero_shot <= 1 and 0 < result.history[0].val_few_shot <= 1


def test_no_training_tasks_is_a_clear_error():
    with pytest.raises(MsMetaError, match="no training tasks"):
        pretrain([], [], config("fomaml"))
    with pytest.raises(ValueError, match="unknown method"):
        PretrainConfig(method="maml2")
    with pytest.raises(ValueError, match="unknown validation metric 'ndcg'"):
        PretrainConfig(val_metric="ndcg")
    with pytest.raises(ValueError, match="val_after_line must be 0 or more"):
        PretrainConfig(val_after_line=-1)


def test_adapting_scorer_adapts_only_with_support(train_tasks, val_tasks):
    model = pretrain(train_tasks, [], config("transfer", epochs=1)).model
    scorer = AdaptingScorer("gnn", model, AdaptConfig(steps=3, lr=1e-2))
    task = val_tasks[0]
    query = np.arange(8, len(task.graphs))
    zero = scorer.score(task, np.zeros(0, np.int64), query)
    few = scorer.score(task, np.arange(8), query)
    assert zero.shape == few.shape == (len(query),)
    assert not np.allclose(zero, few)
    assert np.array_equal(zero, scorer.score(task, np.zeros(0, np.int64), query))


@dataclass
class LinedTask(Task):
    lines: np.ndarray


def _lined(task: Task, rng: np.random.Generator) -> LinedTask:
    """The task with its records stored out of record-file order (shuffled lines)."""
    return LinedTask(task.name, task.graphs, task.labels, rng.permutation(len(task.graphs)) + 1)


def test_search_episodes_take_consecutive_records_and_what_follows(train_tasks):
    from ms_meta.model.pretrain import _episode

    task = _lined(train_tasks[0], np.random.default_rng(0))
    cfg = config("fomaml", episode_order="search", support_min=4, support_max=8, query_size=5)
    rng = np.random.default_rng(1)
    for _ in range(20):
        support, query = _episode(task, cfg, rng)
        lines = task.lines[np.concatenate([support, query])]
        # one run of consecutive record-file lines: the support, then the query right after it
        assert list(lines) == list(range(lines[0], lines[0] + len(lines)))
        assert 4 <= len(support) <= 8 and 2 <= len(query) <= 5
    with pytest.raises(ValueError, match="episode order"):
        config("fomaml", episode_order="sorted")


def test_meta_training_on_search_episodes_learns(train_tasks, val_tasks):
    rng = np.random.default_rng(0)
    lined = [_lined(t, rng) for t in train_tasks]
    untrained = validate(init_model(SMALL), val_tasks, shots=8, adapt_config=AdaptConfig(steps=2))
    result = pretrain(lined, val_tasks, config("fomaml", epochs=4, episode_order="search"))
    best = result.history[result.best_epoch - 1]
    assert best.val_zero_shot > max(untrained[0], 0.6)
    random_order = pretrain(lined, val_tasks, config("fomaml", epochs=1))
    assert random_order.history[0].train_loss != result.history[0].train_loss  # other episodes
