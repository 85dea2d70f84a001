"""The k-shot protocol on synthetic tasks: fixed episodes, metrics, skips, reports."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from ms_meta.errors import MsMetaError
from ms_meta.eval import EvalResult, evaluate, make_episodes, markdown_table, text_table
from ms_meta.eval.protocol import MIN_QUERY, TOO_FEW_RECORDS


@dataclass
class FakeTask:
    """What the protocol reads of a TaskData: name, latencies (inf = failed), labels."""

    name: str
    latencies: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.latencies)


def make_task(name: str, n: int, seed: int = 0, failed: int = 3) -> FakeTask:
    rng = np.random.default_rng(seed)
    latencies = rng.uniform(1e-4, 1e-2, n)
    latencies[rng.choice(n, size=failed, replace=False)] = math.inf
    ok = np.isfinite(latencies)
    labels = np.zeros(n, np.float32)
    labels[ok] = latencies[ok].min() / latencies[ok]
    return FakeTask(name, latencies, labels)


class Oracle:
    """Scores each record by its true label (reversed: by minus it)."""

    def __init__(self, sign: float = 1.0, name: str = "oracle") -> None:
        self.sign = sign
        self.name = name
        self.calls: list[tuple[str, np.ndarray, np.ndarray]] = []

    def score(self, task, support, query):
        self.calls.append((task.name, support.copy(), query.copy()))
        return self.sign * np.asarray(task.labels, np.float64)[query]


TASKS = [make_task("a", 64, 1), make_task("b", 50, 2), make_task("c", 120, 3)]


def test_episodes_are_stable_and_nested():
    first, _ = make_episodes(TASKS, ks=(0, 8, 16, 32), seed=7)
    again, _ = make_episodes(list(reversed(TASKS)), ks=(0, 8, 16, 32), seed=7)
    other, _ = make_episodes(TASKS, ks=(0, 8, 16, 32), seed=8)
    again = {e.task: e for e in again}
    for episode, task in zip(first, TASKS, strict=True):
        assert sorted(episode.order.tolist()) == list(range(len(task)))  # a permutation
        np.testing.assert_array_equal(episode.order, again[task.name].order)  # order-free
        assert np.array_equal(episode.support(8), episode.support(16)[:8])  # supports nest
        assert not set(episode.query.tolist()) & set(episode.support(32).tolist())
        assert len(episode.query) == len(task) - 32
    assert any(not np.array_equal(a.order, b.order) for a, b in zip(first, other, strict=True))
    # The permutation depends on the task and the seed only, not on the shots asked for.
    fewer, _ = make_episodes(TASKS, ks=(0, 4), seed=7)
    for a, b in zip(first, fewer, strict=True):
        np.testing.assert_array_equal(a.order, b.order)


def test_query_is_the_same_for_every_k():
    scorer = Oracle()
    evaluate(scorer, TASKS, ks=(0, 8, 16, 32), seed=3)
    queries: dict[str, list[np.ndarray]] = {}
    for name, support, query in scorer.calls:
        queries.setdefault(name, []).append(query)
        assert len(support) in (0, 8, 16, 32)
        assert not set(support.tolist()) & set(query.tolist())
    assert set(queries) == {"a", "b", "c"}
    for found in queries.values():
        assert len(found) == 4
        for query in found[1:]:
            np.testing.assert_array_equal(query, found[0])


def test_oracle_scores_perfectly_and_reversed_scores_zero():
    good = evaluate(Oracle(), TASKS, ks=(0, 8), seed=0).summary()
    bad = evaluate(Oracle(-1.0, "reversed"), TASKS, ks=(0, 8), seed=0).summary()
    for k in (0, 8):
        assert good[k]["pairwise"] == 1.0
        assert good[k]["top1"] == 1.0
        assert good[k]["top5"] == 1.0
        assert good[k]["tau"] == pytest.approx(1.0)
        assert good[k]["tasks"] == 3
        assert bad[k]["pairwise"] == 0.0
        assert bad[k]["tau"] == pytest.approx(-1.0)
        assert bad[k]["top1"] < 1.0


def test_metrics_are_macro_averaged_over_tasks():
    class Mixed:
        name = "mixed"

        def score(self, task, support, query):
            sign = 1.0 if task.name == "a" else -1.0
            return sign * np.asarray(task.labels, np.float64)[query]

    result = evaluate(Mixed(), TASKS[:2], ks=(0,), seed=0)
    assert result.per_task[0]["a"]["pairwise"] == 1.0
    assert result.per_task[0]["b"]["pairwise"] == 0.0
    assert result.summary()[0]["pairwise"] == 0.5  # each task weighs the same, whatever its size


def test_too_small_tasks_are_skipped_and_counted():
    small = make_task("small", 32 + MIN_QUERY - 1, 4)
    just = make_task("just", 32 + MIN_QUERY, 5)
    result = evaluate(Oracle(), [small, just, TASKS[0]], ks=(0, 32), seed=0)
    assert result.tasks == ["just", "a"]
    assert set(result.skipped) == {"small"}
    assert result.skipped["small"].startswith(TOO_FEW_RECORDS)
    assert result.skip_counts() == {TOO_FEW_RECORDS: 1}
    assert result.per_task[32]["just"]["query"] == MIN_QUERY
    assert result.to_dict()["skip_counts"] == {TOO_FEW_RECORDS: 1}


@dataclass
class TaskWithLines(FakeTask):
    lines: np.ndarray = None


def test_after_line_and_search_order_select_and_keep_record_file_order():
    base = make_task("t", 60, 4)
    lines = np.arange(60, 0, -1) * 2  # record i sits on line 120 - 2i: file order is reversed
    task = TaskWithLines(base.name, base.latencies, base.labels, lines)
    late = np.nonzero(lines > 40)[0]  # records on lines 42..120
    (search,), _ = make_episodes([task], ks=(0, 8), after_line=40, order="search")
    assert search.order.tolist() == late[np.argsort(lines[late])].tolist()
    assert search.support(8).tolist() == [39, 38, 37, 36, 35, 34, 33, 32]  # lines 42, 44, ...
    (shuffled,), _ = make_episodes([task], ks=(0, 8), after_line=40)
    assert sorted(shuffled.order.tolist()) == sorted(late.tolist())
    assert shuffled.order.tolist() != search.order.tolist()
    (whole,), _ = make_episodes([task], ks=(0, 8), order="search")
    assert whole.order.tolist() == list(range(59, -1, -1))

    result = evaluate(Oracle(), [task], ks=(0, 8), after_line=40, order="search")
    assert result.per_task[0]["t"]["query"] == len(late) - 8
    back = EvalResult.from_dict(json.loads(json.dumps(result.to_dict(), allow_nan=False)))
    assert (back.after_line, back.order) == (40, "search")
    _, skipped = make_episodes([task], ks=(0, 32), after_line=90)
    assert skipped["t"] == f"{TOO_FEW_RECORDS}: 15 after line 90 < 40 (max k 32 + 8 query)"


def test_selection_needs_lines_and_valid_settings():
    with pytest.raises(MsMetaError, match="which line each record is on"):
        make_episodes(TASKS, ks=(0, 8), after_line=10)
    with pytest.raises(MsMetaError, match="which line each record is on"):
        make_episodes(TASKS, ks=(0, 8), order="search")
    with pytest.raises(MsMetaError, match="unknown record order 'newest'"):
        make_episodes(TASKS, ks=(0, 8), order="newest")
    with pytest.raises(MsMetaError, match="after_line must be 0 or more"):
        make_episodes(TASKS, ks=(0, 8), after_line=-1)


def test_reports_round_trip_and_render():
    results = [evaluate(Oracle(), TASKS, seed=0), evaluate(Oracle(-1.0, "reversed"), TASKS, seed=0)]
    data = json.loads(json.dumps(results[0].to_dict(), allow_nan=False))  # strict JSON
    assert data["summary"]["8"]["pairwise"] == 1.0
    back = EvalResult.from_dict(data)
    assert back.summary() == results[0].summary()
    assert back.per_task[16]["a"] == results[0].per_task[16]["a"]

    table = results[0].table().splitlines()
    assert table[0].split() == ["scorer", "k", "pairwise", "top-1", "top-5", "tau", "tasks"]
    assert len(table) == 2 + 4  # header, rule, one row per k
    assert table[2].split()[:3] == ["oracle", "0", "1.000"]

    side_by_side = text_table(results).splitlines()
    assert len(side_by_side) == 2 + 8
    markdown = markdown_table(results).splitlines()
    assert markdown[0] == "| scorer | k | pairwise | top-1 | top-5 | tau | tasks |"
    assert len(markdown) == 2 + 8
    assert markdown[-1].startswith("| reversed | 32 | 0.000 |")


def test_undefined_metrics_are_left_out_of_the_average():
    # A query of failed runs only has no top-k score (no finite latency) and no pairs.
    failed = FakeTask("failed", np.full(20, math.inf), np.zeros(20, np.float32))
    result = evaluate(Oracle(), [failed, TASKS[0]], ks=(0, 8), seed=0)
    assert math.isnan(result.per_task[0]["failed"]["top1"])
    assert result.summary()[0]["top1"] == 1.0
    assert result.to_dict()["per_task"]["0"]["failed"]["top1"] is None


def test_bad_input_and_bad_scores_raise_clearly():
    with pytest.raises(MsMetaError, match="unique"):
        evaluate(Oracle(), [TASKS[0], TASKS[0]])
    with pytest.raises(MsMetaError, match="0 or more"):
        evaluate(Oracle(), TASKS, ks=(-1, 8))
    with pytest.raises(MsMetaError, match="no shots"):
        evaluate(Oracle(), TASKS, ks=())

    class Short:
        name = "short"

        def score(self, task, support, query):
            return np.zeros(len(query) - 1)

    class Nan:
        name = "nan"

        def score(self, task, support, query):
            return np.full(len(query), np.nan)

    with pytest.raises(ValueError, match=r"returned \d+ scores for the"):
        evaluate(Short(), TASKS)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(Nan(), TASKS)
    with pytest.raises(MsMetaError, match="not an evaluation result"):
        EvalResult.from_dict({"scorer": "x"})
