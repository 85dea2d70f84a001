"""A MetaSchedule builder that works on small machines.

MetaSchedule's default ``LocalBuilder`` runs ``import tvm.s_tir.tensor_intrin`` (15-50 s) inside
every fresh worker, and it makes a fresh worker pool for every batch. Its 30 s timeout then fails
most builds on a busy 2-core machine, and ``tune_tir`` ends with zero valid trials. The build
function below does the same build without that import.
"""

from __future__ import annotations

from tvm.s_tir.meta_schedule.builder import LocalBuilder

from ms_meta.tuning.target import physical_cores

__all__ = [
    "DEFAULT_BUILD_TIMEOUT_SEC",
    "fast_build",
    "fast_export",
    "make_builder",
]

DEFAULT_BUILD_TIMEOUT_SEC = 60.0


def fast_build(mod, target, _params):
    """``f_build`` for LocalBuilder: MetaSchedule's ``default_build`` minus the intrinsics import.

    Module-level so that cloudpickle sends it to the worker by reference (``ms_meta`` is
    importable there). Safe for schedules that need no tensorization intrinsics at build time,
    which is every llvm/fp32 schedule the default CPU design space produces.
    """
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    from tvm.tirx import build as tir_build  # what the deprecated tvm.driver.build calls

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tir_build(mod, target=target)


def fast_export(mod) -> str:
    """``f_export`` for LocalBuilder: link a shared library inside the (parallel) builder worker.

    MetaSchedule's default export writes a tar of object files, which the runner then links
    into a shared library itself, serially, before every measurement; linking here moves that
    work into the builder pool and leaves the runner only to ``dlopen`` and time.
    """
    import os
    import tempfile

    artifact_path = os.path.join(tempfile.mkdtemp(), "tvm_tmp_mod.so")
    mod.export_library(artifact_path)
    return artifact_path


def make_builder(
    max_workers: int | None = None, timeout_sec: float = DEFAULT_BUILD_TIMEOUT_SEC
) -> LocalBuilder:
    """A ``LocalBuilder`` using :func:`fast_build`; every tuning path of ms-meta uses this."""
    return LocalBuilder(
        max_workers=max_workers or physical_cores(),
        timeout_sec=timeout_sec,
        f_build=fast_build,
        f_export=fast_export,
    )
