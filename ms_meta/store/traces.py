"""A stored record's MetaSchedule ``TuningRecord`` without replaying its trace.

``TuningRecord.from_json`` rebuilds a trace by applying every instruction to a fresh schedule of
the workload (1 to 15 ms a record on the seed tasks: the schedule primitives' IR analysis). A
lookup that only hands the best record on (``query_tuning_record``) does not need that: the
trace's instructions can be built directly from their JSON (instruction kind, inputs with
random variables resolved by name, attributes, outputs as fresh random variables), in about
0.1 to 0.5 ms. The result prints and applies exactly like the replayed trace.

Only what can be vouched for without a replay is built this way: instruction kinds whose JSON
holds their attributes as they are (the kinds listed in ``DIRECT_KINDS``, checked against the
replay on every seed record by the tests), random variables defined before their use, and
blocks looked up by a name that is, or is named after, a block or buffer of the workload (as
blocks that schedule primitives create are). Anything else raises :class:`NeedsReplay`, and the
caller replays the trace as before, which also judges a trace that no longer applies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import tvm
from tvm.ir import IRModule
from tvm.s_tir import SBlock, SBlockRealize
from tvm.s_tir.schedule import Instruction, InstructionKind, LoopRV, SBlockRV, Trace
from tvm.tirx import IntImm, PrimFunc, SeqStmt, Var

__all__ = ["DIRECT_KINDS", "NeedsReplay", "build_trace", "workload_block_names"]

# Instruction kinds built straight from their JSON: attributes and decisions are plain JSON
# values (no kind-specific AttrsFromJSON), inputs are variables, literals, lists of them or an
# index map. Other kinds are replayed.
DIRECT_KINDS = frozenset(
    {
        "Annotate", "Bind", "Blockize", "CacheRead", "CacheWrite", "ComputeAt", "ComputeInline",
        "DecomposeReduction", "EnterPostproc", "Fuse", "GetChildBlocks", "GetConsumers",
        "GetLoops", "GetProducers", "GetSBlock", "Parallel", "RFactor", "Reorder",
        "ReverseComputeAt", "ReverseComputeInline", "SampleCategorical", "SampleComputeLocation",
        "SamplePerfectTile", "SetScope", "Split", "StorageAlign", "Tensorize", "TransformLayout",
        "Unannotate", "Unroll", "Vectorize",
    }
)  # fmt: skip
_KINDS: dict[str, InstructionKind] = {}


class NeedsReplay(Exception):
    """A trace this module does not vouch for; ``TuningRecord.from_json`` replays it."""


def workload_block_names(mod: IRModule) -> frozenset[str]:
    """Names of the blocks and buffers of a workload's functions."""
    names: set[str] = set()
    for func in mod.functions.values():
        if not isinstance(func, PrimFunc):
            continue
        stack: list[Any] = [func.body]
        while stack:
            stmt = stack.pop()
            if isinstance(stmt, SBlockRealize):
                stack.append(stmt.block)
            elif isinstance(stmt, SBlock):
                names.add(stmt.name_hint)
                names.update(str(buffer.name) for buffer in stmt.alloc_buffers)
                names.update(str(region.source.name) for region in (*stmt.reads, *stmt.writes))
                stack.append(stmt.body)
                if stmt.init is not None:
                    stack.append(stmt.init)
            elif isinstance(stmt, SeqStmt):
                stack.extend(stmt.seq)
            else:  # For, LetStmt, AttrStmt, IfThenElse, ...
                for field in ("body", "then_case", "else_case"):
                    child = getattr(stmt, field, None)
                    if child is not None:
                        stack.append(child)
    return frozenset(names)


def _kind(name: str) -> InstructionKind:
    kind = _KINDS.get(name)
    if kind is None:
        if name not in DIRECT_KINDS:
            raise NeedsReplay(f"instruction {name!r}")
        try:
            kind = InstructionKind.get(name)
        except Exception:  # TVM raises its own error type for an unknown kind
            raise NeedsReplay(f"instruction {name!r} is unknown to this TVM") from None
        _KINDS[name] = kind
    return kind


def _literal(value: Any) -> Any:
    """A JSON attribute or decision as MetaSchedule holds it: ``true``/``false`` are boolean
    ``IntImm`` s (the writer prints a plain boolean as ``1``/``0``)."""
    if isinstance(value, bool):
        return IntImm("bool", int(value))
    if isinstance(value, list):
        return [_literal(item) for item in value]
    return value


def _known_block(name: str, blocks: Iterable[str]) -> bool:
    return any(block and block in name for block in blocks)


def build_trace(insts_text: str, decisions_text: str, blocks: frozenset[str]) -> Trace:
    """The trace of a record from its instruction and decision JSON texts, without a replay.

    Parameters
    ----------
    insts_text, decisions_text : str
        The two parts of the trace JSON (``[insts, decisions]``).
    blocks : frozenset of str
        The workload's block and buffer names (:func:`workload_block_names`).

    Raises
    ------
    NeedsReplay
        When the trace is to be rebuilt, and judged, by a replay.
    """
    try:
        insts_json = json.loads(insts_text)
        decisions_json = json.loads(decisions_text)
    except ValueError as err:
        raise NeedsReplay(f"the trace is not JSON: {err}") from None
    named: dict[str, Any] = {"None": None}

    def resolve(value: Any) -> Any:
        if isinstance(value, str):
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                return value[1:-1]
            if value[:1] == "{":  # an index map, as TVM's JSON graph
                if any(f'"{name}"' in value for name in named if name[:1] == "v"):
                    raise NeedsReplay("an index map refers to the trace's variables")
                return tvm.ir.load_json(value)
            try:
                return named[value]
            except KeyError:
                raise NeedsReplay(f"variable {value!r} is used before it is defined") from None
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return _literal(value)

    insts = []
    try:
        for kind_name, inputs, attrs, outputs in insts_json:
            kind = _kind(kind_name)
            if kind_name == "GetSBlock" and not _known_block(str(attrs[0]), blocks):
                raise NeedsReplay(f"block {attrs[0]!r} is not named after the workload's")
            new_outputs = []
            for name in outputs:
                prefix = name[:1]
                if prefix == "b":
                    rv: Any = SBlockRV()
                elif prefix == "l":
                    rv = LoopRV()
                elif prefix == "v":
                    rv = Var("v", "int64")
                elif name == "_":
                    rv = None
                else:
                    raise NeedsReplay(f"output {name!r}")
                named[name] = rv
                new_outputs.append(rv)
            insts.append(
                Instruction(kind, resolve(inputs), [_literal(a) for a in attrs], new_outputs)
            )
        decisions = {insts[index]: _literal(value) for index, value in decisions_json}
    except (TypeError, ValueError, IndexError, KeyError) as err:
        raise NeedsReplay(f"malformed trace: {err}") from None
    return Trace(insts, decisions)
