"""One-shot tuning: kernels tuned by the pre-trained cost model with no hardware measurement."""

from ms_meta.one_shot.library import (
    LibraryError,
    ScheduleLibrary,
    build_library,
    load_library,
)
from ms_meta.one_shot.result import Measurement, OneShotResult, TaskOutcome
from ms_meta.one_shot.search import TaskSearch, library_search, search_task
from ms_meta.one_shot.settings import PREDICTED_RUN_SECS, SearchSettings
from ms_meta.one_shot.store import (
    PREDICTED_RECORD_FILE,
    PREDICTED_WORKLOAD_FILE,
    SUMMARY_FILE,
    predicted_database,
    read_summary,
)
from ms_meta.one_shot.tune import (
    NothingToTuneError,
    OneShotError,
    run_relax,
    run_tir,
    tune_relax,
    tune_tir,
)

__all__ = [
    "PREDICTED_RECORD_FILE",
    "PREDICTED_RUN_SECS",
    "PREDICTED_WORKLOAD_FILE",
    "SUMMARY_FILE",
    "LibraryError",
    "Measurement",
    "NothingToTuneError",
    "OneShotError",
    "OneShotResult",
    "ScheduleLibrary",
    "SearchSettings",
    "TaskOutcome",
    "TaskSearch",
    "build_library",
    "library_search",
    "load_library",
    "predicted_database",
    "read_summary",
    "run_relax",
    "run_tir",
    "search_task",
    "tune_relax",
    "tune_tir",
]
