"""Per-block facts of a scheduled TIR PrimFunc that tiling cannot change, and their cache.

Part of the loop-nest graph encoding (:mod:`ms_meta.feature.graph`): a block's arithmetic
(operation counts) and its buffer accesses, in terms of the block's own iteration variables,
are the same for every candidate of a task, so :class:`BlockCache` computes them once per
block and the walk over each candidate only combines them with the loops around the block.
Written for speed like the walk: dispatch on ``type()``, FFI containers read through their
global functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import tvm
import tvm_ffi
from tvm import tirx

from ms_meta.feature.schema import (
    BUFFER_SCOPES,
    NODE_FEATURE_INDEX,
)

__all__ = ["BlockCache"]

_For = tirx.For
_SeqStmt = tirx.SeqStmt
_IfThenElse = tirx.IfThenElse
_BufferStore = tirx.BufferStore
_Var = tvm.ir.Var
_IntImm = tirx.IntImm
_TensorLoad = tvm.ir.TensorLoad
_Add, _Sub, _Mul = tirx.Add, tirx.Sub, tirx.Mul
_FloorDiv, _FloorMod, _Div = tirx.FloorDiv, tirx.FloorMod, tirx.Div
_Cast = tirx.Cast
_Max, _Min = tirx.Max, tirx.Min
_Call = tvm.ir.Call
_Select = tirx.Select

# Iterating an FFI Array through its Python wrapper costs three FFI calls per element (len,
# bounds check, get); calling the container functions directly costs one.
_array_size = tvm_ffi.get_global_func("ffi.ArraySize")
_array_get = tvm_ffi.get_global_func("ffi.ArrayGetItem")
_map_size = tvm_ffi.get_global_func("ffi.MapSize")


def _items(array) -> list:
    """The elements of an FFI Array as a list."""
    return [_array_get(array, i) for i in range(_array_size(array))]


_F = NODE_FEATURE_INDEX
_LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled", "thread_binding")
POW2_FACTOR_CAP = 6  # 64 lanes: wider than any vector register
_LOOP_KIND_COLUMNS = [_F[f"loop_kind_{k}"] for k in _LOOP_KINDS]
_SCOPE_COLUMNS = {s: _F[f"access_scope_{s}"] for s in BUFFER_SCOPES}
_SCOPE_ORDER = {column: i for i, column in enumerate(_SCOPE_COLUMNS.values())}
_REDUCE_ITER = 2  # IterVar.iter_type of a reduction axis (kCommReduce)


def _log2p(value: float) -> float:
    return math.log2(1.0 + abs(value))


def _dtype_bytes(dtype: str) -> int:
    digits = "".join(ch for ch in dtype if ch.isdigit())
    bits = int(digits) if digits else 32
    lanes = 1
    if "x" in dtype:
        try:
            lanes = int(dtype.rsplit("x", 1)[1])
        except ValueError:
            lanes = 1
    return max(1, bits // 8) * lanes


def _int_value(expr) -> int | None:
    return int(expr.value) if type(expr) is _IntImm else None


def _linear_form(expr, scale: float, out: dict[int, float]) -> None:
    """Accumulate the coefficient of every variable in ``expr`` (keyed by the Var's handle).

    Exact for the affine bindings tiling produces; ``floordiv``/``floormod`` from fused loops
    are approximated (``x // c`` contributes coefficient / c, ``x % c`` the coefficient).
    """
    kind = type(expr)
    if kind is _Var:
        key = hash(expr)
        out[key] = out.get(key, 0.0) + scale
    elif kind is _Add:
        _linear_form(expr.a, scale, out)
        _linear_form(expr.b, scale, out)
    elif kind is _Sub:
        _linear_form(expr.a, scale, out)
        _linear_form(expr.b, -scale, out)
    elif kind is _Mul:
        a, b = expr.a, expr.b
        if type(b) is _IntImm:
            _linear_form(a, scale * b.value, out)
        elif type(a) is _IntImm:
            _linear_form(b, scale * a.value, out)
    elif kind is _FloorDiv:
        divisor = _int_value(expr.b)
        if divisor:
            _linear_form(expr.a, scale / divisor, out)
    elif kind is _FloorMod:
        _linear_form(expr.a, scale, out)
    elif kind is _Cast:
        _linear_form(expr.value, scale, out)


@dataclass
class _OpCounts:
    float_add: int = 0
    float_mul: int = 0
    float_div: int = 0
    float_math: int = 0
    int_ops: int = 0


def _count_ops(expr, counts: _OpCounts) -> None:
    kind = type(expr)
    if kind in (_Add, _Sub, _Mul, _Div, _FloorDiv, _FloorMod, _Max, _Min):
        is_float = "float" in str(expr.ty)
        if not is_float:
            counts.int_ops += 1
        elif kind in (_Add, _Sub):
            counts.float_add += 1
        elif kind is _Mul:
            counts.float_mul += 1
        elif kind in (_Div, _FloorDiv, _FloorMod):
            counts.float_div += 1
        else:
            counts.float_math += 1
        _count_ops(expr.a, counts)
        _count_ops(expr.b, counts)
    elif kind is _Call:
        counts.float_math += 1
        for arg in expr.args:
            _count_ops(arg, counts)
    elif kind is _Select:
        counts.float_math += 1
        _count_ops(expr.true_value, counts)
        _count_ops(expr.false_value, counts)
    elif kind is _Cast:
        _count_ops(expr.value, counts)
    # Loads end the walk: index arithmetic is addressing, which the access strides describe,
    # and it varies with split factors that the per-task cache must not depend on.


def _count_stmt_ops(stmt, counts: _OpCounts) -> None:
    kind = type(stmt)
    if kind is _BufferStore:
        _count_ops(stmt.value, counts)
    elif kind is _SeqStmt:
        for s in _items(stmt.seq):
            _count_stmt_ops(s, counts)
    elif kind is _IfThenElse:
        _count_stmt_ops(stmt.then_case, counts)
        if stmt.else_case is not None:
            _count_stmt_ops(stmt.else_case, counts)
    elif kind is _For:
        _count_stmt_ops(stmt.body, counts)


@dataclass
class _AccessStatic:
    is_write: bool
    buffer_name: str
    dtype_bytes: int
    buffer_bytes: float
    ndim: int
    scope_column: int
    iter_weights: np.ndarray  # [num_iters] elements moved per unit step of each block iter var
    rewritten_layout: bool


_BLOCK_COLUMNS = [_F[c] for c in (
    "block_log_float_add", "block_log_float_mul", "block_log_float_div", "block_log_float_math",
    "block_log_int_ops", "block_is_reduction", "block_num_spatial_iters",
    "block_num_reduce_iters",
)]  # fmt: skip
_ACCESS_STATIC_COLUMNS = [_F[c] for c in (
    "access_log_buffer_bytes", "access_dtype_bytes", "access_ndim", "access_is_rewritten_layout",
    *(f"access_scope_{s}" for s in BUFFER_SCOPES),
)]  # fmt: skip


@dataclass
class _BlockStatic:
    num_spatial: int
    num_reduce: int
    reduce_extent: int
    is_reduction: bool
    ops: _OpCounts
    accesses: list[_AccessStatic]
    has_nested_stmts: bool

    def __post_init__(self) -> None:
        ops = self.ops
        self.float_ops = ops.float_add + ops.float_mul + ops.float_div + ops.float_math
        self.block_row = np.asarray(
            [_log2p(ops.float_add), _log2p(ops.float_mul), _log2p(ops.float_div),
             _log2p(ops.float_math), _log2p(ops.int_ops), float(self.is_reduction),
             float(self.num_spatial), float(self.num_reduce)], np.float32,
        )  # fmt: skip
        n_access = len(self.accesses)
        self.weights = (
            np.stack([a.iter_weights for a in self.accesses], axis=1)
            if n_access
            else np.zeros((0, 0))
        )
        rows = np.zeros((n_access, len(_ACCESS_STATIC_COLUMNS)), np.float32)
        for i, a in enumerate(self.accesses):
            rows[i, :4] = (_log2p(a.buffer_bytes), a.dtype_bytes, a.ndim, a.rewritten_layout)
            rows[i, 4 + _SCOPE_ORDER[a.scope_column]] = 1.0
        self.access_rows = rows
        self.dtype_bytes = np.asarray([a.dtype_bytes for a in self.accesses], np.float64)
        self.buffer_bytes = np.asarray([a.buffer_bytes for a in self.accesses], np.float64)


def _buffer_strides(shape: list[int]) -> list[int]:
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * max(1, shape[d + 1])
    return strides


def _block_static(block, iter_vars) -> _BlockStatic:
    iter_keys = {hash(iv.var): j for j, iv in enumerate(iter_vars)}
    iter_types = [int(iv.iter_type) for iv in iter_vars]
    num_reduce = sum(1 for t in iter_types if t == _REDUCE_ITER)
    ops = _OpCounts()
    _count_stmt_ops(block.body, ops)
    accesses: list[_AccessStatic] = []
    for is_write, regions in ((False, block.reads), (True, block.writes)):
        for region in regions:
            buffer = region.source
            shape = [_int_value(d) or 1 for d in buffer.shape]
            strides = _buffer_strides(shape)
            weights = np.zeros(len(iter_vars), np.float64)
            for dim, rng in enumerate(region.region):
                if dim >= len(strides):
                    break
                coeffs: dict[int, float] = {}
                _linear_form(rng.min, 1.0, coeffs)
                for key, coef in coeffs.items():
                    j = iter_keys.get(key)
                    if j is not None:
                        weights[j] += coef * strides[dim]
            dtype = str(buffer.dtype)
            nbytes = _dtype_bytes(dtype)
            scope = str(buffer.scope())
            name = str(buffer.name)
            accesses.append(
                _AccessStatic(
                    is_write=is_write,
                    buffer_name=name,
                    dtype_bytes=nbytes,
                    buffer_bytes=float(math.prod(shape)) * nbytes,
                    ndim=len(shape),
                    scope_column=_SCOPE_COLUMNS.get(scope, _SCOPE_COLUMNS["other"])
                    if scope
                    else _SCOPE_COLUMNS["global"],
                    iter_weights=weights,
                    rewritten_layout="layout_rewrite" in name or name.endswith("_global_rw"),
                )
            )
    body_kind = type(block.body)
    reduce_extent = 1
    for iv, iter_type in zip(iter_vars, iter_types, strict=True):
        if iter_type == _REDUCE_ITER:
            reduce_extent *= _int_value(iv.dom.extent) or 1
    return _BlockStatic(
        num_spatial=len(iter_types) - num_reduce,
        num_reduce=num_reduce,
        reduce_extent=reduce_extent,
        is_reduction=block.init is not None or num_reduce > 0,
        ops=ops,
        accesses=accesses,
        has_nested_stmts=body_kind is not _BufferStore,
    )


@dataclass
class BlockCache:
    """What tiling cannot change, per block name of one task.

    Tasks whose function marks layout-free buffers (``layout_free_buffers``) get their weight
    layout rewritten per candidate, so their accesses are not cached.
    """

    cacheable: bool = True
    blocks: dict[tuple, _BlockStatic] = field(default_factory=dict)

    @classmethod
    def for_module(cls, mod) -> BlockCache:
        """The cache for a task: off when a function of ``mod`` has layout-free buffers."""
        layout_free = any(
            getattr(f, "attrs", None) is not None and "layout_free_buffers" in f.attrs
            for _, f in mod.functions.items()
        )
        return cls(cacheable=not layout_free)

    def get(self, name: str, block, iter_vars, layout_key: tuple = (),
            num_iters: int | None = None) -> _BlockStatic:  # fmt: skip
        if not self.cacheable:
            return _block_static(block, iter_vars)
        # Schedules may reshape a block under the same name (a rewritten reduction, an rfactor)
        # and tiling changes the shapes of cache_read/cache_write buffers, which changes the
        # strides of their accesses: the key includes counts and the allocated buffer shapes.
        if num_iters is None:
            num_iters = _array_size(iter_vars)
        key = (name, num_iters, _array_size(block.reads), _array_size(block.writes), layout_key)
        return self._cached(key, block, iter_vars)

    def get_by_structure(self, name: str, block, iter_vars) -> _BlockStatic:
        if not self.cacheable:
            return _block_static(block, iter_vars)
        key = (name, tvm_ffi.structural_hash(block, map_free_vars=True))
        return self._cached(key, block, iter_vars)

    def _cached(self, key: tuple, block, iter_vars) -> _BlockStatic:
        static = self.blocks.get(key)
        if static is None:
            static = _block_static(block, iter_vars)
            self.blocks[key] = static
        return static
