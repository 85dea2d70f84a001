"""Dataset builder: real tuning records -> graphs and labels, with the append-aware .npz cache."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ms_meta.data import dataset as dataset_mod
from ms_meta.data import layout
from ms_meta.data.dataset import ENCODE, build_dataset, default_cache_dir
from ms_meta.data.merge import merge_databases
from ms_meta.data.records import MALFORMED, REBUILD
from ms_meta.errors import DatabaseError, MsMetaError
from ms_meta.feature import graph as graph_mod
from ms_meta.feature import schema

RECORDS = Path(__file__).resolve().parents[2] / "tuning_records" / "llvm-rocketlake-2c"
DENSE, SOFTMAX, LAYER_NORM = "dense_128_768_768", "softmax_12_128_128", "layer_norm_128_768"
LINES = 40  # record lines copied per task: enough variety, fast to featurize

pytestmark = pytest.mark.skipif(
    not all((RECORDS / t / layout.RECORD_FILE).is_file() for t in (DENSE, SOFTMAX, LAYER_NORM)),
    reason=f"tuning records not found under {RECORDS}",
)


def source_lines(task: str, n: int = LINES + 10) -> list[str]:
    """The first ``n`` complete lines of a task's record file (the collector may be appending)."""
    out = []
    with open(RECORDS / task / layout.RECORD_FILE, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n") or len(out) == n:
                break
            out.append(line)
    assert len(out) == n, f"{task} has fewer than {n} complete record lines"
    return out


def make_db(root: Path, task: str, n: int = LINES) -> Path:
    """A copy of ``task`` with its first ``n`` record lines."""
    dest = root / task
    dest.mkdir(parents=True)
    for name in (layout.WORKLOAD_FILE, layout.META_FILE):
        (dest / name).write_bytes((RECORDS / task / name).read_bytes())
    (dest / layout.RECORD_FILE).write_text("".join(source_lines(task, n)), encoding="utf-8")
    return dest


def append(db: Path, text: str) -> None:
    with open(db / layout.RECORD_FILE, "a", encoding="utf-8") as f:
        f.write(text)


def tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def same_graph(a, b) -> bool:
    fields = ("node_type", "x", "edge_index", "edge_type", "edge_attr", "task")
    return all(
        getattr(a, f).dtype == getattr(b, f).dtype and np.array_equal(getattr(a, f), getattr(b, f))
        for f in fields
    )


@pytest.fixture
def encode_calls(monkeypatch):
    """Counts calls of ``encode_primfunc`` (the builder looks it up at call time)."""
    calls = []
    original = graph_mod.encode_primfunc

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(graph_mod, "encode_primfunc", counting)
    return calls


@pytest.fixture
def dbs(tmp_path) -> Path:
    root = tmp_path / "records"
    for task in (DENSE, SOFTMAX, LAYER_NORM):
        make_db(root, task)
    return root


def test_build_shapes_labels_and_cache_hit(dbs, tmp_path, encode_calls):
    cache = tmp_path / "cache"
    before = tree_hash(dbs)
    seen = []
    ds = build_dataset(dbs, cache_dir=cache, progress=lambda *a: seen.append(a))

    assert [t.name for t in ds.tasks] == sorted([DENSE, SOFTMAX, LAYER_NORM])
    assert ds.num_records == 3 * LINES and len(encode_calls) == 3 * LINES
    assert ds.stats.encoded == 3 * LINES and ds.stats.cache_files_written == 3
    for task in ds.tasks:
        meta = json.loads((dbs / task.name / layout.META_FILE).read_text())
        assert task.op == meta["op"] and task.source == dbs / task.name
        workload_line = (dbs / task.name / layout.WORKLOAD_FILE).read_text().splitlines()[0]
        assert task.workload_hash == json.loads(workload_line)[0]
        assert len(task.graphs) == task.latencies.shape[0] == task.labels.shape[0] == LINES
        assert task.labels.dtype == np.float32
        assert task.labels.min() >= 0 and task.labels.max() == pytest.approx(1.0)
        assert task.task_features.shape == (schema.NUM_TASK_FEATURES,)
        assert task.lines.tolist() == list(range(1, LINES + 1))
        # latency = minimum over the repeats; label = best / latency
        runs = [json.loads(line)[1][1] for line in source_lines(task.name, LINES)]
        np.testing.assert_allclose(task.latencies, [min(r) for r in runs])
        np.testing.assert_allclose(task.labels, task.latencies.min() / task.latencies, rtol=1e-6)
        for g in task.graphs:
            assert g.x.shape == (g.num_nodes, schema.NUM_NODE_FEATURES)
            assert g.edge_index.shape == (2, g.num_edges) and g.edge_index.max() < g.num_nodes
            assert g.edge_attr.shape == (g.num_edges, schema.NUM_EDGE_FEATURES)
            assert np.array_equal(g.task, task.task_features)
    assert seen[-1][:2] == (3 * LINES, 3 * LINES)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)

    encode_calls.clear()
    again = build_dataset(dbs, cache_dir=cache)
    assert len(encode_calls) == 0
    assert again.stats.cached == 3 * LINES and again.stats.cache_files_written == 0
    for a, b in zip(ds.tasks, again.tasks, strict=True):
        assert (a.name, a.op, a.workload_hash) == (b.name, b.op, b.workload_hash)
        assert all(same_graph(g, h) for g, h in zip(a.graphs, b.graphs, strict=True))
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.latencies, b.latencies)
    assert tree_hash(dbs) == before  # the builder never writes into a database


def test_cache_file_is_plain_npz(tmp_path):
    db = make_db(tmp_path / "records", DENSE, n=8)
    cache = tmp_path / "cache"
    ds = build_dataset(db, cache_dir=cache)
    (path,) = cache.glob("*.npz")
    assert path.name.startswith(DENSE)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"]))
    assert meta["identity"]["feature_version"] == schema.FEATURE_VERSION
    assert meta["identity"]["format_version"] == layout.DATASET_FORMAT_VERSION
    assert meta["covered_lines"] == 8 and meta["num_graphs"] == 8
    graphs = ds.tasks[0].graphs
    assert arrays["node_ptr"].tolist() == np.cumsum([0] + [g.num_nodes for g in graphs]).tolist()
    num_edges = sum(g.num_edges for g in graphs)
    assert arrays["edge_ptr"][-1] == arrays["edge_index"].shape[1] == num_edges
    assert arrays["x"].shape == (arrays["node_ptr"][-1], schema.NUM_NODE_FEATURES)
    np.testing.assert_array_equal(arrays["latencies"], ds.tasks[0].latencies)
    assert not list(cache.glob("*.tmp*"))  # written atomically, no leftovers


def test_replay_matches_metaschedule(tmp_path):
    """The builder's replay equals ``TuningRecord.from_json`` + ``apply_to_schedule``."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.data.records import load_database
    from ms_meta.feature.graph import BlockCache, encode_primfunc

    db = make_db(tmp_path / "records", SOFTMAX, n=3)
    ds = build_dataset(db, cache_dir=None)
    group = load_database(db).groups[0]
    for record, graph in zip(group.records, ds.tasks[0].graphs, strict=True):
        rec = ms.database.TuningRecord.from_json(record.as_json(), group.workload())
        sch = tvm.s_tir.Schedule(group.mod)
        rec.trace.apply_to_schedule(sch, remove_postproc=False)
        expected = encode_primfunc(sch.mod["main"], ds.tasks[0].task_features, BlockCache())
        assert same_graph(graph, expected)


def test_failed_run_is_labelled_zero(tmp_path):
    db = make_db(tmp_path / "records", DENSE, n=10)
    first = json.loads(source_lines(DENSE, 1)[0])
    first[1][1] = [1e10]
    append(db, json.dumps(first) + "\n")
    ds = build_dataset(db, cache_dir=None)
    task = ds.tasks[0]
    assert len(task) == 11 and task.num_failed == 1
    assert task.latencies[-1] == np.inf and task.labels[-1] == 0
    assert task.labels[:-1].max() == pytest.approx(1.0)
    assert ds.skips.failed_runs == 1 and ds.summary()["failed"] == 1


def test_append_featurizes_only_new_lines(tmp_path, encode_calls):
    db = make_db(tmp_path / "records", DENSE, n=LINES)
    cache = tmp_path / "cache"
    build_dataset(db, cache_dir=cache)
    append(db, "".join(source_lines(DENSE, LINES + 5)[LINES:]))
    encode_calls.clear()
    ds = build_dataset(db, cache_dir=cache)
    assert len(encode_calls) == 5
    assert (ds.stats.cached, ds.stats.encoded) == (LINES, 5)
    assert len(list(cache.glob("*.npz"))) == 1  # extended in place, same file name
    fresh = build_dataset(db, cache_dir=None)
    pairs = zip(ds.tasks[0].graphs, fresh.tasks[0].graphs, strict=True)
    assert all(same_graph(g, h) for g, h in pairs)  # incremental == full rebuild
    np.testing.assert_array_equal(ds.tasks[0].labels, fresh.tasks[0].labels)
    encode_calls.clear()
    build_dataset(db, cache_dir=cache)
    assert len(encode_calls) == 0


def test_limit_then_full_reuses_prefix(tmp_path, encode_calls):
    db = make_db(tmp_path / "records", DENSE, n=20)
    cache = tmp_path / "cache"
    small = build_dataset(db, cache_dir=cache, limit_per_task=5)
    assert len(small.tasks[0]) == 5 and len(encode_calls) == 5
    encode_calls.clear()
    full = build_dataset(db, cache_dir=cache)
    assert len(full.tasks[0]) == 20 and len(encode_calls) == 15
    encode_calls.clear()
    assert len(build_dataset(db, cache_dir=cache, limit_per_task=7).tasks[0]) == 7
    assert len(encode_calls) == 0
    with pytest.raises(ValueError):
        build_dataset(db, cache_dir=cache, limit_per_task=0)


def test_rewritten_file_invalidates(tmp_path, encode_calls):
    db = make_db(tmp_path / "records", DENSE, n=6)
    cache = tmp_path / "cache"
    build_dataset(db, cache_dir=cache)
    lines = source_lines(DENSE, 6)
    (db / layout.RECORD_FILE).write_text("".join([lines[1], lines[0], *lines[2:]]))
    encode_calls.clear()
    ds = build_dataset(db, cache_dir=cache)
    assert len(encode_calls) == 6 and ds.stats.cached == 0


def test_feature_version_invalidates(tmp_path, monkeypatch, encode_calls):
    db = make_db(tmp_path / "records", DENSE, n=6)
    cache = tmp_path / "cache"
    build_dataset(db, cache_dir=cache)
    monkeypatch.setattr(schema, "FEATURE_VERSION", schema.FEATURE_VERSION + 1)
    encode_calls.clear()
    ds = build_dataset(db, cache_dir=cache)
    assert len(encode_calls) == 6 and ds.stats.cached == 0
    assert len(list(cache.glob("*.npz"))) == 2  # one per version; both stay valid


def test_foreign_trace_is_a_counted_skip(tmp_path, encode_calls):
    db = make_db(tmp_path / "records", SOFTMAX, n=10)
    append(db, source_lines(DENSE, 1)[0])  # a dense schedule does not replay on softmax
    cache = tmp_path / "cache"
    ds = build_dataset(db, cache_dir=cache)
    assert len(ds.tasks[0]) == 10 and ds.num_records == 10
    assert ds.skips.by_kind() == {REBUILD: 1}
    (item,) = ds.skips.skipped
    assert item.line == 11 and "does not replay" in item.reason
    # the skip is cached too: no replay attempted, still counted
    encode_calls.clear()
    again = build_dataset(db, cache_dir=cache)
    assert len(encode_calls) == 0 and again.skips.by_kind() == {REBUILD: 1}


def test_unencodable_record_is_a_counted_skip(tmp_path, monkeypatch):
    db = make_db(tmp_path / "records", DENSE, n=4)
    original = graph_mod.encode_primfunc
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    monkeypatch.setattr(graph_mod, "encode_primfunc", flaky)
    ds = build_dataset(db, cache_dir=None)
    assert ds.tasks[0].lines.tolist() == [1, 3, 4]
    assert ds.skips.by_kind() == {ENCODE: 1} and ds.summary()["skipped"] == {ENCODE: 1}


def test_truncated_last_line(tmp_path, encode_calls):
    db = make_db(tmp_path / "records", DENSE, n=5)
    extra = source_lines(DENSE, 6)[5]
    append(db, extra[:100])  # the collector is half-way through writing a line
    cache = tmp_path / "cache"
    ds = build_dataset(db, cache_dir=cache)
    assert len(ds.tasks[0]) == 5 and ds.skips.by_kind() == {MALFORMED: 1}
    append(db, extra[100:])  # ... and finishes it
    encode_calls.clear()
    done = build_dataset(db, cache_dir=cache)
    assert len(done.tasks[0]) == 6 and len(encode_calls) == 1 and done.skips.num_skipped == 0


def test_empty_database_gives_no_tasks(tmp_path):
    db = make_db(tmp_path / "records", DENSE, n=1)
    (db / layout.RECORD_FILE).write_text("")
    ds = build_dataset(db, cache_dir=tmp_path / "cache")
    assert ds.tasks == [] and ds.num_records == 0
    assert ds.flatten()[0] == [] and ds.summary()["tasks"] == 0


def test_missing_path_raises(tmp_path):
    with pytest.raises(DatabaseError):
        build_dataset(tmp_path / "nowhere", cache_dir=None)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DatabaseError):
        build_dataset(tmp_path / "empty_dir", cache_dir=None)


def test_multi_workload_database(tmp_path):
    root = tmp_path / "records"
    merged = tmp_path / "user_db"
    merge_databases([make_db(root, DENSE, n=4), make_db(root, LAYER_NORM, n=3)], merged)
    assert not (merged / layout.META_FILE).exists()  # a plain MetaSchedule work dir
    ds = build_dataset(merged, cache_dir=tmp_path / "cache")
    assert [t.name for t in ds.tasks] == ["user_db[0]", "user_db[1]"]
    assert [len(t) for t in ds.tasks] == [4, 3]
    assert [t.op for t in ds.tasks] == ["dense", "layer_norm"]  # inferred from the workload
    again = build_dataset(merged, cache_dir=tmp_path / "cache")
    assert again.stats.cached == 7 and again.stats.encoded == 0


def test_select_split_summary_flatten(tmp_path):
    root = tmp_path / "records"
    for task, n in ((DENSE, 4), (LAYER_NORM, 3)):
        make_db(root, task, n=n)
    ds = build_dataset(root, cache_dir=None)
    assert ds.select([DENSE]).names == [DENSE]
    with pytest.raises(MsMetaError):
        ds.select(["no_such_task"])
    parts = ds.split({"split": "by_task", "train": [DENSE], "held_out": [LAYER_NORM, "gone"]})
    assert parts["train"].names == [DENSE] and parts["held_out"].names == [LAYER_NORM]
    summary = ds.summary()
    assert summary["tasks"] == 2 and summary["records"] == 7
    assert summary["operators"] == {
        "dense": {"tasks": 1, "records": 4},
        "layer_norm": {"tasks": 1, "records": 3},
    }
    graphs, labels, groups = ds.flatten()
    assert len(graphs) == 7 and labels.shape == (7,) and groups.tolist() == [0] * 4 + [1] * 3


def test_damaged_cache_is_rebuilt(tmp_path, caplog, encode_calls):
    db = make_db(tmp_path / "records", DENSE, n=3)
    cache = tmp_path / "cache"
    build_dataset(db, cache_dir=cache)
    (path,) = cache.glob("*.npz")
    path.write_bytes(b"not a zip file")
    encode_calls.clear()
    with caplog.at_level(logging.WARNING, logger=dataset_mod.__name__):
        ds = build_dataset(db, cache_dir=cache)
    assert len(ds.tasks[0]) == 3 and len(encode_calls) == 3
    assert "ignoring unreadable dataset cache" in caplog.text
    with np.load(path, allow_pickle=False) as npz:  # rewritten
        assert "meta" in npz.files


def test_no_cache_and_default_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(dataset_mod.CACHE_ENV, str(tmp_path / "env_cache"))
    assert default_cache_dir() == tmp_path / "env_cache"
    db = make_db(tmp_path / "records", DENSE, n=2)
    build_dataset(db, cache_dir=None)
    assert not (tmp_path / "env_cache").exists()
    build_dataset(db)  # the default honours $MS_META_CACHE
    assert len(list((tmp_path / "env_cache").glob("*.npz"))) == 1


def test_gzip_database_grows_by_members(tmp_path, encode_calls):
    import gzip

    db = make_db(tmp_path / "records", DENSE, n=4)
    plain = db / layout.RECORD_FILE
    packed = db / (layout.RECORD_FILE + layout.GZIP_SUFFIX)
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    cache = tmp_path / "cache"
    assert len(build_dataset(db, cache_dir=cache).tasks[0]) == 4
    with open(packed, "ab") as f:  # a writer appends a new gzip member
        f.write(gzip.compress("".join(source_lines(DENSE, 6)[4:]).encode()))
    encode_calls.clear()
    ds = build_dataset(db, cache_dir=cache)
    assert len(ds.tasks[0]) == 6 and len(encode_calls) == 2


def test_ingested_records_are_a_separate_measurement(tmp_path):
    # The shipped dense task starts with 64 ingested seed records (measured on another
    # machine), followed by the collector's own: each part is normalized on its own, and a
    # split keeps both on the workload's side.
    meta = json.loads((RECORDS / DENSE / layout.META_FILE).read_text())
    (seed_name, seed), *_ = meta["ingested"].items()
    n_seed = seed["records"]
    root = tmp_path / "records"
    make_db(root, DENSE, n=n_seed + 6)
    ds = build_dataset(root, cache_dir=None)
    by_name = {t.name: t for t in ds.tasks}
    assert sorted(by_name) == sorted([DENSE, f"{DENSE}@{seed_name}"])
    own, ingested = by_name[DENSE], by_name[f"{DENSE}@{seed_name}"]
    assert own.lines.tolist() == list(range(n_seed + 1, n_seed + 7))
    assert ingested.lines.tolist() == list(range(1, n_seed + 1))
    assert own.split_name == ingested.split_name == DENSE
    for task in (own, ingested):  # best of each measurement is 1
        assert task.labels.max() == pytest.approx(1.0)
    assert ds.split({"train": [DENSE], "held_out": []})["train"].names == [t.name for t in ds.tasks]
    assert {t.name for t in ds.select([DENSE]).tasks} == set(by_name)
    summary = ds.summary()
    assert summary["tasks"] == 1 and summary["measurement_groups"] == 2
    assert summary["operators"]["dense"] == {"tasks": 1, "records": n_seed + 6}


def test_measurement_sources_follow_first_line():
    lines = np.arange(1, 11)
    legacy = {"ingested": {"a": {"records": 3}, "b": {"records": 2}}}
    sources, names = dataset_mod.measurement_sources(legacy, lines)
    assert names == ["a", "b"] and sources.tolist() == [1, 1, 1, 2, 2, 0, 0, 0, 0, 0]
    appended = {"ingested": {"late": {"records": 4, "first_line": 6}}}
    sources, names = dataset_mod.measurement_sources(appended, lines)
    assert names == ["late"] and sources.tolist() == [0] * 5 + [1] * 4 + [0]
    sources, names = dataset_mod.measurement_sources(None, lines)
    assert names == [] and not sources.any()


def test_measurement_sources_keep_each_timing_machine_apart():
    """Lines the collector says were timed on a named machine form that machine's group;
    lines of entries without a machine (older collectors) stay in group 0."""
    lines = np.arange(1, 11)
    meta = {
        "ingested": {"seed": {"records": 2, "first_line": 1}},
        "sources": [
            {"lines": [3, 5], "phase": "random"},  # no machine: group 0
            {"lines": [6, 7], "phase": "one-shot", "machine": "vm boot aaaa"},
            {"lines": [8, 9], "phase": "one-shot", "machine": "vm boot bbbb"},
            {"lines": [10, 10], "phase": "guided", "machine": "vm boot aaaa"},
        ],
    }
    sources, names = dataset_mod.measurement_sources(meta, lines)
    assert names == ["seed", "vm boot aaaa", "vm boot bbbb"]
    assert sources.tolist() == [1, 1, 0, 0, 0, 2, 2, 3, 3, 2]
