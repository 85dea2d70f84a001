"""The benchmark harness's optional dependencies (the ``bench`` extra) and how their absence is
reported.

Plotting (matplotlib) and the whole-model anchors (onnx, onnxruntime, onnxscript) serve the
benchmarks only. They are an optional extra, ``pip install "ms-meta[bench]"``, so that the
cost model, One-Shot and the CLI install and run without them; a benchmark that lacks one
skips that part with a one-line note instead of failing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

__all__ = [
    "ANCHOR_MODULES",
    "BENCH_EXTRA",
    "PLOT_MODULES",
    "missing_modules",
    "skipped_note",
]

#: How to install the optional benchmark dependencies.
BENCH_EXTRA = 'pip install "ms-meta[bench]"'
#: What the figures need.
PLOT_MODULES = ("matplotlib",)
#: What the whole-model anchors (ONNX export and ONNX Runtime) need.
ANCHOR_MODULES = ("onnx", "onnxruntime", "onnxscript")


def missing_modules(modules: Sequence[str]) -> list[str]:
    """The top-level modules of ``modules`` that cannot be imported here (not imported)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or broken
            found = False
        if not found:
            missing.append(name)
    return missing


def skipped_note(what: str, modules: Sequence[str]) -> str | None:
    """A one-line note saying ``what`` is skipped and why, or ``None`` when every module of
    ``modules`` is installed.

    Examples
    --------
    >>> skipped_note("plot", ["matplotlib"])  # doctest: +SKIP
    'plot skipped: matplotlib is not installed (pip install "ms-meta[bench]")'
    """
    missing = missing_modules(modules)
    if not missing:
        return None
    verb = "is" if len(missing) == 1 else "are"
    return f"{what} skipped: {', '.join(missing)} {verb} not installed ({BENCH_EXTRA})"
