"""Shared fixtures: real TVM targets, tasks and sampled MetaSchedule candidates."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Committed copies of a few seed databases (some trimmed; see its README.md), so that the tests
# that read real MetaSchedule records run on a clean checkout, where ../shared does not exist.
SEED_RECORDS = REPO_ROOT / "tests" / "fixtures" / "seed_records"
RECORDS_ROOT = REPO_ROOT / "tuning_records"


def tree_hash(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove that reading never writes)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True, scope="session")
def _isolated_record_store(tmp_path_factory):
    """Commands record their measurements into the record store by default: during the tests
    (and in the CLI processes they start, which inherit the environment) that store is a
    temporary file, never the user's."""
    from ms_meta.store.sql import STORE_ENV

    previous = os.environ.get(STORE_ENV)
    os.environ[STORE_ENV] = str(tmp_path_factory.mktemp("store") / "records.sqlite")
    yield
    if previous is None:
        os.environ.pop(STORE_ENV, None)
    else:
        os.environ[STORE_ENV] = previous


@pytest.fixture(autouse=True)
def _fresh_record_store(monkeypatch, tmp_path_factory):
    """Each test starts with an empty record store: One-Shot and the cost model learn from the
    store, so one test's measurements must not change what another test picks."""
    from ms_meta.store.sql import STORE_ENV

    monkeypatch.setenv(STORE_ENV, str(tmp_path_factory.mktemp("store") / "records.sqlite"))


@pytest.fixture(autouse=True)
def _isolate_meta_schedule_logging():
    """Each test starts with the MetaSchedule logger's handlers as they were: tune_tir
    reconfigures that logger, and stray handlers from one test must not reach the next."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture(scope="session")
def target():
    from ms_meta.tuning.intrin import import_tensor_intrinsics
    from ms_meta.tuning.target import host_target

    import_tensor_intrinsics("llvm")
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    return host_target()


@functools.lru_cache(maxsize=32)
def _sample(spec: str, count: int, seed: int):
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.intrin import import_tensor_intrinsics
    from ms_meta.tuning.target import host_target
    from ms_meta.workloads import resolve_one

    import_tensor_intrinsics("llvm")
    workload = resolve_one(spec)
    mod = workload.build()
    context = ms.TuneContext(
        mod=mod,
        target=host_target(),
        space_generator="post-order-apply",
        search_strategy=ms.search_strategy.ReplayTrace(),
        task_name=workload.name,
        rand_state=seed,
        num_threads=2,
    )
    context.pre_tuning(
        max_trials=count,
        num_trials_per_iter=count,
        design_spaces=context.generate_design_space(),
        database=ms.database.MemoryDatabase(),
        cost_model=None,
    )
    candidates = context.generate_measure_candidates()
    return context, list(candidates)


@pytest.fixture(scope="session")
def sample_candidates():
    """``sample_candidates(spec, count=8, seed=1) -> (TuneContext, [MeasureCandidate])``:
    random schedules with postprocessors applied, as the evolutionary search scores them."""

    def sample(spec: str, count: int = 8, seed: int = 1):
        return _sample(spec, count, seed)

    return sample
