"""GraphFeatureExtractor as a real MetaSchedule FeatureExtractor."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tvm
from tvm.s_tir import Schedule
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.feature_extractor import FeatureExtractor

from ms_meta import GraphFeatureExtractor
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


def test_unencodable_candidate_gets_neutral_graph_and_warning(sample_candidates, caplog):
    context, candidates = sample_candidates("dense:64,64,64", count=4)
    # A real candidate the encoder cannot handle: its module has no "main" PrimFunc.
    func = resolve_one("dense:64,64,64").build()["main"]
    odd = ms.MeasureCandidate(Schedule(tvm.IRModule({"not_main": func})), candidates[0].args_info)
    mixed = [candidates[0], odd, candidates[1], odd, candidates[2], candidates[3]]
    extractor = GraphFeatureExtractor()
    with caplog.at_level(logging.WARNING, logger="ms_meta.feature.extractor"):
        graphs = extractor.encode(context, mixed)
    assert len(graphs) == 6
    assert [g.num_nodes == 1 for g in graphs] == [False, True, False, True, False, False]
    assert extractor.stats.unencodable == 2
    assert "could not encode a candidate" in caplog.text
    # and the cost model scores them neutrally instead of failing the search
    from ms_meta import MetaCostModel

    scores = MetaCostModel(weights=None).predict(context, mixed)
    assert np.isfinite(scores).all() and scores[1] == scores[3]


def test_task_features_and_operator_kinds():
    kinds = {w.spec: infer_operator_kind(w.build()) for w in all_named()}
    for w in all_named():
        assert kinds[w.spec] == w.kind, w.spec
    features = task_features(resolve_one("dense:128,768,768").build())
    assert features.shape == (NUM_TASK_FEATURES,)
    flops = 2 ** features[TASK_FEATURE_INDEX["log_flops"]] - 1
    assert abs(flops - 2 * 128 * 768 * 768) / (2 * 128 * 768 * 768) < 0.01


def test_batch_encoding_equals_one_by_one(sample_candidates):
    context, candidates = sample_candidates("conv2d_bias_relu:1,16,14,14,16,3,3,1,1", count=12)
    extractor = GraphFeatureExtractor()
    together = extractor.encode(context, candidates)
    for cand, graph in zip(candidates, together, strict=True):
        alone = GraphFeatureExtractor().encode(context, [cand])[0]
        assert np.array_equal(alone.x, graph.x)
        assert np.array_equal(alone.edge_index, graph.edge_index)
        assert np.array_equal(alone.edge_type, graph.edge_type)
        assert np.array_equal(alone.edge_attr, graph.edge_attr)


@pytest.mark.slow
def test_cuda_design_space_candidates_encode_with_thread_bindings():
    """MetaSchedule's CUDA design space (no GPU needed to schedule) binds GPU threads."""
    from tvm.target import Target

    from ms_meta.feature.schema import NODE_FEATURE_INDEX
    from ms_meta.tuning.intrin import import_tensor_intrinsics

    import_tensor_intrinsics("cuda")
    target = Target({"kind": "cuda", "arch": "sm_80", "max_threads_per_block": 1024,
                     "max_shared_memory_per_block": 49152, "thread_warp_size": 32})  # fmt: skip
    for spec in ("dense:128,256,256", "conv2d_nchw:1,32,28,28,32,3,3,1,1"):
        workload = resolve_one(spec)
        context = ms.TuneContext(
            mod=workload.build(), target=target, space_generator="post-order-apply",
            search_strategy=ms.search_strategy.ReplayTrace(), task_name=workload.name,
            rand_state=1, num_threads=2,
        )  # fmt: skip
        context.pre_tuning(
            max_trials=8, num_trials_per_iter=8, design_spaces=context.generate_design_space(),
            database=ms.database.MemoryDatabase(), cost_model=None,
        )  # fmt: skip
        extractor = GraphFeatureExtractor()
        graphs = extractor.encode(context, context.generate_measure_candidates())
        assert extractor.stats.unencodable == 0
        for graph in graphs:
            assert graph.x[:, NODE_FEATURE_INDEX["loop_thread_threadIdx"]].sum() >= 1
            assert graph.x[:, NODE_FEATURE_INDEX["loop_thread_blockIdx"]].sum() >= 1
