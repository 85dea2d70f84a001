"""GraphFeatureExtractor as a real MetaSchedule FeatureExtractor."""

from __future__ import annotations

import logging

import numpy as np
from tvm.s_tir.meta_schedule.feature_extractor import FeatureExtractor

from ms_meta import GraphFeatureExtractor
from ms_meta.feature import extractor as extractor_module
from ms_meta.feature.schema import NUM_TASK_FEATURES, TASK_FEATURE_INDEX, LoopGraph
from ms_meta.feature.task import infer_operator_kind, task_features
from ms_meta.workloads import all_named, resolve_one


def test_is_a_metaschedule_feature_extractor(sample_candidates):
    context, candidates = sample_candidates("dense:64,64,64", count=4)
    extractor = GraphFeatureExtractor()
    assert isinstance(extractor, FeatureExtractor)
    tensors = extractor.extract_from(context, candidates)
    assert len(tensors) == len(candidates)
    graphs = extractor.encode(context, candidates)
    for tensor, graph in zip(tensors, graphs, strict=True):
        array = tensor.numpy()
        assert array.dtype == np.float32 and array.ndim == 2
        assert np.array_equal(LoopGraph.unpack(array).x, graph.x)
    # task features travel with every graph
    assert graphs[0].task[TASK_FEATURE_INDEX["op_dense"]] == 1.0
    assert extractor.stats.encoded == 2 * len(candidates)


def test_unencodable_candidate_gets_neutral_graph_and_warning(
    sample_candidates, monkeypatch, caplog
):
    context, candidates = sample_candidates("dense:64,64,64", count=6)
    extractor = GraphFeatureExtractor()
    real_encode = extractor_module.encode_primfunc
    calls = {"n": 0}

    def flaky(func, task, cache):
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise RuntimeError("unsupported statement")
        return real_encode(func, task, cache)

    monkeypatch.setattr(extractor_module, "encode_primfunc", flaky)
    with caplog.at_level(logging.WARNING, logger="ms_meta.feature.extractor"):
        graphs = extractor.encode(context, candidates)
    assert len(graphs) == 6
    assert sum(g.num_nodes == 1 for g in graphs) == 3
    assert extractor.stats.unencodable == 3
    assert "could not encode a candidate" in caplog.text


def test_task_features_and_operator_kinds():
    kinds = {w.spec: infer_operator_kind(w.build()) for w in all_named()}
    for w in all_named():
        assert kinds[w.spec] == w.kind, w.spec
    features = task_features(resolve_one("dense:128,768,768").build())
    assert features.shape == (NUM_TASK_FEATURES,)
    flops = 2 ** features[TASK_FEATURE_INDEX["log_flops"]] - 1
    assert abs(flops - 2 * 128 * 768 * 768) / (2 * 128 * 768 * 768) < 0.01
