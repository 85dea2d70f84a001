"""The throughput benchmark (``ms-meta bench``) on a small real design space."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ms_meta.bench.overhead import CpuStealMeter, measure_throughput
from ms_meta.cli.main import cli

SMALL = "dense:16,32,32"


def test_throughput_figures_are_positive_rates(target):
    result = measure_throughput(SMALL, 32, target)
    assert result.workload == SMALL and result.candidates == 32
    for rate in (
        result.graph_extract_per_s,
        result.meta_predict_per_s,
        result.per_store_extract_per_s,
        result.xgb_predict_per_s,
    ):
        assert rate > 0
    # Prediction includes extraction: it cannot be faster than extraction alone by much
    # (both are best-of-3 on the same candidates; allow timer noise).
    assert result.meta_predict_per_s < 1.5 * result.graph_extract_per_s


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
    report = json.loads(out.read_text())
    assert report["throughput"]["candidates"] == 32
    assert report["throughput"]["meta_predict_per_s"] > 0
    assert report["tuning"] == []
