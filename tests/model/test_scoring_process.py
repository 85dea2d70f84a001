"""The scoring process's wire format and the chunking that MetaCostModel.predict shares."""

import io
import itertools

import numpy as np
import pytest

from ms_meta.model.cost_model import _CHUNK, _TAIL_CHUNKS, _chunk_bounds
from ms_meta.model.scoring_process import BATCH_FIELDS, _from_wire, _receive, _send, _to_wire


@pytest.mark.parametrize("count", [1, 15, 16, 17, 63, 64, 65, 100, 512, 2049])
def test_chunks_cover_every_candidate_once_with_small_last_chunks(count):
    bounds = _chunk_bounds(count)
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(stop == next_start for (_, stop), (next_start, _) in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert all(0 < size <= _CHUNK for size in sizes)
    if count >= _CHUNK:
        # the chunk whose scoring nobody overlaps is the smallest
        assert tuple(sizes[-len(_TAIL_CHUNKS) :]) == _TAIL_CHUNKS


def _batch(num_nodes: int, num_edges: int, index_scale: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(num_nodes, 5)).astype(np.float32),
        "node_type": rng.integers(0, 4, num_nodes),
        "edge_index": rng.integers(0, index_scale, (2, num_edges)),
        "edge_type": rng.integers(0, 5, num_edges),
        "edge_attr": rng.normal(size=(num_edges, 3)).astype(np.float32),
        "batch": np.sort(rng.integers(0, 3, num_nodes)),
        "task": rng.normal(size=(3, 4)).astype(np.float32),
        "failed": np.zeros(3, bool),  # not sent
    }


@pytest.mark.parametrize("index_scale", [50, 2**40])  # fits int32, does not
def test_batches_cross_the_pipe_unchanged(index_scale):
    batch = _batch(50, 120, index_scale)
    stream = io.BytesIO()
    _send(stream, ("score", _to_wire(batch)))
    _send(stream, ("params", {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}))
    stream.seek(0)
    kind, wire = _receive(stream)
    assert kind == "score" and set(wire) == set(BATCH_FIELDS)
    if index_scale < 2**31:
        assert wire["edge_index"].dtype == np.int32  # narrowed for the pipe
    received = _from_wire(wire)
    for name in BATCH_FIELDS:
        assert received[name].dtype == batch[name].dtype, name
        assert np.array_equal(received[name], batch[name]), name
    assert np.array_equal(_receive(stream)[1]["w"], np.arange(6).reshape(2, 3))
    with pytest.raises(EOFError):
        _receive(stream)


def test_a_message_cut_short_is_an_error_not_a_hang():
    stream = io.BytesIO()
    _send(stream, ("score", _to_wire(_batch(10, 20, 10))))
    stream = io.BytesIO(stream.getvalue()[:-7])
    with pytest.raises(EOFError, match="mid-message"):
        _receive(stream)
