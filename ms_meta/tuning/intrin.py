"""Import only the tensor intrinsics a target can use.

``TuneContext.__init__`` and MetaSchedule's default build function run
``import tvm.s_tir.tensor_intrin``, which imports the intrinsics of *every* backend (CUDA, ROCm,
Hexagon, ARM, ...). That costs 15-50 s on a small machine, once per process and once per builder
worker. For a CPU target only the x86 intrinsics can ever be used, so the package is registered
without running its ``__init__`` and import just the modules the target needs.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

__all__ = [
    "import_tensor_intrinsics",
]

logger = logging.getLogger(__name__)

_PACKAGE = "tvm.s_tir.tensor_intrin"
_MODULES_BY_TARGET_KIND = {"llvm": ("x86",), "c": (), "cuda": ("cuda",)}


def import_tensor_intrinsics(target_kind: str = "llvm") -> None:
    """Make ``import tvm.s_tir.tensor_intrin`` cheap for ``target_kind``.

    ``cuda`` gets the CUDA intrinsics (its default rules include tensor-core tiling); other
    kinds (rocm, hexagon, ...) get the full package. Calls for several kinds add up: each
    imports what its kind needs, whatever was registered before.
    """
    submodules = _MODULES_BY_TARGET_KIND.get(target_kind)
    if submodules is None:
        if _PACKAGE in sys.modules and getattr(sys.modules[_PACKAGE], "_ms_meta_partial", False):
            # registered partially here: run the package's own imports now
            for name in ("cuda", "arm_cpu", "x86", "rocm", "hexagon", "riscv_cpu"):
                _import_submodule(name)
            return
        importlib.import_module(_PACKAGE)
        return
    if _PACKAGE not in sys.modules:
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None or spec.loader is None:  # pragma: no cover - broken TVM install
            return
        package = importlib.util.module_from_spec(spec)  # registered, __init__ not executed
        package._ms_meta_partial = True
        sys.modules[_PACKAGE] = package
        importlib.import_module("tvm.s_tir").tensor_intrin = package
    for name in submodules:
        _import_submodule(name)


def _import_submodule(name: str) -> None:
    try:
        importlib.import_module(f"{_PACKAGE}.{name}")  # a no-op when already imported
    except Exception as err:  # an intrinsic module that fails only loses tensorization
        logger.warning("could not import %s.%s: %s", _PACKAGE, name, err)
