"""One-shot tuning: kernels tuned by the pre-trained cost model with no hardware measurement.

Modules: :mod:`~ms_meta.one_shot.tir` (PrimFuncs) and :mod:`~ms_meta.one_shot.relax` (Relax
models) are the front ends; :mod:`~ms_meta.one_shot.run` the run they share;
:mod:`~ms_meta.one_shot.search` the per-task search; :mod:`~ms_meta.one_shot.library` the schedule
library; :mod:`~ms_meta.one_shot.store` the files a run writes.
"""

from ms_meta.one_shot.library import (
    LibraryError,
    ScheduleLibrary,
    build_library,
    load_library,
)
from ms_meta.one_shot.relax import (
    compile_relax,
    prepare_for_inference,
    prepare_relax,
    relax_tasks,
    run_relax,
    tune_relax,
)
from ms_meta.one_shot.result import (
    CONFIDENCE_LABELS,
    Measurement,
    OneShotResult,
    TaskConfidence,
    TaskOutcome,
)
from ms_meta.one_shot.run import (
    MODEL_WARNING_ATTR,
    DynamicShapeError,
    NothingToTuneError,
    OneShotError,
    other_cpu_warning,
    untrained_warning,
)
from ms_meta.one_shot.search import TaskSearch, library_search, search_task
from ms_meta.one_shot.settings import PREDICTED_RUN_SECS, SearchSettings
from ms_meta.one_shot.store import (
    PREDICTED_RECORD_FILE,
    PREDICTED_WORKLOAD_FILE,
    SUMMARY_FILE,
    predicted_database,
    read_summary,
)
from ms_meta.one_shot.tir import run_tir, tune_tir

__all__ = [
    "CONFIDENCE_LABELS",
    "MODEL_WARNING_ATTR",
    "PREDICTED_RECORD_FILE",
    "PREDICTED_RUN_SECS",
    "PREDICTED_WORKLOAD_FILE",
    "SUMMARY_FILE",
    "DynamicShapeError",
    "LibraryError",
    "Measurement",
    "NothingToTuneError",
    "OneShotError",
    "OneShotResult",
    "ScheduleLibrary",
    "SearchSettings",
    "TaskConfidence",
    "TaskOutcome",
    "TaskSearch",
    "build_library",
    "compile_relax",
    "library_search",
    "load_library",
    "other_cpu_warning",
    "predicted_database",
    "prepare_for_inference",
    "prepare_relax",
    "read_summary",
    "relax_tasks",
    "run_relax",
    "run_tir",
    "search_task",
    "tune_relax",
    "tune_tir",
    "untrained_warning",
]
