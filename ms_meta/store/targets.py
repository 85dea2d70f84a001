"""The key that decides which stored records a target may use (no TVM needed).

MetaSchedule's own databases ignore the target, so a schedule tuned on one CPU is applied on
another. The store files every record under a key made of what changes the code a schedule
compiles to or how fast it runs: the target kind, the CPU (``mcpu``, or ``arch`` for GPUs), the
``mattr`` feature flags (``-avx512f`` on a guest that hides AVX-512 makes other kernels than the
same CPU with it) and the core count. Fields that do not change the kernel (``tag``, ``keys``,
``mtriple`` defaults, the host) are left out, so the same CPU written two ways shares records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ms_meta.labels import target_label

__all__ = ["UNKNOWN_TARGET_KEY", "target_key", "target_key_label"]

# Records stored without a target (MetaSchedule allows it) are kept under this key; no target
# lookup ever returns them.
UNKNOWN_TARGET_KEY = "unknown"


def _cores(config: Mapping[str, Any]) -> int:
    value = config.get("num-cores")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return int(value)


def target_key(config: Mapping[str, Any] | None) -> str:
    """The store key of a target config dict (as ``Target.export()`` or a record's JSON holds it).

    Examples
    --------
    >>> target_key({"kind": "llvm", "mcpu": "znver4", "mattr": ["-avx512f"], "num-cores": 2})
    'llvm|znver4|-avx512f|2'
    >>> target_key({"kind": "llvm", "keys": ["cpu"], "mcpu": "rocketlake", "num-cores": 2})
    'llvm|rocketlake||2'
    """
    if not config or "kind" not in config:
        return UNKNOWN_TARGET_KEY
    cpu = config.get("mcpu") or config.get("arch") or ""
    mattr = config.get("mattr") or []
    if isinstance(mattr, str):
        mattr = mattr.split(",")
    features = ",".join(sorted({str(feature).strip() for feature in mattr if str(feature).strip()}))
    return f"{config['kind']}|{cpu}|{features}|{_cores(config)}"


def target_key_label(key: str, config_text: str | None = None) -> str:
    """A short display and directory name of a key, e.g. ``llvm-rocketlake-2c``."""
    if key == UNKNOWN_TARGET_KEY:
        return "unknown-target"
    if config_text:
        try:
            return target_label(json.loads(config_text))
        except (ValueError, TypeError):
            pass
    kind, cpu, features, cores = key.split("|")
    config: dict[str, Any] = {"kind": kind, "num-cores": int(cores)}
    if cpu:
        config["mcpu"] = cpu
    if features:
        config["mattr"] = features.split(",")
    return target_label(config)
