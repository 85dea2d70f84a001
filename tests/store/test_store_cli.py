"""``ms-meta store``: import, export, stats and gc from the command line, one-line errors."""

from __future__ import annotations

from click.testing import CliRunner

from ms_meta.cli.main import cli
from tests.conftest import SEED_RECORDS


def _run(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_import_then_stats_then_export_then_gc(tmp_path):
    store = str(tmp_path / "s.sqlite")
    result = _run("store", "import", str(SEED_RECORDS), "--store", store)
    assert result.exit_code == 0, result.output
    assert "204 added" in result.output
    stats = _run("store", "stats", store)
    assert "records    204 (203 valid" in stats.output
    assert "llvm-rocketlake-2c" in stats.output and "12 workloads" in stats.output
    out = tmp_path / "out"
    assert _run("store", "export", store, "--out", str(out)).exit_code == 0
    assert len(list(out.glob("*/*/database_tuning_record.json"))) == 12
    gc = _run("store", "gc", store, "--drop-failed")
    assert gc.exit_code == 0 and gc.output.startswith("1 records deleted")


def test_default_store_lives_in_the_cache_dir(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "MS_META_STORE": ""}
    assert _run("store", "import", str(SEED_RECORDS / "mm_1024"), env=env).exit_code == 0
    assert (tmp_path / "ms-meta" / "records.sqlite").is_file()
    assert "records    4 " in _run("store", "stats", env=env).output


def test_errors_are_one_line_with_a_non_zero_exit(tmp_path):
    store = str(tmp_path / "s.sqlite")
    cases = [
        ("store", "import", str(tmp_path / "missing"), "--store", store),
        ("store", "stats", str(tmp_path / "absent.sqlite")),
        ("store", "export", str(tmp_path / "absent.sqlite"), "--out", str(tmp_path / "o")),
        ("store", "gc", str(tmp_path / "absent.sqlite")),
    ]
    bad = tmp_path / "bad.sqlite"
    bad.write_text("plain text, not SQLite\n" * 50)
    cases.append(("store", "stats", str(bad)))
    for args in cases:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code != 0, args
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), (args, result.output)
        assert "Traceback" not in result.output


def test_export_refuses_existing_files_from_the_cli(tmp_path):
    store = str(tmp_path / "s.sqlite")
    _run("store", "import", str(SEED_RECORDS / "mm_1024"), "--store", store)
    out = str(tmp_path / "out")
    assert _run("store", "export", store, "--out", out).exit_code == 0
    again = CliRunner().invoke(cli, ["store", "export", store, "--out", out])
    assert again.exit_code == 1 and "exists" in again.output
