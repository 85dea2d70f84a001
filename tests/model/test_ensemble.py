"""The pessimistic ensemble: its score rule, and One-Shot driven by two real MetaCostModels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ms_meta import MetaCostModel
from ms_meta.model.ensemble import PessimisticEnsemble, pessimistic_scores
from ms_meta.one_shot import SearchSettings, run_tir
from ms_meta.workloads import resolve_one

WEIGHTS = Path(__file__).resolve().parents[2] / "ms_meta" / "weights"
TINY = SearchSettings(population_size=16, genetic_num_iters=1, finalists=4, init_min_unmeasured=4)


def test_a_candidate_scores_what_the_member_liking_it_least_says():
    first = np.array([1.0, 2.0, 3.0, 10.0])  # loves candidate 3
    second = np.array([4.0, 3.0, 2.0, 1.0])  # hates it
    combined = pessimistic_scores([first, second])
    z_first = (first - first.mean()) / first.std()
    z_second = (second - second.mean()) / second.std()
    assert combined == pytest.approx(np.minimum(z_first, z_second))
    assert np.argmax(first) == 3 and np.argmax(combined) != 3
    # the scale of a member does not matter, a member with no opinion adds zeros
    assert pessimistic_scores([100 * first, second]) == pytest.approx(combined)
    assert pessimistic_scores([first, np.full(4, 7.0)]) == pytest.approx(np.minimum(z_first, 0))


def test_bad_ensembles_are_refused():
    with pytest.raises(ValueError, match="at least one member"):
        pessimistic_scores([])
    with pytest.raises(ValueError, match="different numbers of candidates"):
        pessimistic_scores([np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match="at least two members"):
        PessimisticEnsemble([MetaCostModel(weights=None)])


def test_one_shot_with_two_weights_files(target, tmp_path):
    members = [
        MetaCostModel(weights=str(path), target=target, allow_other_cpu=True)
        for path in sorted(WEIGHTS.glob("*.pt"))
    ]
    if len(members) < 2:
        pytest.skip("needs two shipped weights files")
    ensemble = PessimisticEnsemble(members)
    assert ensemble.pretrained and ensemble.weights_source.startswith("min of ")
    mod = resolve_one("dense:32,32,32").build()
    result = run_tir(mod, target, tmp_path, cost_model=ensemble, settings=TINY)
    (task,) = result.tasks
    assert task.status == "predicted" and task.scored >= TINY.population_size
    # every member scored every candidate, and none was trained on measurements
    for member in members:
        assert member.summary.predicted >= task.scored and member.summary.updates == 0
