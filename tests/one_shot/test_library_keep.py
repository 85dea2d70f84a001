"""Keeping an older library's tasks of some kinds in a rebuilt one, from real seed records:
the library function and ``ms-meta library build --keep-from --keep-kinds``."""

from __future__ import annotations

import pytest

from ms_meta.one_shot.library import LibraryError, build_library, load_library
from ms_meta.one_shot.library_keep import keep_kinds, parse_kinds
from tests.cli.runner import assert_one_line_error, invoke
from tests.conftest import SEED_RECORDS, tree_hash

TASKS = ["mm_512", "bert_qkv", "layernorm_bert", "softmax_bert"]  # dense x2, layer_norm, softmax


@pytest.fixture(scope="module")
def old():
    """The "older" library: one schedule per task, of three of the four tasks."""
    return build_library([SEED_RECORDS], tasks=TASKS[1:], per_task=1)


@pytest.fixture(scope="module")
def built():
    return build_library([SEED_RECORDS], tasks=TASKS, per_task=3)


def schedules(library) -> dict[str, int]:
    return {task.name: len(task.schedules) for task in library.tasks}


def test_kept_kinds_come_from_the_old_library_the_rest_from_the_rebuild(old, built):
    merged = keep_kinds(built, old, ["dense", "softmax"], source="old.library.json.gz")
    assert [t.name for t in merged.tasks] == [t.name for t in built.tasks]  # the rebuild's order
    # bert_qkv and softmax_bert from the old one; mm_512 (dense, but not in the old library)
    # and layernorm_bert (a kind not kept) from the rebuild
    assert schedules(merged) == {"mm_512": 3, "bert_qkv": 1, "layernorm_bert": 3,
                                 "softmax_bert": 1}  # fmt: skip
    by_name = {t.name: t for t in merged.tasks}
    assert by_name["bert_qkv"] is next(t for t in old.tasks if t.name == "bert_qkv")
    assert merged.meta["kept_from"] == {
        "path": "old.library.json.gz",
        "created": old.meta["created"],
        "kinds": ["dense", "softmax"],
        "tasks": 2,
    }
    assert merged.meta["sources"] == built.meta["sources"]
    assert schedules(built) == dict.fromkeys(TASKS, 3)  # the inputs are left as they were
    assert "kept_from" not in built.meta


def test_kinds_are_checked_against_the_operator_kinds():
    assert parse_kinds(" softmax,dense,dense ") == ("dense", "softmax")
    with pytest.raises(LibraryError, match=r"unknown operator kind.*convolution"):
        parse_kinds("dense,convolution")
    with pytest.raises(LibraryError, match="unknown operator kind"):
        parse_kinds(" , ")


def test_build_keeps_the_named_kinds_of_an_older_library_file(old, tmp_path):
    old_path = old.save(tmp_path / "old.library.json.gz")
    before = tree_hash(tmp_path)
    out = tmp_path / "new.library.json.gz"
    args = ["library", "build", *(str(SEED_RECORDS / t) for t in TASKS), "--per-task", "3",
            "--keep-from", old_path, "--out", out]  # fmt: skip
    result = invoke(*args, "--keep-kinds", "dense,layer_norm")
    assert result.exit_code == 0, result.output
    assert f"2 tasks of dense, layer_norm kept from {old_path}" in result.output
    merged = load_library(out)
    assert schedules(merged) == {"mm_512": 3, "bert_qkv": 1, "layernorm_bert": 1,
                                 "softmax_bert": 3}  # fmt: skip
    shown = invoke("library", "show", out)
    assert f"2 tasks of dense, layer_norm kept from {old_path}" in shown.output
    after = tree_hash(tmp_path)
    assert after.pop(out.name) and after == before  # the old library is only read

    assert_one_line_error(invoke(*args, "--keep-kinds", "convolution"), "unknown operator kind")
    alone = ["library", "build", SEED_RECORDS / "mm_512", "--out", out, "--keep-kinds", "dense"]
    assert_one_line_error(invoke(*alone), "go together")
