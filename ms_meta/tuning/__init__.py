"""MetaSchedule tuning on this machine: targets, a fast builder, runners and measured tuning.

:mod:`~ms_meta.tuning.target` parses and checks targets, :mod:`~ms_meta.tuning.builder` and
:mod:`~ms_meta.tuning.measure` build and time candidates (with
:mod:`~ms_meta.tuning.contention` watching for other load), :mod:`~ms_meta.tuning.rpc` times
them on remote devices, and :mod:`~ms_meta.tuning.measured_tuning` runs ``ms.tune_tir`` with
them. The names below are imported on first use, so that importing the package does not load
TVM.
"""

from __future__ import annotations

from ms_meta.lazy import lazy_exports

# public name -> the module that defines it
_EXPORTS = {
    "make_builder": "builder",
    "import_tensor_intrinsics": "intrin",
    "MeasureSettings": "measure",
    "make_local_runner": "measure",
    "TuneResult": "measured_tuning",
    "tune_workload": "measured_tuning",
    "check_target": "target",
    "host_target": "target",
    "parse_target": "target",
    "target_key": "target",
    "target_summary": "target",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
