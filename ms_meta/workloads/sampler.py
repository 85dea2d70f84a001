"""A shape sampler: thousands of distinct, realistic tuning tasks for breadth-first collection.

Ranking unseen tasks improves most with the number of distinct training tasks, and the named
tasks of the presets are few (a few hundred per CPU). This module draws many more from the
ranges real networks use: convolutions of every kernel size 1-7 and strides 1-2 (plain, fused
with bias and ReLU, grouped, depthwise), dense layers and batched matmuls from GEMV (one row)
to tall-skinny, pooling, softmax and layer normalization, with channel counts mostly multiples
of 8 or 16 and some odd ones.

The draw is a deterministic stream per seed: ``sample_workloads(n, seed)`` is a prefix of
``sample_workloads(m, seed)`` for ``n < m``, so a collection can grow without changing the
tasks it already measured. Tasks are de-duplicated by the structural hash of their PrimFunc
and against the named tasks and presets, and bounded in FLOPs and bytes so that one candidate
measures in well under a second. ``SAMPLER_VERSION`` changes whenever the stream does.

On the command line a sampled set is the pseudo-spec ``sampled:COUNT[:SEED]``
(``ms-meta collect sampled:2000:0``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ms_meta.errors import WorkloadSpecError
from ms_meta.workloads.spec import Workload, parse_spec

__all__ = [
    "KIND_WEIGHTS",
    "MAX_SAMPLED_BYTES",
    "MAX_SAMPLED_FLOPS",
    "SAMPLED_PREFIX",
    "SAMPLER_VERSION",
    "SamplerLimits",
    "is_sampled_spec",
    "parse_sampled_spec",
    "sample_workloads",
]

SAMPLER_VERSION = 1
SAMPLED_PREFIX = "sampled"
# A badly scheduled candidate runs 10-50x slower than a good one, and every candidate runs at
# least 3 times: 2.5e8 FLOPs (a ResNet-18 3x3 convolution) keeps most candidates under a second.
MAX_SAMPLED_FLOPS = 2.5e8
MAX_SAMPLED_BYTES = 48 * 2**20  # all float32 tensors of a task together (memory-bound kinds)
MIN_SAMPLED_FLOPS = 2e3  # smaller tasks time little but the runner's overhead
_MAX_DRAWS_PER_TASK = 200  # rejected draws (too large, duplicate) before giving up

# Share of the draws per operator (relative weights).
KIND_WEIGHTS: dict[str, float] = {
    "conv2d_nchw": 0.22,
    "conv2d_bias_relu": 0.08,
    "group_conv2d_nchw": 0.07,
    "depthwise_conv2d": 0.08,
    "dense": 0.13,
    "matmul_bias": 0.05,
    "batch_matmul": 0.09,
    "batch_matmul_nn": 0.05,
    "max_pool2d": 0.03,
    "avg_pool2d": 0.03,
    "global_avg_pool": 0.02,
    "softmax": 0.08,
    "layer_norm": 0.07,
}

# Channel counts of real CNNs (ResNet, MobileNet, EfficientNet, RegNet, DenseNet, Inception).
_CHANNELS = (
    16, 24, 32, 40, 48, 56, 64, 72, 80, 96, 112, 120, 128, 144, 160, 192, 224, 240, 256, 288,
    320, 384, 432, 448, 480, 512, 576, 640, 672, 720, 768, 960, 1024,
)  # fmt: skip
_STEM_CHANNELS = (1, 3, 4)
_SPATIAL_COMMON = (7, 14, 28, 56, 112, 224)
_SPATIAL_OTHER = (
    8, 10, 12, 13, 15, 16, 17, 19, 20, 24, 26, 30, 32, 35, 38, 40, 48, 52, 60, 64, 71, 73, 75,
    80, 96, 100, 128, 147, 149, 150, 160, 192,
)  # fmt: skip
_KERNEL_WEIGHTS = {1: 0.28, 2: 0.04, 3: 0.36, 4: 0.04, 5: 0.13, 6: 0.03, 7: 0.12}
_HIDDEN = (64, 128, 256, 384, 512, 768, 1024, 1280, 1536, 2048, 2560, 3072, 4096)
_HEAD_DIMS = (32, 40, 48, 64, 80, 96, 128)
_HEADS = (1, 2, 4, 6, 8, 12, 16, 24, 32)
# classifier widths; 50257 // 16: a 16-way shard of a GPT-2 vocabulary
_CLASSES = (10, 100, 1000, 1001, 2, 21, 80, 91, 50257 // 16)


@dataclass(frozen=True)
class SamplerLimits:
    """Bounds on every sampled task.

    Attributes
    ----------
    max_flops, min_flops : float
        FLOPs of one run of the task.
    max_bytes : int
        All its float32 tensors together.
    """

    max_flops: float = MAX_SAMPLED_FLOPS
    min_flops: float = MIN_SAMPLED_FLOPS
    max_bytes: int = MAX_SAMPLED_BYTES


# -- size draws ------------------------------------------------------------------------------


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def _round_to(value: int, multiple: int) -> int:
    return max(multiple, multiple * round(value / multiple))


def _channels(rng: random.Random, low: int = 16, high: int = 1024) -> int:
    """Mostly a channel count of a real network; sometimes any multiple of 8, or any number."""
    u = rng.random()
    if u < 0.72:
        return rng.choice([c for c in _CHANNELS if low <= c <= high] or [low])
    if u < 0.9:
        return min(high, _round_to(_log_uniform(rng, low, high), 8))
    return _log_uniform(rng, low, high)


def _spatial(rng: random.Random) -> int:
    u = rng.random()
    if u < 0.5:
        return rng.choice(_SPATIAL_COMMON)
    if u < 0.75:
        return rng.choice(_SPATIAL_OTHER)
    return _log_uniform(rng, 7, 224)


def _hw(rng: random.Random) -> tuple[int, int]:
    h = _spatial(rng)
    if rng.random() < 0.12:  # rectangular feature maps (detection, video frames)
        return h, max(7, min(224, _log_uniform(rng, max(7, h // 2), min(224, 2 * h))))
    return h, h


def _batch(rng: random.Random) -> int:
    return 1 if rng.random() < 0.85 else rng.choice((2, 4, 8))


def _weighted(rng: random.Random, weights: dict) -> object:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _tokens(rng: random.Random) -> int:
    """Rows of a transformer's activations: 1 (decoding) to 512."""
    u = rng.random()
    if u < 0.15:
        return 1
    if u < 0.55:
        return rng.choice((16, 32, 49, 64, 77, 128, 196, 197, 256, 384, 512))
    return _log_uniform(rng, 2, 512)


def _hidden(rng: random.Random) -> int:
    u = rng.random()
    if u < 0.65:
        return rng.choice(_HIDDEN)
    if u < 0.9:
        return _round_to(_log_uniform(rng, 64, 4096), 16)
    return _log_uniform(rng, 64, 4096)


def _pad(rng: random.Random, kernel: int) -> int:
    return (kernel - 1) // 2 if rng.random() < 0.8 else rng.choice((0, kernel // 2))


# -- one draw per operator -------------------------------------------------------------------


def _conv(rng: random.Random) -> tuple[int, ...]:
    kernel = int(_weighted(rng, _KERNEL_WEIGHTS))
    stride = 1 if rng.random() < 0.7 else 2
    h, w = _hw(rng)
    c = rng.choice(_STEM_CHANNELS) if rng.random() < 0.08 else _channels(rng)
    k = _channels(rng)
    return (_batch(rng), c, h, w, k, kernel, kernel, stride, _pad(rng, kernel))


def _group_conv(rng: random.Random) -> tuple[int, ...]:
    groups = rng.choice((2, 4, 8, 16, 32, 64))
    per_group = rng.choice((2, 4, 8, 16, 24, 32, 48, 64, 128))
    c = groups * per_group
    k = c if rng.random() < 0.7 else 2 * c
    kernel = int(_weighted(rng, {3: 0.7, 1: 0.1, 5: 0.1, 7: 0.1}))
    stride = 1 if rng.random() < 0.7 else 2
    h, w = _hw(rng)
    return (_batch(rng), c, h, w, k, kernel, kernel, stride, _pad(rng, kernel), groups)


def _depthwise(rng: random.Random) -> tuple[int, ...]:
    kernel = int(_weighted(rng, {3: 0.6, 5: 0.25, 7: 0.1, 1: 0.05}))
    stride = 1 if rng.random() < 0.65 else 2
    h, w = _hw(rng)
    return (_batch(rng), _channels(rng, 16, 1536), h, w, kernel, kernel, stride, kernel // 2)


def _matrix(rng: random.Random) -> tuple[int, int, int]:
    """(M, N, K) across aspect ratios: GEMV, small batches, token blocks, tall-skinny."""
    shape = _weighted(rng, {"gemv": 0.18, "tokens": 0.5, "tall": 0.16, "head": 0.16})
    if shape == "gemv":
        return 1, _hidden(rng), _hidden(rng)
    if shape == "tall":  # many rows, few columns (scores, gates, small projections)
        return _log_uniform(rng, 256, 4096), _log_uniform(rng, 1, 64), _hidden(rng)
    if shape == "head":  # classifier heads over small batches
        return _log_uniform(rng, 1, 64), rng.choice(_CLASSES), _hidden(rng)
    return _tokens(rng), _hidden(rng), _hidden(rng)


def _batched(rng: random.Random) -> tuple[int, int, int, int]:
    """(B, M, N, K): attention's scores and context, or generic batched products."""
    form = _weighted(rng, {"scores": 0.4, "context": 0.4, "generic": 0.2})
    heads, head_dim, seq = rng.choice(_HEADS) * _batch(rng), rng.choice(_HEAD_DIMS), _tokens(rng)
    if form == "scores":  # Q K^T: [seq, dim] x [dim, kv_len]
        return heads, seq, max(seq, _tokens(rng)), head_dim
    if form == "context":  # softmax(..) V: [seq, kv_len] x [kv_len, dim]
        return heads, seq, head_dim, max(seq, _tokens(rng))
    return (
        _log_uniform(rng, 1, 64),
        _tokens(rng),
        _log_uniform(rng, 8, 512),
        _log_uniform(rng, 8, 512),
    )


def _pool(rng: random.Random) -> tuple[int, ...]:
    kernel = int(_weighted(rng, {2: 0.35, 3: 0.5, 5: 0.1, 7: 0.05}))
    stride = kernel if kernel == 2 else (2 if rng.random() < 0.7 else 1)
    h, w = _hw(rng)
    pad = rng.choice((0, kernel // 2)) if kernel > 2 else 0
    return (_batch(rng), _channels(rng), h, w, kernel, stride, pad)


def _global_pool(rng: random.Random) -> tuple[int, ...]:
    h, w = _hw(rng)
    return (_batch(rng), _channels(rng, 16, 2048), min(h, 56), min(w, 56))


def _softmax(rng: random.Random) -> tuple[int, ...]:
    form = _weighted(rng, {"rows": 0.4, "attention": 0.45, "attention4": 0.15})
    if form == "rows":
        return (_tokens(rng), _weighted(rng, {c: 1 for c in (*_CLASSES, *_HIDDEN)}))
    seq = _tokens(rng)
    kv = max(seq, _tokens(rng))
    if form == "attention":
        return (rng.choice(_HEADS), seq, kv)
    return (rng.choice((1, 2, 4)), rng.choice(_HEADS), seq, kv)


def _layer_norm(rng: random.Random) -> tuple[int, ...]:
    rows = _tokens(rng) * (1 if rng.random() < 0.8 else rng.choice((2, 4, 8)))
    return (rows, _hidden(rng))


_DRAWS: dict[str, Callable[[random.Random], tuple]] = {
    "conv2d_nchw": _conv,
    "conv2d_bias_relu": _conv,
    "group_conv2d_nchw": _group_conv,
    "depthwise_conv2d": _depthwise,
    "dense": _matrix,
    "matmul_bias": _matrix,
    "batch_matmul": _batched,
    "batch_matmul_nn": _batched,
    "max_pool2d": _pool,
    "avg_pool2d": _pool,
    "global_avg_pool": _global_pool,
    "softmax": _softmax,
    "layer_norm": _layer_norm,
}


# -- the stream ------------------------------------------------------------------------------


def _fits(workload: Workload, limits: SamplerLimits) -> bool:
    if not limits.min_flops <= workload.flops <= limits.max_flops:
        return False
    inputs, outputs = workload.shapes
    return 4 * sum(math.prod(s) for s in (*inputs, *outputs)) <= limits.max_bytes


def _structural_hash(workload: Workload) -> int:
    import tvm_ffi

    return int(tvm_ffi.structural_hash(workload.build()["main"]))


def _drawn(rng: random.Random, limits: SamplerLimits) -> Iterator[Workload]:
    """An endless stream of valid, bounded workloads (duplicates included)."""
    kinds = list(KIND_WEIGHTS)
    weights = [KIND_WEIGHTS[k] for k in kinds]
    rejected = 0
    while True:
        op = rng.choices(kinds, weights=weights)[0]
        params = _DRAWS[op](rng)
        try:
            workload = parse_spec(f"{op}:{','.join(str(int(p)) for p in params)}")
        except WorkloadSpecError:
            workload = None
        if workload is None or not _fits(workload, limits):
            rejected += 1
            if rejected > _MAX_DRAWS_PER_TASK:
                raise WorkloadSpecError(
                    f"the sampler found no task within {limits} in {_MAX_DRAWS_PER_TASK} draws"
                )
            continue
        rejected = 0
        yield workload


def _named_hashes() -> tuple[set[str], set[int]]:
    from ms_meta.workloads.presets import NAMED, PRESETS

    named = (*NAMED.values(), *(spec for layers in PRESETS.values() for spec in layers))
    specs = {parse_spec(s).spec for s in named}
    return specs, {_structural_hash(parse_spec(s)) for s in specs}


def sample_workloads(
    count: int,
    seed: int = 0,
    *,
    limits: SamplerLimits = SamplerLimits(),
    exclude: Iterable[Workload] | None = None,
) -> list[Workload]:
    """``count`` distinct sampled workloads, the same ones for the same seed.

    Parameters
    ----------
    count : int
        How many tasks; the first ``n`` of a larger count are the tasks of ``count = n``.
    seed : int
        Seed of the stream.
    limits : SamplerLimits
        FLOP and byte bounds of every task.
    exclude : iterable of Workload, optional
        Tasks to leave out besides the named tasks and presets (always left out).

    Returns
    -------
    list of Workload
        Distinct by spec and by the structural hash of their PrimFunc.

    Raises
    ------
    WorkloadSpecError
        When ``count`` is negative, or the limits leave no room for new tasks.
    """
    if count < 0:
        raise WorkloadSpecError(f"a sampled set needs a count >= 0, got {count}")
    specs, hashes = _named_hashes()
    for workload in exclude or ():
        specs.add(workload.spec)
        hashes.add(_structural_hash(workload))
    rng = random.Random(f"ms-meta sampler v{SAMPLER_VERSION} seed {seed}")
    out: list[Workload] = []
    duplicates = 0
    for workload in _drawn(rng, limits):
        if len(out) >= count:
            break
        if workload.spec in specs:
            duplicates += 1
        else:
            specs.add(workload.spec)
            key = _structural_hash(workload)
            if key in hashes:
                duplicates += 1
            else:
                hashes.add(key)
                out.append(workload)
                duplicates = 0
        if duplicates > _MAX_DRAWS_PER_TASK:
            raise WorkloadSpecError(
                f"the sampler ran out of distinct tasks after {len(out)} of {count}"
            )
    return out


def is_sampled_spec(text: str) -> bool:
    """Whether ``text`` names a sampled set (``sampled:COUNT[:SEED]``)."""
    return text.strip().split(":", 1)[0] == SAMPLED_PREFIX


def parse_sampled_spec(text: str) -> tuple[int, int]:
    """``(count, seed)`` of ``sampled:COUNT[:SEED]`` (seed 0 when left out).

    Raises
    ------
    WorkloadSpecError
        When the text is not of that form.
    """
    parts = text.strip().split(":")
    if parts[0] != SAMPLED_PREFIX or len(parts) not in (2, 3):
        raise WorkloadSpecError(
            f"expected {SAMPLED_PREFIX}:COUNT or {SAMPLED_PREFIX}:COUNT:SEED "
            f"(e.g. {SAMPLED_PREFIX}:2000:0), got {text!r}"
        )
    try:
        count, seed = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        raise WorkloadSpecError(
            f"{text!r}: COUNT and SEED of {SAMPLED_PREFIX}:COUNT:SEED must be integers"
        ) from None
    if count < 1:
        raise WorkloadSpecError(f"{text!r}: COUNT must be >= 1")
    return count, seed
