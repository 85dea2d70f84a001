"""``ms-meta adapt`` on a few shipped record folders: borrowed weights, metadata, the held-out
report, the record store as input, and one-line errors for bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ms_meta.cli.main import cli
from ms_meta.data.layout import RECORD_FILE, WORKLOAD_FILE
from ms_meta.model.weights import DEFAULT_WEIGHTS_DIR, load_checkpoint
from ms_meta.train.adapt import nearest_weights, sample_records

RECORDS = Path(__file__).resolve().parents[2] / "tuning_records" / "llvm-rocketlake-2c"
# Two tasks of each of three operator kinds, so that a held-out share of every kind exists.
TASKS = [
    "dense_128_768_768",
    "dense_512_512_512",
    "softmax_12_128_128",
    "softmax_16_256_256",
    "layer_norm_128_768",
    "layer_norm_256_1024",
]
SKYLAKE = '{"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2}'
ROCKETLAKE = '{"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2}'


@pytest.fixture(scope="module")
def work_dirs(tmp_path_factory) -> list[Path]:
    """Four tasks' first 24 records as plain ``ms.tune_tir`` work directories (no meta.json,
    so no target is named: the command is told with --target)."""
    paths = [RECORDS / name for name in TASKS[::2] + TASKS[1:2]]
    if not all((p / RECORD_FILE).is_file() for p in paths):
        pytest.skip("shipped tuning records are missing")
    root = tmp_path_factory.mktemp("runs")
    out = []
    for path in paths:
        target = root / path.name
        target.mkdir()
        shutil.copy(path / WORKLOAD_FILE, target / WORKLOAD_FILE)
        lines = (path / RECORD_FILE).read_text().splitlines(keepends=True)[:24]
        (target / RECORD_FILE).write_text("".join(lines))
        out.append(target)
    return out


def invoke(*args: str):
    return CliRunner().invoke(cli, ["adapt", *args])


def test_adapt_borrows_the_nearest_shipped_weights_and_records_what_it_did(tmp_path, work_dirs):
    out = tmp_path / "skylake.pt"
    result = invoke(*map(str, work_dirs), "--target", SKYLAKE, "--steps", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "shipped for another CPU" in result.output and "4 tasks, 96 records" in result.output
    checkpoint = load_checkpoint(out)
    assert checkpoint.target["mcpu"] == "skylake-avx512"
    meta = checkpoint.meta
    assert meta["method"] == "adapt" and meta["recipe"]["steps"] == 3
    assert meta["init"] == str(nearest_weights({"kind": "llvm", "mcpu": "skylake-avx512"})[0])
    assert meta["init_target"]["mcpu"] != "skylake-avx512"
    assert meta["data"]["records"] == 96 and meta["data"]["tasks"] == 4
    assert meta["data"]["sources"] == [str(p) for p in work_dirs]
    assert meta["adapt"] == {"steps": 20, "lr": 1e-3} and meta["command"].startswith("ms-meta")
    # the starting weights moved, and the written file is not the starting one
    start = load_checkpoint(meta["init"]).state_dict
    assert any(not np.allclose(start[k], v) for k, v in checkpoint.state_dict.items())


def test_adapt_reports_held_out_figures_before_and_after(tmp_path):
    paths = [str(RECORDS / name) for name in TASKS]
    out = tmp_path / "w.pt"
    result = invoke(*paths, "--report", "--report-fraction", "0.3", "--ks", "0,8",
                    "--steps", "3", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "shipped for this CPU" in result.output  # rocketlake records: its own weights
    assert "held out: 3 of 6 tasks" in result.output
    assert "before" in result.output and "after" in result.output and "pairwise" in result.output
    report = load_checkpoint(out).meta["report"]
    assert len(report["held_out_tasks"]) == 3
    assert set(report["before"]) == {"0", "8"} and 0 <= report["after"]["8"]["pairwise"] <= 1
    # the written weights are trained on every task, the held-out ones included
    assert sorted(load_checkpoint(out).meta["data"]["train_tasks"]) == sorted(TASKS)


def test_adapt_takes_the_targets_records_from_the_record_store(tmp_path, work_dirs):
    from ms_meta.store import SqlStore, import_json_databases, scan_json_databases

    store = tmp_path / "records.sqlite"
    with SqlStore(store) as sql:
        import_json_databases(sql, scan_json_databases(work_dirs[:2]))
    out = tmp_path / "w.pt"
    result = invoke("--from-store", str(store), "--target", ROCKETLAKE, "--steps", "2",
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "record store: 2 tasks of llvm-rocketlake-2c" in result.output
    assert load_checkpoint(out).meta["data"]["records"] == 48
    # another CPU's records are not in the store: a clear error, no empty weights
    result = invoke("--from-store", str(store), "--target", SKYLAKE, "--out", str(out))
    assert result.exit_code == 1 and "holds no records of llvm-skylake-avx512-2c" in result.output


def test_adapt_bad_input_gets_one_line_errors(tmp_path, work_dirs):
    out = str(tmp_path / "w.pt")
    cases = [
        ([], 2, "give record directories (RECORDS) or --from-store"),
        ([str(tmp_path / "missing")], 1, "missing"),
        (["--from-store", str(tmp_path / "none.sqlite")], 1, "does not exist"),
        ([str(work_dirs[0]), "--ks", "0,x"], 2, "integers like 0,8"),
        ([str(RECORDS / TASKS[0]), "--target", SKYLAKE], 2, "measured on rocketlake"),
        ([str(work_dirs[0]), "--target", '{"kind": "cuda"}'], 1, "cuda"),
        ([str(work_dirs[0]), "--report", "--target", SKYLAKE], 1, "too few tasks"),
    ]
    for args, code, text in cases:
        result = invoke(*args, "--out", out)
        assert result.exit_code == code, (args, result.output)
        assert text in result.output, (args, result.output)
        assert "Traceback" not in result.output
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not weights")
    result = invoke(str(work_dirs[0]), "--target", SKYLAKE, "--init", str(corrupt), "--out", out)
    assert result.exit_code == 1 and "not a readable ms-meta weights file" in result.output
    result = invoke(str(work_dirs[0]), "--target", SKYLAKE, "--init", str(corrupt),
                    "--out", str(corrupt))  # fmt: skip
    assert result.exit_code == 2 and "is the starting weights file" in result.output
    assert corrupt.read_bytes() == b"not weights"
    assert not Path(out).exists()


def test_nearest_weights_prefer_the_same_cpu_then_the_same_mcpu():
    own, exact = nearest_weights({"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2})
    assert exact and own == DEFAULT_WEIGHTS_DIR / "llvm-rocketlake.pt"
    zen4, exact = nearest_weights({"kind": "llvm", "mcpu": "znver4", "num-cores": 8})
    assert not exact and zen4.name == "llvm-znver4-noavx512.pt"


def test_sampled_records_spread_over_tasks_with_labels_of_the_sample(work_dirs):
    from ms_meta.data.dataset import build_dataset

    tasks = build_dataset(work_dirs).tasks
    sample = sample_records(tasks, 20, per_task=8, seed=3)
    assert [len(t) for t in sample] == [8, 8, 4]
    assert len({t.name for t in sample}) == 3
    for task in sample:  # the fastest sampled record is the best the user knows of
        assert np.isclose(task.labels.max(), 1.0) or not np.isfinite(task.latencies).any()
    again = sample_records(tasks, 20, per_task=8, seed=3)
    assert [t.lines.tolist() for t in again] == [t.lines.tolist() for t in sample]
