"""MetaSchedule cost models by name, for the commands that let a user choose one.

It lives with the learned model rather than with the tuning code so that ``ms_meta.tuning``
(builders, runners, targets) never imports ``ms_meta.model``, which itself uses the tuning
package's target helpers: tuning functions take a ready cost model.
"""

from __future__ import annotations

__all__ = ["COST_MODELS", "make_cost_model"]

COST_MODELS = ("meta", "meta-online", "xgb", "random")


def make_cost_model(kind, *, target=None, seed: int = 0, store="default"):
    """A MetaSchedule cost model from a name (``meta``, ``meta-online``, ``xgb``, ``random``)
    or a ready :class:`~tvm.s_tir.meta_schedule.cost_model.CostModel`.

    ``meta`` is :class:`~ms_meta.model.cost_model.MetaCostModel` with the shipped weights for
    ``target``, ``meta-online`` the untrained one, ``xgb`` and ``random`` MetaSchedule's own.
    ``store`` is the record store the MetaCostModels warm-start from (None: none).
    """
    if not isinstance(kind, str):
        return kind
    from tvm.s_tir import meta_schedule as ms  # TVM on first use, as the package's other adapters

    if kind in ("meta", "meta-online"):
        from ms_meta.model.cost_model import MetaCostModel

        weights = {} if kind == "meta" else {"weights": None}
        return MetaCostModel(target=target, seed=seed, store=store, **weights)
    if kind == "xgb":
        return ms.cost_model.XGBModel()
    if kind == "random":
        return ms.cost_model.RandomModel(seed=seed)
    raise ValueError(f"unknown cost model {kind!r}; expected one of {', '.join(COST_MODELS)}")
