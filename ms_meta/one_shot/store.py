"""Where one-shot runs store their records, and the summary that describes them.

A run in ``work_dir`` writes:

``database_workload.predicted.json``, ``database_tuning_record.predicted.json``
    A MetaSchedule ``JSONDatabase`` of the chosen schedules, one per task, whose run time is
    :data:`~ms_meta.one_shot.settings.PREDICTED_RUN_SECS`: predictions, not measurements. The
    names differ from MetaSchedule's standard ones on purpose, so that nothing that reads tuning
    records (``ms-meta db``, the data set) takes them for measurements. A new run replaces them.
``database_workload.json``, ``database_tuning_record.json``
    Only with ``verify``: the real measurements of the verified finalists, in the standard
    format (appended, like any MetaSchedule database).
``one_shot_summary.json``
    Per task: scores, ranks, timings, and whether the chosen record is measured; plus the
    model weights, target and search settings of the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tvm.s_tir import meta_schedule as ms

from ms_meta.atomic import atomic_write_text
from ms_meta.data.layout import RECORD_FILE, WORKLOAD_FILE
from ms_meta.errors import MsMetaError

__all__ = [
    "MEASURED_RECORD_FILE",
    "MEASURED_WORKLOAD_FILE",
    "PREDICTED_RECORD_FILE",
    "PREDICTED_WORKLOAD_FILE",
    "SUMMARY_FILE",
    "SUMMARY_FORMAT",
    "SUMMARY_FORMAT_VERSION",
    "fresh_predicted_database",
    "measured_database",
    "predicted_database",
    "read_summary",
    "write_summary",
]

PREDICTED_WORKLOAD_FILE = "database_workload.predicted.json"
PREDICTED_RECORD_FILE = "database_tuning_record.predicted.json"
MEASURED_WORKLOAD_FILE = WORKLOAD_FILE  # MetaSchedule's standard names
MEASURED_RECORD_FILE = RECORD_FILE
SUMMARY_FILE = "one_shot_summary.json"
SUMMARY_FORMAT = "ms-meta-one-shot"
SUMMARY_FORMAT_VERSION = 1


def fresh_predicted_database(work_dir: Path) -> ms.database.JSONDatabase:
    """An empty predicted-records database in ``work_dir`` (a previous run's is replaced)."""
    for name in (PREDICTED_WORKLOAD_FILE, PREDICTED_RECORD_FILE):
        (work_dir / name).unlink(missing_ok=True)
    return predicted_database(work_dir)


def predicted_database(work_dir: str | os.PathLike) -> ms.database.JSONDatabase:
    """The predicted records of the last one-shot run in ``work_dir``."""
    work_dir = Path(work_dir)
    return ms.database.JSONDatabase(
        path_workload=str(work_dir / PREDICTED_WORKLOAD_FILE),
        path_tuning_record=str(work_dir / PREDICTED_RECORD_FILE),
    )


def measured_database(work_dir: str | os.PathLike) -> ms.database.JSONDatabase:
    """MetaSchedule's standard database in ``work_dir`` (real measurements only)."""
    return ms.database.JSONDatabase(work_dir=str(work_dir))


def write_summary(work_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``one_shot_summary.json`` atomically."""
    document = {"format": SUMMARY_FORMAT, "format_version": SUMMARY_FORMAT_VERSION, **summary}
    return atomic_write_text(work_dir / SUMMARY_FILE, json.dumps(document, indent=2) + "\n")


def read_summary(work_dir: str | os.PathLike) -> dict[str, Any]:
    """The summary of the last one-shot run in ``work_dir``."""
    path = Path(work_dir) / SUMMARY_FILE
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise MsMetaError(f"{path} does not exist: no one-shot run in {work_dir}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise MsMetaError(f"{path} is not readable JSON ({err})") from None
    if not isinstance(document, dict) or document.get("format") != SUMMARY_FORMAT:
        raise MsMetaError(f"{path} is not an ms-meta one-shot summary")
    return document
