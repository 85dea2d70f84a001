"""The throughput benchmark (``ms-meta bench``) on a small real design space."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from ms_meta.bench.overhead import THROUGHPUT_ROWS, CpuStealMeter, _rate, measure_throughput
from ms_meta.cli.main import cli

SMALL = "dense:16,32,32"


def test_every_model_gets_the_same_warmup_and_repeats(target):
    result = measure_throughput(SMALL, 32, target, repeats=2, warmup=1)
    assert result.workload == SMALL and result.candidates == 32
    rates = [getattr(result, field) for field, _ in THROUGHPUT_ROWS]
    assert [(r.repeats, r.warmup) for r in rates] == [(2, 1)] * 4
    for rate in rates:
        # the best of the repeats is at least their median
        assert 0 < rate.median_per_s <= rate.best_per_s
    # Prediction includes extraction: it cannot be faster than extraction alone by much
    # (same repeats on the same candidates; allow timer noise).
    assert result.meta_predict.best_per_s < 1.5 * result.graph_extract.best_per_s
    assert result.speedup("best") == pytest.approx(
        result.meta_predict.best_per_s / result.xgb_predict.best_per_s
    )


def test_rate_warms_up_untimed_then_times_each_repeat():
    calls = []
    rate = _rate(lambda: calls.append(time.sleep(0.01)), 10, repeats=3, warmup=2)
    assert len(calls) == 5
    assert (rate.repeats, rate.warmup) == (3, 2)
    # 10 items per call of at least 10 ms
    assert rate.median_per_s <= rate.best_per_s <= 1000


def test_steal_meter_reads_a_fraction():
    with CpuStealMeter() as meter:
        sum(i * i for i in range(300_000))  # some CPU time, so that the counters move
    assert meter.fraction is None or 0.0 <= meter.fraction <= 1.0


def test_bench_cli_prints_and_writes_throughput(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--workload", SMALL, "--candidates", "32", "--trials", "0", "--json", out]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "MetaCostModel.predict (extract + GNN)" in result.output
    assert "median" in result.output and "load average" in result.output
    report = json.loads(out.read_text())
    assert report["throughput"]["candidates"] == 32
    for field, _ in THROUGHPUT_ROWS:
        rate = report["throughput"][field]
        assert rate["repeats"] == 3 and rate["warmup"] == 1
        assert 0 < rate["median_per_s"] <= rate["best_per_s"]
    assert report["tuning"] == []
