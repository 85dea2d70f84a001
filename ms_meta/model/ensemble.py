"""``PessimisticEnsemble``: a MetaSchedule CostModel that scores each candidate by the member
that likes it least.

An evolutionary search driven by one model climbs to wherever that model's error is largest.
In session 9's One-Shot runs each model's picks were schedules another model found ordinary,
and on a dense layer they ran up to 20x slower than the best known schedule. Taking the lowest
of the members' scores penalizes such confident extrapolations: a candidate ranks high only if
every member ranks it high. The members' scores are standardized per ``predict`` call first,
since different weights score on different scales.

Each member encodes the candidates itself, so prediction costs the members' sum. Meant for
One-Shot mode (``ms_meta.one_shot.tune_tir(..., cost_model=PessimisticEnsemble([...]))``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.cost_model import PyCostModel

__all__ = ["PessimisticEnsemble", "pessimistic_scores"]


def pessimistic_scores(member_scores: Sequence[np.ndarray]) -> np.ndarray:
    """The lowest standardized score of each candidate over the members.

    Each member's scores are z-scored over the candidates (a member whose scores are all equal
    contributes zeros). Shapes: ``member_scores`` M arrays ``[n]`` -> ``[n]`` float64.
    """
    if not member_scores:
        raise ValueError("pessimistic_scores needs the scores of at least one member")
    standardized = []
    for scores in member_scores:
        scores = np.asarray(scores, np.float64).reshape(-1)
        spread = scores.std()
        standardized.append((scores - scores.mean()) / spread if spread > 0 else 0.0 * scores)
    if len({len(s) for s in standardized}) != 1:
        raise ValueError(f"members scored different numbers of candidates: {standardized}")
    return np.min(standardized, axis=0)


@derived_object
class PessimisticEnsemble(PyCostModel):
    """Several cost models (e.g. ``MetaCostModel``\\ s with different weights) as one.

    ``predict`` returns :func:`pessimistic_scores` of the members' predictions; ``update``,
    ``save`` and ``load`` go to every member (member ``i`` saves to ``PATH.i``).
    """

    def __init__(self, members: Sequence) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = list(members)
        # what One-Shot reports about its model
        self.pretrained = all(getattr(m, "pretrained", False) for m in self.members)
        self.weights_source = "min of " + " + ".join(
            str(getattr(m, "weights_source", None) or type(m).__name__) for m in self.members
        )

    def predict(self, context, candidates) -> np.ndarray:
        if not candidates:
            return np.zeros(0, np.float64)
        return pessimistic_scores(
            [np.asarray(m.predict(context, candidates), np.float64) for m in self.members]
        )

    def update(self, context, candidates, results) -> None:
        for member in self.members:
            member.update(context, candidates, results)

    def save(self, path: str) -> None:
        for index, member in enumerate(self.members):
            member.save(f"{path}.{index}")

    def load(self, path: str) -> None:
        for index, member in enumerate(self.members):
            member.load(f"{path}.{index}")
