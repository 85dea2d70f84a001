"""Evaluation of cost models on held-out tasks: the k-shot protocol (TVM-free) and, in
:mod:`ms_meta.eval.baselines`, TVM's own cost models as competitors."""

from ms_meta.eval.protocol import (
    DEFAULT_KS,
    METRICS,
    MIN_QUERY,
    ORDERS,
    Episode,
    EvalResult,
    Scorer,
    evaluate,
    make_episodes,
    markdown_table,
    results_to_json,
    text_table,
)

__all__ = [
    "DEFAULT_KS",
    "METRICS",
    "MIN_QUERY",
    "ORDERS",
    "Episode",
    "EvalResult",
    "Scorer",
    "evaluate",
    "make_episodes",
    "markdown_table",
    "results_to_json",
    "text_table",
]
