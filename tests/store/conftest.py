"""Helpers for the record-store tests: real seed records as text, and synthetic variants."""

from __future__ import annotations

from pathlib import Path

from ms_meta.store.msjson import RecordText, join_record_line, split_record_line
from tests.conftest import SEED_RECORDS

MM_512 = SEED_RECORDS / "mm_512"
ROCKETLAKE_KEY = "llvm|rocketlake||2"


def seed_lines(task: str = "mm_512") -> list[str]:
    """The record lines of a committed seed database."""
    return (SEED_RECORDS / task / "database_tuning_record.json").read_text().splitlines()


def seed_records(task: str = "mm_512") -> list[RecordText]:
    return [split_record_line(line)[1] for line in seed_lines(task)]


def with_decisions(record: RecordText, n: int) -> RecordText:
    """A distinct trace: the same instructions with the decision list tagged by ``n``."""
    line = join_record_line(0, record)
    marker = record.decisions
    changed = line.replace(f",{marker}]", f",{marker[:-1]},[99,{n}]]]", 1)
    return split_record_line(changed)[1]


def write_database(directory: Path, workload_line: str, lines: list[str]) -> Path:
    """A MetaSchedule JSON database directory with the given lines."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "database_workload.json").write_text(workload_line + "\n")
    (directory / "database_tuning_record.json").write_text("".join(f"{x}\n" for x in lines))
    return directory
