"""Does GNN scoring on the other core slow the encoder? And does plain Python work do the same?

Encodes 512 candidates of a ResNet-18 conv2d design space, 15 times each with a second process
paused (SIGSTOP) and running (SIGCONT), alternating, and prints the median rates. The second
process is either a pure-Python loop or the shipped GNN scoring the same candidates in chunks
of CHUNK graphs, single-threaded (what MetaCostModel's scoring process does).

Usage: python benchmarks/throughput/contention_encoder.py [CHUNK ...]      (default: 64 128)
"""

import pickle
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def _load(path: str) -> None:
    import torch

    from ms_meta.model.batch import GraphBatch
    from ms_meta.model.meta import predict_batch
    from ms_meta.model.scoring_process import BATCH_FIELDS

    torch.set_num_threads(1)
    with open(path, "rb") as f:
        state, config, encoded = pickle.load(f)
    from ms_meta.model.gnn import GNNConfig, LoopGraphGNN

    model = LoopGraphGNN(config=GNNConfig.from_dict(config))
    model.load_state_dict(state)
    batches = [
        GraphBatch(**{k: torch.from_numpy(e[k]) for k in BATCH_FIELDS}, num_graphs=len(e["task"]))
        for e in encoded
    ]
    while True:
        for batch in batches:
            predict_batch(model, None, batch)


def _spin() -> None:
    total = 0
    while True:
        for i in range(100_000):
            total += i


def main(chunks: list[int]) -> None:
    from ms_meta.bench.overhead import sample_candidates
    from ms_meta.feature.extractor import GraphFeatureExtractor
    from ms_meta.model.cost_model import MetaCostModel
    from ms_meta.tuning.target import host_target

    target = host_target()
    context, candidates = sample_candidates("conv2d_nchw:1,64,56,56,64,3,3,1,1", 512, target)
    extractor = GraphFeatureExtractor()
    extractor.encode(context, candidates[:4])
    model = MetaCostModel(target=target, scoring_process=False).model

    def encode_seconds() -> float:
        start = time.perf_counter()
        extractor.encode(context, candidates)
        return time.perf_counter() - start

    loads = [("python loop", [sys.executable, __file__, "--spin"])]
    for chunk in chunks:
        encoded = [
            vars(extractor.encode_batch(context, candidates[i : i + chunk]))
            for i in range(0, len(candidates), chunk)
        ]
        path = tempfile.NamedTemporaryFile(suffix=".pkl", delete=False).name
        with open(path, "wb") as f:
            pickle.dump((model.state_dict(), model.config.to_dict(), encoded), f)
        loads.append((f"GNN, chunks of {chunk}", [sys.executable, __file__, "--load", path]))
    for name, command in loads:
        other = subprocess.Popen(command)
        time.sleep(5)  # imports
        paused, running = [], []
        for _ in range(15):
            other.send_signal(signal.SIGSTOP)
            time.sleep(0.05)
            paused.append(encode_seconds())
            other.send_signal(signal.SIGCONT)
            time.sleep(0.05)
            running.append(encode_seconds())
        other.kill()
        other.wait()
        alone, beside = statistics.median(paused), statistics.median(running)
        print(f"{name:22s} encoder alone {512 / alone:6.0f}/s, beside it {512 / beside:6.0f}/s "
              f"({alone / beside:.2f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--spin"]:
        _spin()
    elif sys.argv[1:2] == ["--load"]:
        _load(sys.argv[2])
    else:
        main([int(a) for a in sys.argv[1:]] or [64, 128])
