"""Task-level held-out splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ms_meta.data.layout import DATASET_FORMAT_VERSION
from ms_meta.data.split import make_task_split, read_split, write_split
from ms_meta.errors import MsMetaError

TASKS = {
    **{f"conv_{i}": "conv2d_nchw" for i in range(10)},
    **{f"dense_{i}": "dense" for i in range(5)},
    **{f"bmm_{i}": "batch_matmul" for i in range(3)},
    **{f"pool_{i}": "pool" for i in range(2)},
    "softmax_0": "softmax",
}


def test_split_is_a_partition_of_whole_tasks() -> None:
    split = make_task_split(TASKS, held_out_fraction=0.2, seed=0)
    train, held = set(split["train"]), set(split["held_out"])
    assert not train & held
    assert train | held == set(TASKS)
    assert split["train"] == sorted(split["train"])
    assert (split["seed"], split["fraction"], split["split"]) == (0, 0.2, "by_task")
    assert split["ops"] == {k: TASKS[k] for k in sorted(TASKS)}


def test_split_is_stratified_by_operator_kind() -> None:
    for seed in range(5):
        split = make_task_split(TASKS, held_out_fraction=0.2, seed=seed)
        held = Counter(TASKS[t] for t in split["held_out"])
        train = Counter(TASKS[t] for t in split["train"])
        assert held == {"conv2d_nchw": 2, "dense": 1, "batch_matmul": 1}
        # every kind with >= 2 tasks keeps one for training
        assert all(train[kind] >= 1 for kind in ("conv2d_nchw", "dense", "batch_matmul", "pool"))
        assert train["softmax"] == 1


def test_split_is_deterministic_and_seeded() -> None:
    first = make_task_split(TASKS, seed=3)
    reordered = dict(reversed(list(TASKS.items())))
    assert make_task_split(reordered, seed=3) == first
    others = {tuple(make_task_split(TASKS, seed=s)["held_out"]) for s in range(10)}
    assert len(others) > 1


def test_fraction_zero_holds_nothing_out() -> None:
    split = make_task_split(TASKS, held_out_fraction=0.0)
    assert split["held_out"] == [] and len(split["train"]) == len(TASKS)


def test_large_fraction_still_keeps_a_training_task_per_kind() -> None:
    split = make_task_split(TASKS, held_out_fraction=0.9)
    train = Counter(TASKS[t] for t in split["train"])
    assert all(train[kind] == 1 for kind in ("conv2d_nchw", "dense", "batch_matmul", "pool"))


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2.0])
def test_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="held_out_fraction"):
        make_task_split(TASKS, held_out_fraction=fraction)


def test_no_tasks() -> None:
    with pytest.raises(ValueError, match="no tasks"):
        make_task_split({})


def test_write_and_read_split(tmp_path: Path) -> None:
    split = make_task_split(TASKS, seed=1)
    path = write_split(tmp_path / "split.json", split)
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]  # no temporary file left
    loaded = read_split(path)
    assert loaded["format_version"] == DATASET_FORMAT_VERSION
    assert {k: loaded[k] for k in split} == split
    write_split(path, make_task_split(TASKS, seed=2))  # replaces the old file
    assert read_split(path)["seed"] == 2


def test_write_split_to_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(MsMetaError, match="cannot write the split"):
        write_split(tmp_path / "no" / "split.json", make_task_split(TASKS))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{oops", "cannot read"),
        ('{"train": []}', "needs 'train' and 'held_out'"),
        ('{"train": ["a"], "held_out": ["a"]}', "both in train and held_out"),
        ('{"train": [], "held_out": [], "format_version": 99}', "format version 99"),
    ],
)
def test_read_bad_split(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "split.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(MsMetaError, match=message):
        read_split(path)


def test_split_json_is_plain_json(tmp_path: Path) -> None:
    path = write_split(tmp_path / "s.json", make_task_split(TASKS))
    data = json.loads(path.read_text())
    assert set(data) >= {"train", "held_out", "seed", "fraction"}


def test_a_fused_conv_and_the_plain_conv_of_its_shape_stay_on_one_side() -> None:
    shape = "1_64_56_56_64_3_3_1_1"
    tasks = {}
    for c in (16, 32, 48, 64, 96):
        for op in ("conv2d_nchw", "conv2d_bias_relu"):
            tasks[f"{op}_1_{c}_56_56_{c}_3_3_1_1"] = op
    sides = set()
    for seed in range(12):
        split = make_task_split(tasks, held_out_fraction=0.4, seed=seed)
        side = {name: "held_out" if name in split["held_out"] else "train" for name in tasks}
        assert side[f"conv2d_nchw_{shape}"] == side[f"conv2d_bias_relu_{shape}"]
        sides.add(side[f"conv2d_nchw_{shape}"])
    assert sides == {"train", "held_out"}


def test_extending_a_split_moves_no_task_and_places_new_ones() -> None:
    from ms_meta.data.split import extend_task_split

    old = make_task_split(TASKS, held_out_fraction=0.2, seed=0)
    grown = {
        **TASKS,
        **{f"matmul_bias_{i}": "matmul_bias" for i in range(5)},
        # the fused twin of a held-out plain conv2d must join its side
        **{
            "conv2d_bias_relu_" + name[len("conv2d_nchw_") :]: "conv2d_bias_relu"
            for name in ["conv2d_nchw_1_8_8_8_8_3_3_1_1"]
        },
        "conv2d_nchw_1_8_8_8_8_3_3_1_1": "conv2d_nchw",
    }
    seeded = extend_task_split(old, {"conv2d_nchw_1_8_8_8_8_3_3_1_1": "conv2d_nchw"})
    side = "held_out" if "conv2d_nchw_1_8_8_8_8_3_3_1_1" in seeded["held_out"] else "train"
    new = extend_task_split(seeded, grown)
    for part in ("train", "held_out"):
        assert set(old[part]) <= set(new[part])  # nothing moved
        assert set(seeded[part]) <= set(new[part])
    assert set(new["train"]) | set(new["held_out"]) == set(grown)
    assert not set(new["train"]) & set(new["held_out"])
    assert "conv2d_bias_relu_1_8_8_8_8_3_3_1_1" in new[side]
    assert sum(f"matmul_bias_{i}" in new["held_out"] for i in range(5)) == 1  # 20% of 5
    assert new["extended"] == sorted(
        ["conv2d_bias_relu_1_8_8_8_8_3_3_1_1", *(f"matmul_bias_{i}" for i in range(5))]
    )
    assert (new["seed"], new["fraction"]) == (old["seed"], old["fraction"])
    assert extend_task_split(new, grown)["extended"] == []  # idempotent


def test_db_split_extend_needs_an_existing_split(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ms_meta.cli.main import cli

    result = CliRunner().invoke(
        cli,
        ["db", "split", str(tmp_path), "--library", "--extend", "--out", str(tmp_path / "s.json")],
    )
    assert result.exit_code != 0
    assert "--extend needs an existing split" in result.output
