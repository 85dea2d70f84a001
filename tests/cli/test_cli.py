"""The ms-meta command line: help texts, bad input, and a real short tuning run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from ms_meta.cli.main import cli


@pytest.mark.parametrize("args", [[], ["tune"], ["collect"], ["db"], ["workloads"], ["bench"]])
def test_help(args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_python_dash_m_works():
    out = subprocess.run(
        [sys.executable, "-m", "ms_meta", "--help"], capture_output=True, text=True, check=True
    )
    assert "ms-meta" in out.stdout


def test_bad_spec_is_a_clear_error():
    result = CliRunner().invoke(cli, ["tune", "conv2d_nchw:1,64,56"])
    assert result.exit_code == 1
    assert "expected 9 fields conv2d_nchw:N,C,H,W,K,R,S,stride,pad" in result.output
    assert "Traceback" not in result.output


def test_bad_target_is_a_clear_error():
    result = CliRunner().invoke(cli, ["tune", "dense:8,8,8", "--target", "llvm -mcpu=x"])
    assert result.exit_code == 1
    assert "--target must be a JSON target dict" in result.output


def test_tune_prints_latency(tmp_path):
    result = CliRunner().invoke(
        cli,
        ["tune", "dense:32,32,32", "--trials", "4", "--trials-per-iter", "4",
         "--cost-model", "meta-online", "--work-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dense:32,32,32: best" in result.output and " us (" in result.output
    assert (tmp_path / "database_tuning_record.json").exists()
