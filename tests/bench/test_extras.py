"""The benchmark harness's optional extra: the core package and its CLI work without
matplotlib and the ONNX packages, and the online benchmark skips its figure with a note."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ms_meta.bench.extras import (
    ANCHOR_MODULES,
    BENCH_EXTRA,
    PLOT_MODULES,
    missing_modules,
    skipped_note,
)
from ms_meta.cli.main import cli
from ms_meta.errors import MsMetaError

RECORDED = Path(__file__).parent / "data" / "online_smoke.json"

# Imports every module of the package and runs the CLI's help with the bench extra's modules
# made unimportable, as on an installation without the extra.
WITHOUT_EXTRA = """
import importlib, pkgutil, sys

BLOCKED = {blocked!r}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
import ms_meta

for info in pkgutil.walk_packages(ms_meta.__path__, "ms_meta."):
    importlib.import_module(info.name)
from ms_meta.bench.extras import PLOT_MODULES, skipped_note

assert skipped_note("plot", PLOT_MODULES) is not None
from ms_meta.cli.main import cli

for args in (["--help"], ["bench", "--help"]):
    try:
        cli(args, standalone_mode=False)
    except SystemExit as exit:
        assert not exit.code, exit.code
blocked = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
assert not blocked, blocked
print("core ok")
"""


def test_core_imports_and_cli_runs_without_the_bench_extra():
    blocked = {*PLOT_MODULES, *ANCHOR_MODULES}
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA.format(blocked=blocked)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "core ok" in proc.stdout


def test_missing_modules_names_only_what_is_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert missing_modules(["json", "matplotlib", "no_such_module_here"]) == [
        "matplotlib",
        "no_such_module_here",
    ]
    note = skipped_note("plot", ["matplotlib"])
    assert note == f"plot skipped: matplotlib is not installed ({BENCH_EXTRA})"
    assert skipped_note("plot", ["json"]) is None


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    from ms_meta.bench.plots import plot_convergence

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MsMetaError, match=r"plot skipped: matplotlib is not installed"):
        plot_convergence(json.loads(RECORDED.read_text()), tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_online_cli_skips_the_plot_with_a_note_without_matplotlib(monkeypatch, tmp_path):
    recorded = json.loads(RECORDED.read_text())
    # the recorded result of a real run stands in for hours of tuning
    monkeypatch.setattr(
        "ms_meta.bench.online.run_online_benchmark", lambda *args, **kwargs: recorded
    )
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    args = ["bench", "--online", "--tasks", "dense_128_3072_768", "--budgets", "8,16",
            "--xgb-budget", "32", "--work-dir", str(tmp_path),
            "--json", str(tmp_path / "r.json")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"plot skipped: matplotlib is not installed ({BENCH_EXTRA})" in result.output
    assert not (tmp_path / "convergence.png").exists()
    assert json.loads((tmp_path / "r.json").read_text()) == recorded
