"""Benchmarks of the cost model and of One-Shot, behind ``ms-meta bench``.

* :mod:`ms_meta.bench.overhead`: throughput of extraction and prediction, MetaCostModel against
  MetaSchedule's XGBModel, and ``ms.tune_tir`` wall time with each (the default mode);
* :mod:`ms_meta.bench.online`: best latency per trial budget on held-out tasks, every best
  schedule re-measured side by side (``--online``);
* :mod:`ms_meta.bench.e2e`: whole networks compiled end to end, each contender in its own
  processes (``--model``; :mod:`~ms_meta.bench.contenders`, :mod:`~ms_meta.bench.e2e_worker`,
  :mod:`~ms_meta.bench.e2e_report`), and :mod:`ms_meta.bench.gap`, the per-operator gap table
  (``--model NAME --gap``);
* :mod:`ms_meta.bench.plots` and :mod:`ms_meta.bench.extras`: figures, and the optional
  dependencies of the ``bench`` extra.

Nothing is imported here: the benchmarks pull in TVM, torch and, for figures, matplotlib, and
the package's core must not pay for them. Import the submodule you need.
"""
