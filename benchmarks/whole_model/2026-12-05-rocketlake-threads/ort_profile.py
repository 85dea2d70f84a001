"""ONNX Runtime's time per node of an exported model, for side-by-side reading with the
One-Shot gap table (``ms-meta bench --model NAME --gap``).

``python ort_profile.py MODEL.onnx`` runs the model on 2 threads, SCHED_FIFO under the
measurement lock (as the whole-model benchmark times ONNX Runtime: ``ORT_ENABLE_ALL``,
sequential), 10 warm-up and 30 timed runs with ONNX Runtime's profiler on, and prints each
node's median kernel time. The model file is the one ``ms-meta bench --model NAME`` exports
(``<work>/<NAME>-work/onnxruntime/model.onnx``).
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
import time

import numpy as np

__all__ = ["main"]


def main(path: str, top: int = 40) -> None:
    import onnxruntime as ort

    from ms_meta.tuning.lock import measurement_lock
    from ms_meta.tuning.measure import enter_realtime

    enter_realtime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = tempfile.mkdtemp() + "/ort"
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    feed = {first.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    with measurement_lock():
        for _ in range(10):
            session.run(None, feed)
        samples = []
        for _ in range(30):
            start = time.perf_counter()
            session.run(None, feed)
            samples.append(time.perf_counter() - start)
    print(f"median {np.median(samples) * 1e3:.2f} ms over 30 runs (2 threads, SCHED_FIFO)")
    with open(session.end_profiling()) as f:
        events = json.load(f)
    per_node = collections.defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            per_node[(event["name"][: -len("_kernel_time")], op)].append(event["dur"])
    rows = sorted(((float(np.median(v)), k) for k, v in per_node.items()), reverse=True)
    total = sum(r[0] for r in rows)
    print(f"{'us':>8} {'share':>6}  {'op':20s} node")
    for us, (node, op) in rows[:top]:
        print(f"{us:8.1f} {100 * us / total:5.1f}%  {op:20s} {node}")
    print(f"sum of node medians {total:.1f} us")


if __name__ == "__main__":
    main(sys.argv[1])
