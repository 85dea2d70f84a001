"""MetaCostModel.predict against extraction alone, interleaved, for an A/B of two checkouts.

Samples 512 candidates of a ResNet-18 conv2d design space, then times extraction and predict
(with the scoring process) alternately N times; prints best and median rates and the ratio of
the medians, and saves the scores to OUT.npy. Run it from a directory outside both checkouts,
so that the scoring child (``python -m``) imports the same checkout as the parent:

    cd /tmp && PYTHONPATH=$OLD python $NEW/benchmarks/throughput/ab_predict_throughput.py 10 old.npy
    cd /tmp && PYTHONPATH=$NEW python $NEW/benchmarks/throughput/ab_predict_throughput.py 10 new.npy
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np

import ms_meta
from ms_meta.bench.overhead import sample_candidates
from ms_meta.feature.extractor import GraphFeatureExtractor
from ms_meta.model.cost_model import MetaCostModel
from ms_meta.tuning.target import host_target


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(repeats: int, out: str) -> None:
    target = host_target()
    context, candidates = sample_candidates("conv2d_nchw:1,64,56,56,64,3,3,1,1", 512, target)
    extractor = GraphFeatureExtractor()
    extractor.encode(context, candidates[:4])
    model = MetaCostModel(target=target)
    model.predict(context, candidates[:4])
    model.start_scoring_process(wait=True)
    extract, predict = [], []
    for _ in range(repeats):
        extract.append(_seconds(lambda: extractor.encode(context, candidates)))
        predict.append(_seconds(lambda: model.predict(context, candidates)))
    np.save(out, model.predict(context, candidates))
    count = len(candidates)
    median_extract, median_predict = statistics.median(extract), statistics.median(predict)
    print(f"{Path(ms_meta.__file__).parents[1]}: candidates/s, best and median of {repeats}")
    print(f"  extract {count / min(extract):6.0f} {count / median_extract:6.0f}")
    print(f"  predict {count / min(predict):6.0f} {count / median_predict:6.0f}")
    print(f"  predict / extract, medians: {median_extract / median_predict:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
