"""Task subsets for learning curves: an operator variant held out whole, and nested training sets.

A curve of held-out accuracy against the number of training tasks needs two things that a
plain task split does not give. A *variant* held-out set (every convolution with a 5x5 kernel,
or every grouped convolution) that no point of the curve trains on, chosen by a workload field
rather than by a hand-written list of names, tests generalization to a kind of program the
model has never seen. *Nested* training subsets (each larger one adds tasks to the smaller)
make neighbouring points differ only by the tasks added, so the curve's steps are not
dominated by which tasks a fresh draw happened to pick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ms_meta.errors import MsMetaError, WorkloadSpecError

__all__ = ["VariantRule", "nested_subsets", "parse_variant", "task_fields"]


def task_fields(name: str) -> tuple[str, dict[str, int]] | None:
    """The operator and named shape fields of a collector task name, or ``None``.

    ``conv2d_nchw_1_64_56_56_64_5_5_1_2`` gives ``("conv2d_nchw", {"N": 1, ..., "R": 5, "S": 5,
    ...})``; a measurement-source suffix (``...@bert_attn_v``) is ignored. Names that are not
    ``<operator>_<shape>`` (and variadic operators such as softmax, whose fields have no names)
    give ``None`` or an empty field dict.
    """
    from ms_meta.workloads import resolve_one

    base = name.split("@", 1)[0]
    try:
        workload = resolve_one(base)
    except WorkloadSpecError:
        return None
    fields = workload.definition.fields
    if workload.definition.variadic or len(fields) != len(workload.params):
        return workload.op, {}
    return workload.op, dict(zip(fields, workload.params, strict=True))


@dataclass(frozen=True)
class VariantRule:
    """Which tasks form an operator variant: operator names and/or shape field values.

    A task matches when its operator is one of ``ops`` (any operator when empty) and it has
    every field of ``fields`` with that value (``{"R": 5, "S": 5}``: the 5x5 kernels of every
    convolution kind, since pooling names its window ``kernel``).
    """

    ops: tuple[str, ...] = ()
    fields: Mapping[str, int] = field(default_factory=dict)

    def matches(self, name: str) -> bool:
        """Whether the task ``name`` belongs to the variant."""
        parsed = task_fields(name)
        if parsed is None:
            return False
        op, values = parsed
        if self.ops and op not in self.ops:
            return False
        return all(values.get(key) == value for key, value in self.fields.items())

    def select(self, names: Iterable[str]) -> list[str]:
        """The names that match, sorted."""
        return sorted(n for n in set(names) if self.matches(n))

    def describe(self) -> str:
        """The rule as :func:`parse_variant` reads it, e.g. ``R=5,S=5``."""
        parts = [f"op={'|'.join(self.ops)}"] if self.ops else []
        parts += [f"{key}={value}" for key, value in self.fields.items()]
        return ",".join(parts)


def parse_variant(text: str) -> VariantRule:
    """``"R=5,S=5"``, ``"op=group_conv2d_nchw"`` or ``"op=conv2d_nchw|conv2d_nhwc,R=5"``.

    Raises
    ------
    MsMetaError
        When a part is not ``key=value``, a field value is not an integer, an operator is
        unknown, or the rule is empty.
    """
    from ms_meta.workloads.operators import OPERATORS

    ops: tuple[str, ...] = ()
    values: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise MsMetaError(f"variant {text!r}: {part!r} is not key=value (e.g. R=5,S=5)")
        if key == "op":
            ops = tuple(v.strip() for v in value.split("|"))
            unknown = [op for op in ops if op not in OPERATORS]
            if unknown:
                raise MsMetaError(
                    f"variant {text!r}: unknown operator {unknown[0]!r}; known: "
                    + ", ".join(sorted(OPERATORS))
                )
            continue
        try:
            values[key] = int(value)
        except ValueError:
            message = f"variant {text!r}: {key} must be an integer, got {value!r}"
            raise MsMetaError(message) from None
    if not ops and not values:
        raise MsMetaError(f"variant {text!r} selects nothing: give op=NAME and/or FIELD=VALUE")
    return VariantRule(ops, values)


def nested_subsets(pool: Sequence[str], sizes: Sequence[int], seed: int) -> dict[int, list[str]]:
    """Seeded training subsets of ``pool``, each containing every smaller one.

    One permutation of the sorted, de-duplicated pool (``numpy.random.default_rng(seed)``);
    the subset of size ``n`` is its first ``n`` names, so the result depends on the pool's
    contents, not its order.

    Returns
    -------
    dict of int to list of str
        Size -> sorted task names.

    Raises
    ------
    MsMetaError
        When a size is below 1 or above the number of tasks in the pool.
    """
    names = sorted(set(pool))
    bad = [n for n in sizes if not 1 <= n <= len(names)]
    if bad:
        raise MsMetaError(f"subset sizes must be between 1 and {len(names)} tasks, got {bad}")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    return {int(n): sorted(order[:n]) for n in sizes}
