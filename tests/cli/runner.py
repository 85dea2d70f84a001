"""The ``ms-meta`` command as the CLI tests run it: in-process (click's runner, fast) or as a
real process (signals, locks held by other processes, the installed entry point), and the
one-line error every bad input must get, checked the same way for both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from ms_meta.cli.main import cli
from tests.conftest import SEED_RECORDS

__all__ = [
    "REPO",
    "assert_one_line_error",
    "copy_seed",
    "invoke",
    "ms_meta",
    "ms_meta_command",
]

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str | Path) -> Result:
    """Run ``ms-meta ARGS`` in this process; a clean exit or a one-line ``ClickException``,
    never an unexpected Python exception or a traceback."""
    result = CliRunner().invoke(cli, [*map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def ms_meta_command(*args: str | Path) -> list[str]:
    """The argument list of ``python -m ms_meta ARGS`` (for ``subprocess.Popen``)."""
    return [sys.executable, "-m", "ms_meta", *map(str, args)]


def ms_meta(
    *args: str | Path, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m ms_meta ARGS`` to completion in its own process (this checkout first on
    the path, whatever ``cwd``); stdout and stderr as text."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        ms_meta_command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess | Result, *needles: str) -> str:
    """A non-zero exit with one ``Error:`` line on stderr holding ``needles``, no traceback;
    the line. ``result`` is a finished process (:func:`ms_meta`) or click's (:func:`invoke`)."""
    finished = isinstance(result, subprocess.CompletedProcess)
    code = result.returncode if finished else result.exit_code
    assert code != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def copy_seed(dest_root: Path, task: str = "mm_512", name: str | None = None) -> Path:
    """A copy of the seed records' ``task`` database at ``dest_root/name`` (default: the task's
    name), for a command that may write to it."""
    dest = dest_root / (name or task)
    shutil.copytree(SEED_RECORDS / task, dest)
    return dest
