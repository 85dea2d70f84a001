"""The end-to-end benchmark on the registry's small conv net: real worker processes, real TVM
and torch (the full networks take minutes to compile)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ms_meta.bench.e2e import (
    NumericsError,
    parse_contenders,
    run_model_benchmark,
    run_worker,
    worker_env,
)
from ms_meta.bench.e2e_report import fastest_anchor, format_table, round_ratios, summarize
from ms_meta.bench.e2e_worker import read_reference
from ms_meta.cli.main import cli
from ms_meta.errors import MsMetaError
from ms_meta.networks import UnknownModelError

NETWORK = "small-convnet"


def hide_package(monkeypatch, hidden: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == hidden else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """untuned TVM and eager torch, two rounds of three runs; ONNX Runtime hidden."""
    out = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as monkeypatch:
        hide_package(monkeypatch, "onnxruntime")
        result = run_model_benchmark(
            NETWORK, out_dir=out, contenders="untuned,torch,onnxruntime", runs=3, warmup=1,
            rounds=2, threads=2, reruns=0, progress=False,
        )  # fmt: skip
    return out, result


def test_each_contender_is_timed_in_fresh_processes_with_checked_outputs(small_run):
    out, result = small_run
    assert json.loads((out / f"{NETWORK}.json").read_text()) == result
    assert (out / f"{NETWORK}.txt").read_text().strip() == format_table(result)
    assert (out / f"{NETWORK}.png").read_bytes().startswith(b"\x89PNG")
    pids = set()
    for name in ("untuned", "torch"):
        entry = result["contenders"][name]
        assert entry["latency"]["runs"] == len(entry["samples_ms"]) == 6  # 2 rounds of 3 runs
        assert [r["round"] for r in entry["rounds"]] == [1, 2]
        pids |= {r["pid"] for r in entry["rounds"]}
        assert entry["numerics_ok"] and entry["max_abs_diff"] <= entry["numerics_tolerance"]
        assert set(entry["thread_env"].values()) == {"2"}
        lat = entry["latency"]
        assert 0 < lat["min_ms"] <= lat["p10_ms"] <= lat["median_ms"] <= lat["p90_ms"]
    assert len(pids) == 4 and os.getpid() not in pids  # one process per contender and round
    assert result["contenders"]["torch"]["torch_threads"] == 2
    assert result["contenders"]["untuned"]["compile_seconds"] > 0
    assert result["fastest_anchor"] == "torch"
    assert result["contenders"]["torch"]["ratio_to_fastest_anchor"]["median"] == 1.0
    assert len(result["contenders"]["untuned"]["ratio_to_fastest_anchor"]["per_round"]) == 2
    assert result["versions"]["tvm"] and result["versions"]["torch"]
    assert result["machine"]["llvm_cpu"] and result["target"]["num-cores"] == 2
    assert result["numerics_failures"] == []


def test_a_missing_optional_package_skips_its_contender(small_run):
    _, result = small_run
    skipped = result["contenders"]["onnxruntime"]
    assert "onnxruntime not installed" in skipped["skipped"] and "latency" not in skipped
    assert "onnxruntime" in format_table(result) and "skipped" in format_table(result)


def test_timing_process_flags_outputs_that_differ_from_the_reference(small_run, tmp_path):
    out, _ = small_run
    work = out / f"{NETWORK}-work"
    inputs, outputs = read_reference(work / "reference.npz")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, input_0=inputs[0], output_0=outputs[0] + 1.0)
    timed = run_worker(
        "time",
        ["--network", NETWORK, "--threads", "1", "--contender", "torch", "--work-dir",
         str(work / "torch"), "--reference", str(wrong), "--warmup", "1", "--runs", "1"],
        result_path=tmp_path / "time.json", log_path=tmp_path / "time.log",
        env=worker_env(1, tmp_path), say=lambda _m: None,
    )  # fmt: skip
    assert not timed["numerics_ok"]
    assert timed["max_abs_diff"] == pytest.approx(1.0, abs=1e-3)
    assert timed["max_abs_diff"] > timed["tolerance"]


@pytest.mark.slow
def test_wrong_outputs_are_written_flagged_and_raised(tmp_path):
    # rtol 0: any rounding difference from eager torch counts as wrong; torch itself stays exact
    with pytest.raises(NumericsError, match="onnxruntime") as info:
        run_model_benchmark(NETWORK, out_dir=tmp_path, contenders="torch,onnxruntime", runs=2,
                            warmup=1, rounds=2, rtol=0.0, reruns=0, progress=False)  # fmt: skip
    written = json.loads((tmp_path / f"{NETWORK}.json").read_text())
    assert written == info.value.result
    assert written["numerics_failures"] == ["onnxruntime"]
    wrong = written["contenders"]["onnxruntime"]
    assert len(wrong["rounds"]) == 1  # not timed again once its outputs were wrong
    assert "WRONG OUTPUT" in format_table(written)
    assert written["fastest_anchor"] == "torch"


def test_ratios_are_per_round_and_skip_rounds_without_both():
    medians = {"tvm": [3.0, 6.0, None, 4.0], "onnxruntime": [1.0, 2.0, 1.0, None]}
    ratios = round_ratios(medians, "onnxruntime")
    assert ratios["tvm"] == {"median": 3.0, "min": 3.0, "max": 3.0, "per_round": [3.0, 3.0]}
    assert ratios["onnxruntime"]["per_round"] == [1.0, 1.0, 1.0]
    contenders = {
        "torch": {"numerics_ok": True, "latency": {"runs": 3, "median_ms": 5.0}},
        "onnxruntime": {"numerics_ok": False, "latency": {"runs": 3, "median_ms": 1.0}},
        "torch-compile": {"numerics_ok": True, "latency": {"runs": 3, "median_ms": 4.0}},
        "one-shot": {"numerics_ok": True, "latency": {"runs": 3, "median_ms": 0.5}},
    }
    # a wrong anchor is no reference, and TVM contenders are not anchors
    assert fastest_anchor(contenders, ("torch", "torch-compile", "onnxruntime")) == "torch-compile"
    summary = summarize([0.001 * v for v in range(1, 11)])
    assert summary["median_ms"] == pytest.approx(5.5)
    assert summary["p10_ms"] == pytest.approx(1.9) and summary["p90_ms"] == pytest.approx(9.1)
    assert (summary["min_ms"], summary["max_ms"], summary["runs"]) == (1.0, 10.0, 10)


def test_table_counts_one_shot_tasks_by_confidence(small_run):
    _, result = small_run
    one_shot = {
        **result["contenders"]["untuned"],
        "tasks": 5, "tasks_from_library": 3, "measurements": 0, "measurements_per_task": 0.0,
        "confidence": {"exact": 2, "near": 1, "moderate": 0, "far": 0, "none": 2},
    }  # fmt: skip
    table = format_table({**result, "contenders": {**result["contenders"], "one-shot": one_shot}})
    assert "one-shot: 3 of 5 tasks from the schedule library" in table
    assert "confidence: exact 2, near 1, none 2" in table


def test_bad_arguments_are_clear_errors_before_anything_runs(tmp_path):
    with pytest.raises(UnknownModelError, match="choose one of"):
        run_model_benchmark("alexnet", out_dir=tmp_path)
    with pytest.raises(MsMetaError, match="choose from one-shot"):
        run_model_benchmark(NETWORK, out_dir=tmp_path, contenders="tvm")
    with pytest.raises(MsMetaError, match=">= 1"):
        run_model_benchmark(NETWORK, out_dir=tmp_path, runs=0)
    with pytest.raises(MsMetaError, match="no MetaSchedule tuning database"):
        run_model_benchmark(NETWORK, out_dir=tmp_path, xgb_database=tmp_path)
    with pytest.raises(MsMetaError, match="JSON target"):
        run_model_benchmark(NETWORK, out_dir=tmp_path, target="llvm -mcpu=x")
    assert not list(tmp_path.iterdir())
    assert "xgb" not in parse_contenders(None) and "untuned" not in parse_contenders(None)
    assert "xgb" in parse_contenders(None, xgb_database=Path("db"))


def test_cli_model_benchmark_prints_the_table(tmp_path):
    result = CliRunner().invoke(cli, [
        "bench", "--model", NETWORK, "--contenders", "torch", "--rounds", "1", "--runs", "2",
        "--warmup", "1", "--threads", "1", "--reruns", "0", "--work-dir", str(tmp_path),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "median ms" in result.output
    assert json.loads((tmp_path / f"{NETWORK}.json").read_text())["threads"] == 1


@pytest.mark.slow
def test_xgb_tunes_then_a_later_run_compiles_from_its_database(tmp_path):
    first = run_model_benchmark(
        NETWORK, out_dir=tmp_path / "tune", contenders="xgb", runs=2, warmup=1, rounds=1,
        xgb_trials_per_task=2, reruns=0, progress=False,
    )["contenders"]["xgb"]  # fmt: skip
    assert first["numerics_ok"] and first["trials_per_task"] == 2
    assert 0 < first["trials"] <= 3 * first["tasks"]  # a search batch may overshoot a little
    assert first["tuning_seconds"] > 0 and first["compile_seconds"] >= first["tuning_seconds"]
    again = run_model_benchmark(
        NETWORK, out_dir=tmp_path / "again", runs=2, warmup=1, rounds=1, contenders="xgb",
        xgb_database=Path(first["database"]), reruns=0, progress=False,
    )["contenders"]["xgb"]  # fmt: skip
    assert again["reused_database"] == first["database"] and again["compile_seconds"] is None
    assert again["numerics_ok"] and again["trials"] == first["trials"]


@pytest.mark.slow
def test_timing_disturbed_by_other_processes_is_run_again(small_run, tmp_path):
    from ms_meta.bench.e2e import _time_guarded

    out, _ = small_run
    work = out / f"{NETWORK}-work"
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        timed = _time_guarded(
            ["--network", NETWORK, "--threads", "1", "--contender", "torch", "--work-dir",
             str(tmp_path), "--reference", str(work / "reference.npz"), "--warmup", "1",
             "--runs", "500"],
            tmp_path, 1, 1, worker_env(1, tmp_path), lambda _m: None,
        )  # fmt: skip
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert timed["numerics_ok"] and timed["reruns"] == 1
    assert timed["foreign_cores"] > 0.25  # both runs were disturbed; the lesser one is kept


def _may_use_fifo() -> bool:
    from ms_meta.tuning.measure import RealtimeUnavailableError, check_realtime

    try:
        check_realtime()
    except RealtimeUnavailableError:
        return False
    return True


@pytest.mark.skipif(not _may_use_fifo(), reason="this process may not use SCHED_FIFO")
def test_a_realtime_timing_process_runs_sched_fifo_with_checked_outputs(small_run, tmp_path):
    out, _ = small_run
    work = out / f"{NETWORK}-work"
    args = ["--network", NETWORK, "--threads", "2", "--contender", "untuned", "--work-dir",
            str(work / "untuned"), "--reference", str(work / "reference.npz"), "--warmup", "1",
            "--runs", "2"]  # fmt: skip
    env = worker_env(2, tmp_path)
    for flags, expected in (([], False), (["--realtime"], True)):
        timed = run_worker(
            "time",
            [*args, *flags],
            result_path=tmp_path / "time.json",
            log_path=tmp_path / "time.log",
            env=env,
            say=lambda _m: None,
        )
        assert timed["realtime"] is expected
        assert timed["numerics_ok"] and len(timed["samples_s"]) == 2


def test_workers_run_with_the_same_threads_and_without_the_record_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MS_META_STORE", str(tmp_path / "mine.sqlite"))
    env = worker_env(3, tmp_path)
    assert env["MS_META_STORE"] == "none"  # One-Shot serves from the shipped library alone
    assert env["OMP_NUM_THREADS"] == env["TVM_NUM_THREADS"] == "3"
