"""Training labels and target names, free of TVM and torch.

Both the data pipeline (which turns latencies into labels and files records by CPU) and the
model (which checks that weights match the target's CPU) need these; keeping them here lets
``ms_meta.data`` and ``ms_meta.model`` use them without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ms_meta.run_secs import FAILURE_THRESHOLD_SECS

__all__ = ["cpu_label", "normalized_throughput", "target_label"]


def normalized_throughput(latencies: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Per-task labels: throughput / best throughput in [0, 1]; failed runs (None, inf,
    >= 1e9 s) get 0.

    Shapes: ``[n]`` -> ``[n]`` float32.
    """
    lat = np.array([np.inf if v is None else float(v) for v in latencies], np.float64)
    ok = np.isfinite(lat) & (lat > 0) & (lat < FAILURE_THRESHOLD_SECS)
    out = np.zeros(lat.shape, np.float32)
    if ok.any():
        throughput = 1.0 / lat[ok]
        out[ok] = throughput / throughput.max()
    return out


def cpu_label(target: dict[str, Any]) -> str | None:
    """The CPU (or GPU arch) a target dict builds for, e.g. ``rocketlake``; ``znver4-noavx512``
    when AVX-512 is turned off in ``mattr`` (a guest whose hypervisor hides it): the same CPU
    name with another vector width makes other kernels, so other records and other weights."""
    cpu = target.get("mcpu") or target.get("arch")
    if not cpu:
        return None
    if "-avx512f" in [str(feature) for feature in target.get("mattr") or []]:
        return f"{cpu}-noavx512"
    return str(cpu)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def target_label(target: dict[str, Any] | None) -> str:
    """A short display name of a target dict, e.g. ``llvm-rocketlake-2c`` (no TVM needed);
    also the record directory name (:func:`ms_meta.tuning.target.target_key`)."""
    if not target:
        return "(none)"
    parts = [str(target.get("kind", "?"))]
    cpu = cpu_label(target)
    if cpu:
        parts.append(cpu)
    if _is_number(target.get("num-cores")) and target["num-cores"] > 0:
        parts.append(f"{target['num-cores']}c")
    return "-".join(parts)
