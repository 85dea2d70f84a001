"""Settings of the one-shot search (and of which tasks it measures), and the conventions of its
stored records."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "PREDICTED_RUN_SECS",
    "SearchSettings",
]

# A predicted record has no measured latency. It is stored with this run time, in seconds
# (about 11.6 days): no real kernel takes that long, so the value cannot pass for a measurement,
# and it is below MetaSchedule's failure marker (1e10 s), so the record counts as valid and
# ``compile_tir``/``compile_relax`` apply it. Any measured record of the same workload is faster,
# so a database holding both always prefers the measurement.
PREDICTED_RUN_SECS = 1.0e6


@dataclass(frozen=True)
class SearchSettings:
    """How MetaSchedule's evolutionary search runs when only the cost model scores candidates.

    The cost of one task is about ``population_size * (1 + genetic_num_iters *
    genetic_mutate_prob)`` schedule instantiations (trace replay plus postprocessors, run on
    ``num_threads`` threads: about 4 ms of CPU each for a dense layer, 20 ms for a ResNet-18
    3x3 conv2d) and ``population_size * (genetic_num_iters + 1)`` predictions (about 1-2 ms
    each, serial). With the defaults the ResNet-18 conv2d costs about 7 CPU-seconds, so about
    4 s on two idle cores.

    Parameters
    ----------
    population_size : int
        Schedules sampled at random from the design space, and kept per generation.
    genetic_num_iters : int
        Generations of mutation; every generation is scored by the cost model.
    genetic_mutate_prob : float
        Probability that a child is a mutant rather than a copy of its parent.
    finalists : int
        The best-scored distinct schedules the search returns (the heap size); ``verify`` measures
        the best of them.
    init_min_unmeasured : int
        The search gives up when fewer random samples than this replay successfully.
    num_threads : int or None
        Threads for sampling and mutation; ``None`` uses the target's ``num-cores``. A seed
        reproduces the same picks only with one thread: threads take samples dynamically, each
        with its own random state.
    verify_uncertain : int
        Measure the ``verify_uncertain`` best-ranked candidates of the tasks whose confidence
        is ``far`` or ``none`` (:data:`~ms_meta.one_shot.result.UNCERTAIN_LABELS`: the nearest
        library task is far, or the task was searched) and keep the fastest; the other tasks
        are not measured. 0 (default): none. With ``verify`` as well, an uncertain task gets
        the larger of the two.
    """

    population_size: int = 128
    genetic_num_iters: int = 2
    genetic_mutate_prob: float = 0.85
    finalists: int = 16
    init_min_unmeasured: int = 32
    num_threads: int | None = None
    verify_uncertain: int = 0

    def __post_init__(self) -> None:
        if self.population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {self.population_size}")
        if self.genetic_num_iters < 0:
            raise ValueError(f"genetic_num_iters must be >= 0, got {self.genetic_num_iters}")
        if not 0.0 <= self.genetic_mutate_prob <= 1.0:
            raise ValueError(
                f"genetic_mutate_prob must be in [0, 1], got {self.genetic_mutate_prob}"
            )
        if self.finalists < 1:
            raise ValueError(f"finalists must be >= 1, got {self.finalists}")
        if self.init_min_unmeasured < 1:
            raise ValueError(f"init_min_unmeasured must be >= 1, got {self.init_min_unmeasured}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.verify_uncertain < 0:
            raise ValueError(f"verify_uncertain must be >= 0, got {self.verify_uncertain}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
