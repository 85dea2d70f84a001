"""Tuning records on disk and the training data made from them.

Reading MetaSchedule JSON databases robustly (:mod:`~ms_meta.data.records`), the ``db`` tools
(:mod:`~ms_meta.data.db_check`, :mod:`~ms_meta.data.merge`, :mod:`~ms_meta.data.split`),
collecting new records (:mod:`~ms_meta.data.collect`) and featurizing them into a data set
(:mod:`~ms_meta.data.dataset`). File names and the records tree's layout come from
:mod:`~ms_meta.data.layout` alone.

The names below are imported on first use, so that ``import ms_meta.data.layout`` (or the
records reader) stays free of TVM, torch and the feature encoder.
"""

from __future__ import annotations

from ms_meta.lazy import lazy_exports

# public name -> the module that defines it
_EXPORTS = {
    "DatabaseFiles": "layout",
    "FolderScan": "layout",
    "UnreadableFolder": "layout",
    "scan_record_folders": "layout",
    "LoadedDatabase": "records",
    "Record": "records",
    "RecordSet": "records",
    "SkipReport": "records",
    "SkippedLine": "records",
    "WorkloadGroup": "records",
    "canonical_json": "records",
    "iter_tuning_records": "records",
    "load_database": "records",
    "load_databases": "records",
    "load_files": "records",
    "DatabaseReport": "db_check",
    "check_database": "db_check",
    "database_stats": "db_check",
    "stats": "db_check",
    "validate": "db_check",
    "MergeResult": "merge",
    "merge_databases": "merge",
    "extend_task_split": "split",
    "make_task_split": "split",
    "read_split": "split",
    "write_split": "split",
    "BuildStats": "dataset",
    "Dataset": "dataset",
    "DatasetSkips": "dataset",
    "TaskData": "dataset",
    "build_dataset": "dataset",
    "default_cache_dir": "dataset",
    "measurement_sources": "measurements",
    "record_latency": "measurements",
    "CollectConfig": "task_meta",
    "CollectSummary": "task_meta",
    "TaskProgress": "task_meta",
    "TaskLockedError": "task_files",
    "task_lock": "task_files",
    "LearnedModels": "collect",
    "StopRequest": "stop",
    "collect_task": "collect",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
