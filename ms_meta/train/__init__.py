"""Training workflows that span the data set, the model and its evaluation: adapting shipped
weights to a CPU that has none (:mod:`ms_meta.train.adapt`).

They live apart from :mod:`ms_meta.model`, which stays TVM-free and is imported by
:mod:`ms_meta.eval`, so that a workflow can score what it trains without an import cycle.
"""

from __future__ import annotations

from ms_meta.train.adapt import (
    DEFAULT_RECIPE,
    AdaptRecipe,
    AdaptResult,
    adapt_to_cpu,
    evaluate_model,
    nearest_weights,
    sample_records,
    train_recipe,
)

__all__ = [
    "DEFAULT_RECIPE",
    "AdaptRecipe",
    "AdaptResult",
    "adapt_to_cpu",
    "evaluate_model",
    "nearest_weights",
    "sample_records",
    "train_recipe",
]
