"""TVM's cost models as scorers, on real seed tuning records (real TVM, no mocks)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ms_meta.data import layout
from ms_meta.data.dataset import build_dataset, record_latency
from ms_meta.data.records import load_files
from ms_meta.errors import MsMetaError
from ms_meta.eval import per_store
from ms_meta.eval.baselines import (
    MLP_COLUMNS,
    XGB_COLUMNS,
    MLPPretrained,
    PerStoreFeatures,
    XGBFewShot,
    XGBPretrained,
    pretrain_mlp,
    pretrain_xgb,
)

from ..conftest import SEED_RECORDS as SEED_ROOT

TRAIN = ("mm_512", "bmm_16_256")  # 2 x 52 records: past XGBModel's warm-up of 100 samples
HELD_OUT = "layernorm_bert"


@dataclass
class RecordsTask:
    """The fields the adapters read, straight from a database: a training task without the
    graph encoding that build_dataset adds (the held-out task comes from build_dataset)."""

    name: str
    source: Path
    workload_hash: str
    lines: np.ndarray
    latencies: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)

    @classmethod
    def of(cls, directory: Path, limit: int | None = None) -> RecordsTask:
        group = load_files(layout.database_files(directory)).groups[0]
        records = group.records[:limit]
        lines = np.asarray([r.line for r in records], np.int64)
        latencies = np.asarray([record_latency(r.run_secs, r.failed) for r in records])
        return cls(group.task, directory, group.shash, lines, latencies)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    train = [RecordsTask.of(SEED_ROOT / t, limit=52) for t in TRAIN]
    cache = tmp_path_factory.mktemp("dataset-cache")
    held = build_dataset(SEED_ROOT / HELD_OUT, cache_dir=cache, limit_per_task=24)
    return train, held.tasks[0]


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("per-store-cache")


@pytest.fixture(scope="module")
def features(data, feature_dir):
    features = PerStoreFeatures(feature_dir)
    train, held = data
    for task in [*train, held]:
        features(task)
    return features


@pytest.fixture(scope="module")
def xgb_file(data, features, tmp_path_factory):
    train, _ = data
    return pretrain_xgb(train, tmp_path_factory.mktemp("xgb") / "xgb.tar", features=features)


def _tvm_candidates(task, index):
    """MeasureCandidates of records ``index`` of ``task`` rebuilt by TVM's own
    ``TuningRecord.from_json`` from their record-file lines (an independent path from the
    adapter's trace replay), and their TuneContext."""
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.intrin import import_tensor_intrinsics

    import_tensor_intrinsics("llvm")
    files = layout.database_files(task.source)
    workload_line = files.workload.read_text().splitlines()[0]
    workload = ms.database.Workload.from_json(json.loads(workload_line))
    lines = files.records.read_text().splitlines()
    picked = [
        ms.database.TuningRecord.from_json(json.loads(lines[int(task.lines[i]) - 1])[1], workload)
        for i in index
    ]
    context = ms.TuneContext(mod=workload.mod, target=picked[0].target)
    return context, [r.as_measure_candidate() for r in picked]


def test_features_align_with_graphs_and_lines(data, features):
    from tvm.s_tir import meta_schedule as ms

    train, held = data
    assert len(features(held)) == len(held.graphs) == len(held.lines)
    for task in [*train, held]:
        found = features(task)
        assert len(found) == len(task.lines) == len(task)
        assert found.extracted.all()
        assert found.rows.shape[1] == MLP_COLUMNS
        assert all(f.shape[1] == XGB_COLUMNS for f in found.select([0, 1], XGB_COLUMNS))
    # Rows of the first, a middle and the last record equal TVM's own extraction of them.
    index = [0, len(held) // 2, len(held) - 1]
    context, candidates = _tvm_candidates(held, index)
    extractor = ms.feature_extractor.PerStoreFeature(extract_workload=True)
    expected = [t.numpy() for t in extractor.extract_from(context, candidates)]
    for got, want in zip(features(held).select(index), expected, strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))  # as XGBModel casts them


def test_cache_is_reused_without_extracting(data, features, feature_dir, monkeypatch):
    train, held = data

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(per_store, "_extract", no_extraction)
    again = PerStoreFeatures(feature_dir)
    for task in [*train, held]:
        np.testing.assert_array_equal(again(task).rows, features(task).rows)
        assert again(task).group_hash == features(task).group_hash
    assert again.stats.extracted == 0
    assert again.stats.cached == sum(len(t) for t in [*train, held])


def test_cache_extends_an_appended_record_file_and_drops_a_rewritten_one(tmp_path):
    db = tmp_path / "db"
    shutil.copytree(SEED_ROOT / "mm_512", db)
    record_file = db / layout.RECORD_FILE
    lines = record_file.read_text().splitlines(keepends=True)
    record_file.write_text("".join(lines[:6]))
    cache = tmp_path / "cache"
    first = PerStoreFeatures(cache)
    head = first(RecordsTask.of(db))
    assert first.stats.extracted == 6

    record_file.write_text("".join(lines[:10]))  # the collector appended 4 records
    grown = PerStoreFeatures(cache)
    found = grown(RecordsTask.of(db))
    assert (grown.stats.extracted, grown.stats.cached) == (4, 6)
    np.testing.assert_array_equal(found.rows[: head.rows.shape[0]], head.rows)

    record_file.write_text("".join([lines[1], lines[0], *lines[2:10]]))  # rewritten
    rewritten = PerStoreFeatures(cache)
    rewritten(RecordsTask.of(db))
    assert (rewritten.stats.extracted, rewritten.stats.cached) == (10, 0)


@pytest.mark.filterwarnings("ignore:.*Unknown file format")  # xgboost on XGBModel's model.bin
def test_pretrained_xgb_loads_into_stock_xgbmodel_and_predicts_with_its_booster(
    data, features, xgb_file
):
    from tvm.s_tir import meta_schedule as ms

    _, held = data
    assert xgb_file.with_name(xgb_file.name + ".json").is_file()  # the manifest
    scorer = XGBPretrained.load(xgb_file, features)
    query = np.arange(len(held))
    zero_shot = scorer.score(held, np.zeros(0, np.int64), query)
    np.testing.assert_array_equal(zero_shot, scorer.score(held, np.zeros(0, np.int64), query))

    # The stock model as tune_tir would use it: loaded data counts towards the warm-up, so
    # predict() uses the booster (random scores would differ between calls).
    model = ms.cost_model.XGBModel()
    model.load(str(xgb_file))
    assert model.data_size >= model.num_warmup_samples
    context, candidates = _tvm_candidates(held, query)
    first = model.predict(context, candidates)
    np.testing.assert_array_equal(first, model.predict(context, candidates))
    np.testing.assert_allclose(first, zero_shot, rtol=1e-6)


@pytest.mark.slow  # two full refits of the pretrained model: 4 to 40 s on this shared machine
def test_pretrained_xgb_adapts_deterministically(data, features, xgb_file):
    _, held = data
    scorer = XGBPretrained.load(xgb_file, features)
    support, query = np.arange(8), np.arange(8, len(held))
    adapted = scorer.score(held, support, query)
    np.testing.assert_array_equal(adapted, scorer.score(held, support, query))
    assert not np.allclose(adapted, scorer.score(held, support[:0], query))
    assert scorer.model.data_size == sum(len(t) for t in data[0])  # the shared model is untouched


def test_stock_xgb_is_random_below_warm_up_and_kshot_uses_the_support(data, features):
    _, held = data
    query = np.arange(16, len(held))
    stock, kshot = XGBFewShot.stock(features), XGBFewShot.kshot(features)
    assert (stock.name, kshot.name) == ("xgb-stock", "xgb-kshot")
    one, other = np.arange(8), np.arange(8, 16)
    # Below 100 samples stock XGBModel ignores what it measured: same scores for any support.
    np.testing.assert_array_equal(stock.score(held, one, query), stock.score(held, other, query))
    fitted = kshot.score(held, one, query)
    np.testing.assert_array_equal(fitted, kshot.score(held, one, query))
    assert not np.array_equal(fitted, kshot.score(held, other, query))


def test_mlp_pretrained_scores_adapts_saves_and_loads(data, features, tmp_path):
    train, held = data
    path = tmp_path / "mlp.tar"
    scorer = pretrain_mlp(
        train, features=features, epochs=10, validation_split=0.5, seed=1, path=path
    )
    empty, query = np.zeros(0, np.int64), np.arange(8, len(held))
    zero_shot = scorer.score(held, empty, query)
    np.testing.assert_array_equal(zero_shot, scorer.score(held, empty, query))
    adapted = scorer.score(held, np.arange(8), query)
    np.testing.assert_array_equal(adapted, scorer.score(held, np.arange(8), query))
    assert not np.allclose(adapted, zero_shot)
    loaded = MLPPretrained.load(path, features)
    np.testing.assert_allclose(loaded.score(held, empty, query), zero_shot, rtol=1e-5)


def test_stock_mlp_full_training_fails_on_this_torch_without_the_shim(data, features):
    # Documents why pretrain_mlp wraps train_full: if this starts passing, drop the shim.
    from tvm.s_tir.meta_schedule.cost_model.mlp_model import (
        SegmentSumMLPTrainer,
        State,
        TrainerConfig,
    )

    train, _ = data
    state = State()
    for task in train:
        found = features(task)
        state.add_to_group(found.select(np.arange(len(task))), task.latencies, found.group_hash)
    with pytest.raises(TypeError, match="verbose"):
        SegmentSumMLPTrainer(TrainerConfig(test_split=0.5), state).train_full()


def test_bad_inputs_raise_clear_errors(data, features, tmp_path):
    train, _ = data
    with pytest.raises(MsMetaError, match="no training tasks"):
        pretrain_xgb([], tmp_path / "x.tar", features=features)
    with pytest.raises(MsMetaError, match="not found"):
        XGBPretrained.load(tmp_path / "missing.tar", features)
    junk = tmp_path / "junk.tar"
    junk.write_text("not a tar")
    with pytest.raises(MsMetaError, match="not an XGBModel file"):
        XGBPretrained.load(junk, features)
    with pytest.raises(MsMetaError, match="at least one on each side"):
        pretrain_mlp(train[:1], features=features, epochs=10)
