"""The workload library: real-model operators built with TE/TOPI, specs, presets, and sampled
sets of many distinct tasks (``sampled:COUNT:SEED``)."""

from __future__ import annotations

from collections.abc import Iterable

from ms_meta.errors import WorkloadSpecError
from ms_meta.workloads.operators import OPERATORS, OperatorDef
from ms_meta.workloads.presets import NAMED, PRESETS
from ms_meta.workloads.sampler import is_sampled_spec, parse_sampled_spec, sample_workloads
from ms_meta.workloads.spec import Workload, parse_spec

__all__ = [
    "NAMED",
    "OPERATORS",
    "PRESETS",
    "OperatorDef",
    "Workload",
    "WorkloadSpecError",
    "parse_spec",
    "resolve",
    "resolve_one",
    "sample_workloads",
]

_ALIASES_BY_SPEC: dict[str, tuple[str, ...]] = {}
for _alias, _spec in NAMED.items():
    _ALIASES_BY_SPEC[_spec] = (*_ALIASES_BY_SPEC.get(_spec, ()), _alias)


def _with_aliases(workload: Workload) -> Workload:
    return Workload(workload.op, workload.params, _ALIASES_BY_SPEC.get(workload.spec, ()))


def resolve_one(name: str) -> Workload:
    """One workload from a spec (``dense:128,768,768``), a named task (``bert_qkv``) or a
    task directory name (``dense_128_768_768``)."""
    text = name.strip()
    if text in NAMED:
        return _with_aliases(parse_spec(NAMED[text]))
    if ":" not in text:
        _op, _, _rest = text.rpartition("_")
        for candidate in sorted(OPERATORS, key=len, reverse=True):
            prefix = candidate + "_"
            if text.startswith(prefix) and text[len(prefix) :].replace("_", "").isdigit():
                return _with_aliases(
                    parse_spec(f"{candidate}:{text[len(prefix) :].replace('_', ',')}")
                )
        if text in PRESETS:
            raise WorkloadSpecError(f"{text!r} is a preset of several workloads; use resolve()")
        raise WorkloadSpecError(
            f"unknown workload {text!r}: give a spec such as conv2d_nchw:1,64,56,56,64,3,3,1,1, "
            f"a named task ({', '.join(sorted(NAMED)[:4])}, ...; see `ms-meta workloads`) "
            f"or a preset ({', '.join(PRESETS)})"
        )
    if is_sampled_spec(text):
        raise WorkloadSpecError(f"{text!r} is a sampled set of several workloads; use resolve()")
    return _with_aliases(parse_spec(text))


def resolve(names: Iterable[str]) -> list[Workload]:
    """Workloads for specs, named tasks and presets (``resnet18``), de-duplicated, in order.

    A comma-free list item may also be a preset name, which expands to all its layers, or a
    sampled set ``sampled:COUNT[:SEED]`` (:func:`ms_meta.workloads.sampler.sample_workloads`).
    """
    seen: dict[str, Workload] = {}
    for name in names:
        text = name.strip()
        if is_sampled_spec(text):
            for workload in sample_workloads(*parse_sampled_spec(text)):
                seen.setdefault(workload.spec, workload)
            continue
        specs = PRESETS[text] if text in PRESETS else (text,)
        for spec in specs:
            workload = resolve_one(spec)
            seen.setdefault(workload.spec, workload)
    if not seen:
        raise WorkloadSpecError("no workloads given")
    return list(seen.values())


def all_named() -> list[Workload]:
    """Every named task and preset layer (the default collection list)."""
    return resolve([*NAMED, *PRESETS])


def describe_operators() -> Iterable[tuple[str, str, str]]:
    """(operator, expected fields, description) rows for help texts."""
    for op in OPERATORS.values():
        yield op.name, f"{op.name}:{','.join(op.fields)}", op.description
