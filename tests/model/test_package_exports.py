"""The top-level package: what the README's first snippet imports, and what stays TVM-free."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> None:
    """Run ``code`` in a fresh interpreter (imports change ``sys.modules``); fail on error."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_snippet_needs_only_the_top_level_package():
    from ms_meta import GraphFeatureExtractor, MetaCostModel, make_builder, one_shot
    from ms_meta.feature.extractor import GraphFeatureExtractor as extractor_class
    from ms_meta.model.cost_model import MetaCostModel as model_class
    from ms_meta.tuning.builder import make_builder as builder_function

    assert MetaCostModel is model_class and GraphFeatureExtractor is extractor_class
    assert make_builder is builder_function
    assert callable(one_shot.tune_tir)


def test_every_name_in_all_resolves():
    import ms_meta

    for name in ms_meta.__all__:
        assert getattr(ms_meta, name) is not None, name


def test_importing_the_package_and_the_learnable_core_does_not_import_tvm():
    run_python(
        "import sys, ms_meta, ms_meta.model.gnn, ms_meta.model.meta, ms_meta.model.weights, "
        "ms_meta.model.pretrain, ms_meta.labels; "
        "assert 'tvm' not in sys.modules, sorted(m for m in sys.modules if 'tvm' in m)"
    )


def test_unknown_top_level_name_is_an_attribute_error():
    run_python(
        "import ms_meta\n"
        "try:\n    ms_meta.NoSuchThing\nexcept AttributeError as err:\n"
        "    assert 'NoSuchThing' in str(err)\nelse:\n    raise SystemExit('no error')"
    )


def test_subpackages_re_export_their_public_names_without_importing_tvm():
    run_python(
        "import sys, ms_meta.model as model, ms_meta.feature as feature\n"
        "tvm_free = [n for n in model.__all__ if n not in ('MetaCostModel', 'CostModelSummary')]\n"
        "for name in tvm_free + ['normalized_throughput']:\n    getattr(model, name)\n"
        "feature.LoopGraph, feature.FEATURE_VERSION\n"
        "assert 'tvm' not in sys.modules, 'tvm imported'\n"
        "from ms_meta.model.cost_model import MetaCostModel\n"
        "from ms_meta.feature.extractor import GraphFeatureExtractor\n"
        "assert model.MetaCostModel is MetaCostModel\n"
        "assert feature.GraphFeatureExtractor is GraphFeatureExtractor\n"
        "assert all(getattr(feature, name) is not None for name in feature.__all__)"
    )
