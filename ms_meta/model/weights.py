"""Checkpoint files of the GNN: tensors plus metadata, written atomically, loaded safely.

TVM-free. Files are ``torch.save`` archives read back with ``weights_only=True`` (tensors and
plain containers only, no arbitrary pickled objects).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ms_meta.atomic import atomic_write
from ms_meta.errors import WeightsError
from ms_meta.feature.schema import FEATURE_VERSION
from ms_meta.labels import cpu_label
from ms_meta.model.gnn import GNNConfig

__all__ = [
    "DEFAULT_WEIGHTS_DIR",
    "WEIGHTS_FORMAT",
    "WEIGHTS_FORMAT_VERSION",
    "Checkpoint",
    "check_target",
    "default_weights_path",
    "load_checkpoint",
    "other_cpu_weights_path",
    "save_atomically",
    "save_checkpoint",
]

WEIGHTS_FORMAT = "ms-meta-weights"
WEIGHTS_FORMAT_VERSION = 1
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass
class Checkpoint:
    """Everything a :class:`~ms_meta.MetaCostModel` needs to predict identically again."""

    gnn_config: GNNConfig
    state_dict: dict[str, torch.Tensor]
    target: dict[str, Any] | None = None
    adapted: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    feature_version: int = FEATURE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": WEIGHTS_FORMAT,
            "format_version": WEIGHTS_FORMAT_VERSION,
            "feature_version": self.feature_version,
            "target": self.target,
            "gnn_config": self.gnn_config.to_dict(),
            "state_dict": self.state_dict,
            "adapted": self.adapted,
            "meta": self.meta,
        }


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> Path:
    """Write atomically (:func:`ms_meta.atomic.atomic_write`): a reader or a crash never sees
    a half-written file."""
    checkpoint.meta.setdefault(
        "saved", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    return save_atomically(checkpoint.to_dict(), path)


def save_atomically(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (also the pretraining run state)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _non_finite_tensors(tensors: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a (nested) dict that hold NaN or infinity."""
    bad = []
    if isinstance(tensors, dict):
        for key, value in tensors.items():
            bad += _non_finite_tensors(value, f"{prefix}{key}.")
    elif isinstance(tensors, torch.Tensor) and tensors.is_floating_point():
        if not bool(torch.isfinite(tensors).all()):
            bad.append(prefix.rstrip("."))
    return bad


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint; :class:`WeightsError` for missing, corrupt or incompatible files."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"{path} is not a readable ms-meta weights file ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path} is not an ms-meta weights file")
    if raw.get("format_version", 0) > WEIGHTS_FORMAT_VERSION:
        raise WeightsError(
            f"{path} was written by a newer ms-meta (format {raw['format_version']}); upgrade"
        )
    version = raw.get("feature_version")
    if version != FEATURE_VERSION:
        raise WeightsError(
            f"{path} was trained on feature encoding v{version}, but this ms-meta encodes "
            f"programs as v{FEATURE_VERSION}; retrain with `ms-meta pretrain` or use "
            f"weights made for v{FEATURE_VERSION}"
        )
    try:
        config = GNNConfig.from_dict(raw["gnn_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise WeightsError(f"{path}: bad model configuration ({err})") from None
    if not isinstance(raw.get("state_dict"), dict):
        raise WeightsError(f"{path} holds no model parameters (state_dict)")
    bad = _non_finite_tensors(raw["state_dict"]) + _non_finite_tensors(
        raw.get("adapted") or {}, "adapted."
    )
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise WeightsError(
            f"{path} holds non-finite parameters (NaN or infinity) in {', '.join(bad[:3])}{more}; "
            "the training that wrote it diverged: retrain, or use other weights"
        )
    return Checkpoint(
        gnn_config=config,
        state_dict=raw["state_dict"],
        target=raw.get("target"),
        adapted=raw.get("adapted") or {},
        meta=raw.get("meta") or {},
        feature_version=version,
    )


def check_target(
    weights_target: dict[str, Any] | None,
    target: dict[str, Any],
    source: str,
    *,
    allow_other_cpu: bool = False,
) -> str | None:
    """Refuse weights trained for another kind of device or CPU (clear error, no guessing).

    CPUs are compared by :func:`~ms_meta.labels.cpu_label`: ``mcpu`` and, when AVX-512
    is turned off, the vector width. With ``allow_other_cpu``, weights of another CPU of the
    same kind pass; the CPU they were trained for is returned so that the caller can say so.
    Another kind or GPU ``arch`` is always refused.
    """
    if not weights_target:
        return None
    for key in ("kind", "arch"):
        have, want = weights_target.get(key), target.get(key)
        if have is not None and want is not None and str(have) != str(want):
            raise _mismatch(source, key, have, want, "")
    if weights_target.get("mcpu") is None or target.get("mcpu") is None:
        return None
    have, want = cpu_label(weights_target), cpu_label(target)
    if have == want:
        return None
    if allow_other_cpu:
        return have
    raise _mismatch(
        source,
        "mcpu",
        have,
        want,
        ", accept them anyway with allow_other_cpu=True (on the command line: --any-cpu-weights)",
    )


def _mismatch(source: str, key: str, have: Any, want: Any, hint: str) -> WeightsError:
    return WeightsError(
        f"{source} were trained for {key}={have}, but the target has {key}={want}; "
        f"pass weights trained for this target{hint}, or weights=None for an "
        f"untrained online model"
    )


def other_cpu_weights_path(target: dict[str, Any]) -> Path | None:
    """Shipped weights of another CPU of the same target kind, for a CPU that has none.

    Weights of the same ``mcpu`` with another vector width come first (e.g. ``znver4`` weights
    trained on a guest without AVX-512, for a Zen 4 with it), then the others by name. Ranking
    learned on one x86 CPU carries over to another only in part (the README's "Other CPUs"
    section has the measured figures), so callers say so when they use these.
    """
    kind = str(target.get("kind"))
    others = sorted(DEFAULT_WEIGHTS_DIR.glob(f"{kind}-*.pt"))
    mcpu = target.get("mcpu")
    if mcpu:
        same_cpu = [p for p in others if p.stem.startswith(f"{kind}-{mcpu}-")
                    or p.stem == f"{kind}-{mcpu}"]  # fmt: skip
        others = same_cpu + [p for p in others if p not in same_cpu]
    return others[0] if others else None


def default_weights_path(target: dict[str, Any]) -> Path | None:
    """The shipped weights for ``target`` (``<kind>-<cpu label>.pt``, e.g. ``llvm-rocketlake.pt``,
    ``llvm-znver4-noavx512.pt``), if this build has them."""
    name = cpu_label(target) or str(target.get("kind"))
    candidates = [DEFAULT_WEIGHTS_DIR / f"{target.get('kind')}-{name}.pt",
                  DEFAULT_WEIGHTS_DIR / "default.pt"]  # fmt: skip
    for path in candidates:
        if path.is_file():
            return path
    return None
