"""Bad targets, weights of another CPU, damaged schedule libraries and unusable workloads,
driven through the real CLI.

Each case runs ``ms-meta`` in a separate process (as a user's shell would) on real files: the
shipped weights, schedule libraries built from the seed records and then damaged, and copies
of the seed records with garbled lines or unreadable files.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from ms_meta.model.weights import DEFAULT_WEIGHTS_DIR
from ms_meta.one_shot.library import build_library
from tests.cli.runner import assert_one_line_error, ms_meta
from tests.conftest import SEED_RECORDS

DENSE_TASKS = ["mm_512", "mm_1024", "bert_qkv"]  # dense 512^3, 1024^3, 128x768x768
TINY = ["--population", "16", "--generations", "1", "--no-measure"]


def target(**config) -> str:
    return json.dumps({"kind": "llvm", "num-cores": 2, **config})


# --- targets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_json", "needles"),
    [
        (target(mcpu="notacpu"), ["unknown mcpu 'notacpu'", "LLVM has no such CPU"]),
        (target(mcpu="znver9"), ["unknown mcpu 'znver9'", "did you mean 'znver5'"]),
        (target(mcpu="skylake", **{"num-cores": 0}), ["num-cores must be a positive", "got 0"]),
        (target(mcpu="skylake", **{"num-cores": -2}), ["num-cores must be a positive"]),
        (json.dumps({"kind": "cuda"}), ["target kind 'cuda' is not supported", "LLVM CPU"]),
    ],
    ids=["unknown-cpu", "misspelled-cpu", "zero-cores", "negative-cores", "cuda"],
)
def test_bad_targets_are_refused_up_front_in_one_line(tmp_path, target_json, needles):
    result = ms_meta("tune", "dense:16,16,16", "--target", target_json, cwd=tmp_path)
    assert_one_line_error(result, *needles)
    # refused before any tuning: no LLVM complaints, no CUDA probing, nothing written
    assert "llvm_instance" not in result.stderr and "CUDA" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_one_shot_refuses_an_unknown_cpu_too(tmp_path):
    result = ms_meta("tune", "dense:16,16,16", "--mode", "one-shot", "--target",
                     target(mcpu="notacpu"), cwd=tmp_path)  # fmt: skip
    assert_one_line_error(result, "unknown mcpu 'notacpu'")
    assert "llvm_instance" not in result.stderr


def test_collect_refuses_an_unknown_cpu_too(tmp_path):
    result = ms_meta("collect", "dense:16,16,16", "--out", str(tmp_path / "records"),
                     "--target", target(mcpu="notacpu"), cwd=tmp_path)  # fmt: skip
    assert_one_line_error(result, "unknown mcpu 'notacpu'")
    assert not (tmp_path / "records").exists() or not any((tmp_path / "records").rglob("*.json"))


def test_a_known_cpu_other_than_the_host_is_accepted(tmp_path):
    result = ms_meta("tune", "dense:16,16,16", "--mode", "one-shot", "--weights", "none",
                     "--library", "none", "--target", target(mcpu="skylake-avx512"), *TINY,
                     "--work-dir", str(tmp_path / "run"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "llvm_instance" not in result.stderr


# --- weights of another CPU ---------------------------------------------------------------


@pytest.fixture(scope="module")
def znver4_weights() -> Path:
    path = DEFAULT_WEIGHTS_DIR / "llvm-znver4-noavx512.pt"
    if not path.is_file():
        pytest.skip("this build ships no Zen 4 weights")
    return path


def test_tune_names_its_own_flag_for_weights_of_another_cpu(tmp_path, znver4_weights):
    args = ["tune", "dense:16,16,16", "--mode", "one-shot", "--weights", str(znver4_weights),
            "--library", "none", "--target", target(mcpu="rocketlake"), *TINY]  # fmt: skip
    refused = ms_meta(*args, "--work-dir", str(tmp_path / "a"), cwd=tmp_path)
    assert_one_line_error(refused, "trained for mcpu=znver4", "--any-cpu-weights")
    accepted = ms_meta(*args, "--any-cpu-weights", "--work-dir", str(tmp_path / "b"), cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    assert "with weights trained on znver4" in accepted.stderr
    assert "dense:16,16,16: picked by the model" in accepted.stdout


def test_any_cpu_weights_is_refused_in_measured_mode(tmp_path):
    result = ms_meta("tune", "dense:16,16,16", "--any-cpu-weights", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--any-cpu-weights applies only to --mode one-shot" in result.stderr


# --- damaged schedule libraries -----------------------------------------------------------


@pytest.fixture(scope="module")
def library_doc(tmp_path_factory) -> dict:
    """A real library of three dense tasks of the seed records, as its JSON document."""
    path = build_library([SEED_RECORDS], tasks=DENSE_TASKS, per_task=3).save(
        tmp_path_factory.mktemp("library") / "dense.library.json.gz"
    )
    with gzip.open(path, "rt") as f:
        return json.load(f)


def write_library(path: Path, doc: dict) -> Path:
    with gzip.open(path, "wt") as f:
        json.dump(doc, f)
    return path


def damaged(doc: dict, how: str) -> dict:
    doc = json.loads(json.dumps(doc))
    tasks = {t["name"]: t for t in doc["tasks"]}
    if how == "short-features":
        tasks["mm_1024"]["features"] = tasks["mm_1024"]["features"][:10]
    elif how == "garbled-trace":
        tasks["mm_1024"]["schedules"][0]["trace"] = "garbled"
    elif how == "unknown-instruction":
        tasks["mm_1024"]["schedules"][1]["trace"][0][0][0] = "NoSuchInstruction"
    elif how == "everything":
        for task in doc["tasks"]:
            task["features"] = task["features"][:10]
    return doc


@pytest.mark.parametrize(
    ("how", "cause"),
    [
        ("short-features", "a feature vector of length 10"),
        ("garbled-trace", "a trace that is not [instructions, decisions]"),
        ("unknown-instruction", "a trace instruction 'NoSuchInstruction' TVM does not know"),
    ],
)
def test_one_shot_warns_once_naming_a_damaged_library_and_its_cause(
    tmp_path, library_doc, how, cause
):
    path = write_library(tmp_path / "damaged.library.json.gz", damaged(library_doc, how))
    result = ms_meta("tune", "dense:1024,1024,1024", "--mode", "one-shot", "--weights", "none",
                     "--library", str(path), "--target", target(mcpu="rocketlake"), *TINY,
                     "--work-dir", str(tmp_path / "run"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "is damaged" in line]
    assert len(warnings) == 1, result.stderr
    assert str(path) in warnings[0] and "1 of 3 tasks left out" in warnings[0]
    assert "'mm_1024'" in warnings[0] and cause in warnings[0]
    # the two sound tasks still serve the task from the library
    summary = json.loads((tmp_path / "run" / "one_shot_summary.json").read_text())
    assert summary["tasks"][0]["source"] == "library", summary["tasks"][0]
    assert summary["library_damaged"]["tasks"] == 1


def test_a_library_with_no_usable_task_is_refused(tmp_path, library_doc):
    path = write_library(tmp_path / "broken.library.json.gz", damaged(library_doc, "everything"))
    result = ms_meta("tune", "dense:1024,1024,1024", "--mode", "one-shot", "--weights", "none",
                     "--library", str(path), *TINY, cwd=tmp_path)  # fmt: skip
    assert_one_line_error(result, str(path), "all 3 tasks are unusable", "feature vector")
    shown = ms_meta("library", "show", str(path), cwd=tmp_path)
    assert_one_line_error(shown, "all 3 tasks are unusable")


def test_library_show_reports_left_out_tasks(tmp_path, library_doc):
    path = write_library(tmp_path / "d.library.json.gz", damaged(library_doc, "short-features"))
    result = ms_meta("library", "show", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "damaged: 1 tasks left out (first: task 'mm_1024'" in result.stdout


# --- library build over damaged records ---------------------------------------------------


@pytest.fixture
def records(tmp_path) -> Path:
    """A copy of three seed tasks."""
    root = tmp_path / "records"
    for name in DENSE_TASKS:
        shutil.copytree(SEED_RECORDS / name, root / name)
    return root


def test_library_build_warns_about_the_record_lines_it_drops(tmp_path, records):
    record_file = records / "mm_512" / "database_tuning_record.json"
    lines = record_file.read_text().splitlines(keepends=True)
    record_file.write_text("".join([lines[0], "{not json\n", *lines[1:], "[0, 1]\n"]))
    out = tmp_path / "lib.library.json.gz"
    result = ms_meta("library", "build", str(records), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "record lines left out" in line]
    assert len(warnings) == 1, result.stderr
    assert "2 unreadable record lines left out" in warnings[0]
    assert f"first: {record_file}:2: malformed" in warnings[0]
    assert out.is_file() and "3 tasks" in result.stdout


def test_library_build_refuses_an_unreadable_source_unless_told_to_skip(tmp_path, records):
    workloads = records / "mm_1024" / "database_workload.json"
    gz = workloads.with_name(workloads.name + ".gz")
    gz.write_bytes(b"this is not gzip data\n")  # the reader takes the .gz, which cannot be read
    workloads.unlink()
    out = tmp_path / "lib.library.json.gz"
    refused = ms_meta("library", "build", str(records), "--out", str(out), cwd=tmp_path)
    assert_one_line_error(refused, "cannot build a library", "--skip-unreadable", str(gz))
    assert not out.exists()
    skipped = ms_meta("library", "build", str(records), "--out", str(out), "--skip-unreadable",
                      cwd=tmp_path)  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr
    assert "left out, cannot be read" in skipped.stderr and str(gz) in skipped.stderr
    assert out.is_file() and "2 tasks" in skipped.stdout


# --- workloads without a useful answer ----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "limit"),
    [
        ("dense:100000,100000,100000", "the limit is 4 GiB"),
        ("conv2d_nchw:1,1024,256,256,1024,9,9,1,4", "FLOPs, the limit is 1e+13"),
    ],
)
def test_huge_shapes_are_refused_with_the_limit(tmp_path, spec, limit):
    result = ms_meta("tune", spec, "--mode", "one-shot", cwd=tmp_path)
    assert_one_line_error(result, f"workload {spec} is too large to tune", limit)


def test_one_shot_of_a_dynamic_shape_primfunc_is_a_clear_error(tmp_path):
    from tvm import te, tirx

    from ms_meta.one_shot import DynamicShapeError, tune_tir

    n = tirx.Var("n", "int64")
    a = te.placeholder((n, 64), name="A")
    b = te.placeholder((64, 64), name="B")
    k = te.reduce_axis((0, 64), name="k")
    c = te.compute((n, 64), lambda i, j: te.sum(a[i, k] * b[j, k], axis=k), name="C")
    func = te.create_prim_func([a, b, c])
    with pytest.raises(DynamicShapeError, match=r"task main has dynamic shapes \(n\)") as err:
        tune_tir(func, target(mcpu="rocketlake"), tmp_path, weights=None, library=None)
    assert "\n" not in str(err.value) and "int()" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # refused before the model loads or anything is written
