"""Workload specs: ``op:field,field,...`` strings, preset layers and named tasks.

A spec is checked when it is parsed: its fields, and its size (a workload whose tensors or
FLOPs are too large to run once per trial is refused with the limit it exceeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import tvm

from ms_meta.errors import WorkloadSpecError
from ms_meta.workloads.operators import OPERATORS, OperatorDef, build_module, tensor_shapes

__all__ = [
    "MAX_FLOPS",
    "MAX_TENSOR_BYTES",
    "Workload",
    "parse_spec",
]

_MAX_ELEMENTS = 2**31  # larger tensors cannot be indexed with int32 and would not fit anyway
# What a workload may need to be tuned here: every trial builds the kernel and runs it with
# its tensors allocated (float32), several times.
MAX_TENSOR_BYTES = 4 * 2**30  # all inputs and outputs together
MAX_FLOPS = 1e13  # about a minute per run at 100-200 GFLOP/s


@dataclass(frozen=True)
class Workload:
    """One tuning task: an operator with concrete shape parameters.

    ``spec`` is the canonical string (``dense:128,768,768``); ``name`` is a filesystem-safe
    task name derived from it; ``aliases`` are friendlier names (``bert_qkv``).
    """

    op: str
    params: tuple[int, ...]
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def definition(self) -> OperatorDef:
        return OPERATORS[self.op]

    @property
    def spec(self) -> str:
        return f"{self.op}:{','.join(str(p) for p in self.params)}"

    @property
    def name(self) -> str:
        return f"{self.op}_{'_'.join(str(p) for p in self.params)}"

    @property
    def kind(self) -> str:
        """Operator kind as used by the task features (``schema.OPERATOR_KINDS``)."""
        return self.definition.kind

    @property
    def flops(self) -> float:
        return float(self.definition.flops(*self.params))

    @cached_property
    def shapes(self) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
        """(input shapes, output shapes)."""
        return tensor_shapes(self.definition, self.params)

    def build(self) -> tvm.IRModule:
        """The IRModule MetaSchedule tunes (``main`` only)."""
        return build_module(self.definition, self.params)

    def __str__(self) -> str:
        return self.spec


def _expected(op: OperatorDef) -> str:
    fields = ",".join(op.fields)
    return f"{op.name}:{fields}"


def parse_spec(spec: str) -> Workload:
    """Parse ``op:field,field,...`` into a :class:`Workload`.

    Raises
    ------
    WorkloadSpecError
        With the expected fields of the operator when the spec is malformed.
    """
    text = spec.strip()
    if ":" not in text:
        raise WorkloadSpecError(
            f"workload spec {spec!r} has no ':'; expected OP:FIELDS, for example "
            f"'conv2d_nchw:1,64,56,56,64,3,3,1,1'. Operators: {', '.join(sorted(OPERATORS))}"
        )
    op_name, _, fields_text = text.partition(":")
    op_name = op_name.strip()
    if op_name not in OPERATORS:
        raise WorkloadSpecError(
            f"unknown operator {op_name!r} in {spec!r}; known operators: "
            f"{', '.join(sorted(OPERATORS))}"
        )
    op = OPERATORS[op_name]
    raw = [f.strip() for f in fields_text.split(",")]
    try:
        params = tuple(int(f) for f in raw)
    except ValueError:
        raise WorkloadSpecError(
            f"workload spec {spec!r}: fields must be integers; expected {_expected(op)}"
        ) from None
    if op.variadic:
        if not 1 <= len(params) <= 6:
            raise WorkloadSpecError(
                f"workload spec {spec!r}: expected 1 to 6 dimensions, as in softmax:12,128,128"
            )
    elif len(params) != len(op.fields):
        raise WorkloadSpecError(
            f"workload spec {spec!r}: expected {len(op.fields)} fields {_expected(op)}, "
            f"got {len(params)}"
        )
    _check_values(op, params, spec)
    workload = Workload(op_name, params)
    _check_size(workload)
    return workload


def _check_size(workload: Workload) -> None:
    """Refuse a workload too large to allocate or run once per trial, saying which limit."""
    inputs, outputs = workload.shapes
    nbytes = 4 * sum(math.prod(shape) for shape in [*inputs, *outputs])
    if nbytes > MAX_TENSOR_BYTES:
        raise WorkloadSpecError(
            f"workload {workload.spec} is too large to tune: its float32 tensors take "
            f"{nbytes / 2**30:,.1f} GiB, the limit is {MAX_TENSOR_BYTES / 2**30:.0f} GiB"
        )
    if workload.flops > MAX_FLOPS:
        raise WorkloadSpecError(
            f"workload {workload.spec} is too large to tune: one run takes {workload.flops:.3g} "
            f"FLOPs, the limit is {MAX_FLOPS:.0e}"
        )


def _check_values(op: OperatorDef, params: tuple[int, ...], spec: str) -> None:
    named = dict(zip(op.fields, params, strict=False))
    for key, value in named.items():
        minimum = 0 if key == "pad" else 1
        if value < minimum:
            raise WorkloadSpecError(
                f"workload spec {spec!r}: field {key} must be >= {minimum}, got {value} "
                f"(expected {_expected(op)})"
            )
    groups = named.get("groups")
    if groups is not None and (named["C"] % groups or named["K"] % groups):
        raise WorkloadSpecError(
            f"workload spec {spec!r}: C ({named['C']}) and K ({named['K']}) must be "
            f"divisible by groups ({groups})"
        )
    if op.name == "conv2d_nchwc" and named["K"] % 16:
        raise WorkloadSpecError(
            f"workload spec {spec!r}: K ({named['K']}) must be a multiple of 16 (the channel block)"
        )
    if op.name == "depthwise_conv2d_nchwc" and named["C"] % 16:
        raise WorkloadSpecError(
            f"workload spec {spec!r}: C ({named['C']}) must be a multiple of 16 (the channel block)"
        )
    if op.variadic and min(params) < 1:
        raise WorkloadSpecError(f"workload spec {spec!r}: dimensions must be >= 1")
    if {"H", "W", "stride", "pad"} <= named.keys():
        kernel_h = named.get("R", named.get("kernel"))
        kernel_w = named.get("S", named.get("kernel"))
        if named["H"] + 2 * named["pad"] < kernel_h or named["W"] + 2 * named["pad"] < kernel_w:
            raise WorkloadSpecError(
                f"workload spec {spec!r}: the kernel is larger than the padded input"
            )
    if math.prod(params) > _MAX_ELEMENTS**2:
        raise WorkloadSpecError(f"workload spec {spec!r}: shape is too large")
