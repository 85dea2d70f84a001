"""The host's LLVM target, parsing and checking of user targets, and a stable key for records.

Every command reads its ``--target`` through :func:`parse_target`, which checks it up front
(:func:`check_target`): a kind ms-meta cannot tune, an ``mcpu`` LLVM does not know or a
non-positive ``num-cores`` is refused in one line, before TVM compiles generic code for a
misspelled CPU or fails deep inside MetaSchedule.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import psutil
import tvm
from tvm.target import Target

from ms_meta.errors import TargetError
from ms_meta.labels import target_label

__all__ = [
    "SUPPORTED_TARGET_KINDS",
    "check_target",
    "hidden_cpu_features",
    "host_cpu",
    "host_cpu_flags",
    "host_target",
    "parse_target",
    "physical_cores",
    "target_key",
    "target_summary",
]

# MetaSchedule's CPU rules, the feature extractor and the shipped weights are for LLVM CPU
# targets only.
SUPPORTED_TARGET_KINDS = ("llvm",)


def physical_cores() -> int:
    """Physical cores of this machine (MetaSchedule's own default for ``num_threads``)."""
    return psutil.cpu_count(logical=False) or psutil.cpu_count(logical=True) or 1


def host_cpu() -> str:
    """LLVM's name for the host CPU, e.g. ``rocketlake``."""
    return str(tvm.target.codegen.llvm_get_system_cpu())


# LLVM feature families that a hypervisor may hide from a guest. Baseline features (sse2,
# cmov, ...) and tuning flags (fast-*, macrofusion) are never turned off.
_MASKABLE_FEATURE_PREFIXES = ("avx", "amx", "fma", "f16c", "gfni", "vaes", "vpclmulqdq")


def _normalize_feature(name: str) -> str:
    """``sse4.2``/``sse4_2`` and ``avx512vnni``/``avx512_vnni`` compare equal."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def host_cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str] | None:
    """The CPU flags the kernel reports (normalized), or None where there is no cpuinfo."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return {_normalize_feature(flag) for flag in value.split()}
    return None


def hidden_cpu_features(mcpu: str, flags: set[str] | None) -> list[str]:
    """Vector features LLVM assumes for ``mcpu`` that this CPU does not report.

    LLVM names the CPU from its family and model alone: a virtual machine on an AMD Zen 4 host
    that hides AVX-512 is still ``znver4``, and code built for it dies with SIGILL. Turning
    off what the CPU does not report keeps ``mcpu``'s scheduling model and runs everywhere.
    """
    if not flags:
        return []
    features = tvm.target.codegen.llvm_get_cpu_features(Target({"kind": "llvm", "mcpu": mcpu}))
    return sorted(
        str(name)
        for name in features
        if str(name).startswith(_MASKABLE_FEATURE_PREFIXES)
        and _normalize_feature(str(name)) not in flags
    )


def host_target(num_cores: int | None = None) -> Target:
    """The host's llvm target with ``mcpu`` set, so that LLVM uses the CPU's vector extensions.

    Without ``mcpu`` LLVM compiles for generic x86-64 and kernels run 1.2-3x slower. Features
    that ``mcpu`` implies but the CPU hides (see :func:`hidden_cpu_features`) go to ``mattr``
    as ``-feature``.
    """
    mcpu = host_cpu()
    config: dict[str, Any] = {"kind": "llvm", "mcpu": mcpu}
    hidden = hidden_cpu_features(mcpu, host_cpu_flags())
    if hidden:
        config["mattr"] = [f"-{name}" for name in hidden]
    config["num-cores"] = num_cores or physical_cores()
    return Target(config)


def parse_target(value: str | dict[str, Any] | Target | None) -> Target:
    """Build a :class:`~tvm.target.Target` from a JSON dict (string or dict), or the host default.

    Raises
    ------
    TargetError
        When the value is not a JSON object, TVM rejects it, or :func:`check_target` does.
    """
    if value is None or value == "" or value == "host":
        return host_target()
    if isinstance(value, Target):
        return check_target(value)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise TargetError(
                f"--target must be a JSON target dict such as "
                f'\'{{"kind": "llvm", "mcpu": "{host_cpu()}", "num-cores": 2}}\', got {value!r} '
                f"({err.msg})"
            ) from None
    if not isinstance(value, dict) or "kind" not in value:
        raise TargetError(f"a target must be a JSON object with a 'kind' field, got {value!r}")
    _check_kind(str(value["kind"]))  # before TVM warns about a missing CUDA, say
    try:
        target = Target(value)
    except Exception as err:  # TVM raises a bare TVMError/ValueError with a C++ backtrace
        first_line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise TargetError(f"TVM rejected the target {json.dumps(value)}: {first_line}") from None
    return check_target(target)


def _check_kind(kind: str) -> None:
    if kind not in SUPPORTED_TARGET_KINDS:
        raise TargetError(
            f"target kind {kind!r} is not supported: ms-meta tunes LLVM CPU targets only, e.g. "
            f'{{"kind": "llvm", "mcpu": "{host_cpu()}", "num-cores": 2}}'
        )


@functools.lru_cache(maxsize=8)
def _llvm_cpus(mtriple: str) -> tuple[str, ...]:
    """LLVM's CPU names for ``mtriple`` (asked of a target without ``mcpu``: LLVM prints an
    error line for an unknown one)."""
    config: dict[str, Any] = {"kind": "llvm"}
    if mtriple:
        config["mtriple"] = mtriple
    return tuple(str(name) for name in tvm.target.codegen.llvm_get_cpu_archlist(Target(config)))


def check_target(target: Target) -> Target:
    """Refuse a target ms-meta cannot tune for, in one line; return it unchanged otherwise.

    Raises
    ------
    TargetError
        The kind is not ``llvm``; ``num-cores`` is given but below 1; or ``mcpu`` is a name
        LLVM does not know for the target's triple (the message names close matches: LLVM would
        otherwise warn and compile generic code).
    """
    _check_kind(target.kind.name)
    cores = target.attrs.get("num-cores")
    if cores is not None and int(cores) < 1:
        raise TargetError(f"num-cores must be a positive number of cores, got {int(cores)}")
    mcpu = str(target.attrs.get("mcpu") or "")
    if mcpu and mcpu != "native":
        known = _llvm_cpus(str(target.attrs.get("mtriple") or ""))
        if known and mcpu not in known:
            close = difflib.get_close_matches(mcpu, known, n=4, cutoff=0.6)
            hint = (
                f"did you mean {' or '.join(repr(name) for name in close)}?"
                if close
                else f"this machine's CPU is {host_cpu()!r}."
            )
            triple = target.attrs.get("mtriple") or tvm.target.codegen.llvm_get_system_triple()
            raise TargetError(
                f"unknown mcpu {mcpu!r}: LLVM has no such CPU for {triple}; {hint} "
                "(all names: tvm.target.codegen.llvm_get_cpu_archlist)"
            )
    return target


def target_key(target: Target) -> str:
    """A short, filesystem-safe name for a target, used for ``tuning_records/<target-key>/``.

    Example: ``llvm-rocketlake-2c``; ``llvm-znver4-noavx512-2c`` for a Zen 4 guest whose
    hypervisor hides AVX-512.
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", target_label(target_summary(target)))


def target_summary(target: Target) -> dict[str, Any]:
    """The target's JSON config as a plain dict (what MetaSchedule stores in each record)."""
    from ms_meta.tuning.plain import to_plain

    return to_plain(target.export())
