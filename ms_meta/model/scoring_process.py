"""GNN scoring in a child process, so that it runs on a second core while the caller encodes.

Encoding candidates is Python walking TVM objects, and it holds the GIL; a thread running the
GNN beside it hands the GIL back and forth at every torch op and every FFI call and gains
nothing (see ``MetaCostModel.predict``). A child process has its own interpreter. It is a plain
``python -m ms_meta.model.scoring_process`` (not ``multiprocessing``: spawn would re-import
the user's ``__main__``, and fork after TVM and torch have started threads is unsafe), fed
length-prefixed pickles over its stdin and answering on its stdout. It imports torch and the
TVM-free model only. Results are bit-identical to scoring in the calling process: the same ops
run on one thread in the same order.

TVM-free: the caller passes collated numpy arrays.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import struct
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<QQ")  # pickle size, number of out-of-band buffers
BATCH_FIELDS = ("x", "node_type", "edge_index", "edge_type", "edge_attr", "batch", "task")
# Index arrays cross the pipe in the narrowest type that holds them (a third of a batch's bytes
# at int64) and are widened again in the child, so the GNN sees the same arrays either way.
_WIRE_DTYPES = {"node_type": np.int8, "edge_type": np.int8, "edge_index": np.int32,
                "batch": np.int32}  # fmt: skip


class ScoringProcessError(RuntimeError):
    """The child process failed or went away; the caller scores in its own process instead."""


def _send(stream: BinaryIO, message: Any) -> None:
    # Protocol 5 hands the arrays' memory over as out-of-band buffers, written to the pipe
    # as they are instead of being copied into the pickle first (64 graphs: about 0.9 MB).
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    stream.write(_HEADER.pack(len(data), len(raws)))
    stream.write(_buffer_sizes(len(raws)).pack(*(raw.nbytes for raw in raws)))
    stream.write(data)
    for raw in raws:
        stream.write(raw)
    stream.flush()


def _buffer_sizes(count: int) -> struct.Struct:
    """The byte counts of a message's ``count`` out-of-band buffers, after its header."""
    return struct.Struct(f"<{count}Q")


def _read_exactly(stream: BinaryIO, size: int) -> bytearray:
    data = bytearray(size)
    view, filled = memoryview(data), 0
    while filled < size:
        count = stream.readinto(view[filled:])
        if not count:
            raise EOFError("the other side closed the pipe mid-message")
        filled += count
    return data


def _receive(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the other side closed the pipe")
    size, num_buffers = _HEADER.unpack(header)
    sizes_format = _buffer_sizes(num_buffers)
    sizes = sizes_format.unpack(_read_exactly(stream, sizes_format.size))
    data = _read_exactly(stream, size)
    buffers = [_read_exactly(stream, buffer_size) for buffer_size in sizes]
    return pickle.loads(data, buffers=buffers)


def _to_wire(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    wire = {}
    for name in BATCH_FIELDS:
        array = np.ascontiguousarray(arrays[name])
        narrow = _WIRE_DTYPES.get(name)
        if narrow is not None and array.size:
            info = np.iinfo(narrow)
            if info.min <= array.min() and array.max() <= info.max:
                array = array.astype(narrow)
        wire[name] = array
    return wire


def _from_wire(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: arrays[name].astype(np.int64, copy=False) if name in _WIRE_DTYPES
            else arrays[name] for name in BATCH_FIELDS}  # fmt: skip


def _as_numpy(params: Mapping[str, Any] | None) -> dict[str, np.ndarray] | None:
    if params is None:
        return None
    return {name: value.detach().cpu().numpy() for name, value in params.items()}


class ScoringProcess:
    """A child process that scores collated graph batches with one :class:`LoopGraphGNN`.

    The child starts in the background; :meth:`ready` tells when it can take work. ``submit``
    sends a batch and returns at once (unless the child is still reading the previous one);
    ``receive`` returns the scores of the oldest batch not yet received, so the caller can
    encode the next batch while the child scores this one.

    Parameters
    ----------
    config : dict
        ``GNNConfig.to_dict()`` of the model.
    state_dict : mapping of str to tensor
        The model's weights (its own parameters, used when a batch names no others).
    """

    def __init__(self, config: dict[str, Any], state_dict: Mapping[str, Any]) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "ms_meta.model.scoring_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        except OSError as err:
            raise ScoringProcessError(f"could not start the scoring process: {err}") from None
        self._params_token: object = None
        self._pending = 0
        self._ready = False
        self._call("init", config, _as_numpy(state_dict))

    # -- protocol -------------------------------------------------------------------------
    def _call(self, *message) -> None:
        try:
            _send(self._proc.stdin, message)
        except (OSError, ValueError) as err:
            raise ScoringProcessError(f"the scoring process is gone: {err}") from None

    def _reply(self) -> Any:
        try:
            reply = _receive(self._proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as err:
            raise ScoringProcessError(f"the scoring process is gone: {err}") from None
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            raise ScoringProcessError(f"the scoring process failed: {reply[1]}")
        return reply

    def ready(self, wait: bool = False) -> bool:
        """Whether the child has started (imports take 2-3 s); ``wait`` blocks until it has."""
        if not self._ready:
            if not wait and not select.select([self._proc.stdout], [], [], 0)[0]:
                return False
            if self._reply() != "ready":
                raise ScoringProcessError("the scoring process did not start properly")
            self._ready = True
        return True

    # -- use ------------------------------------------------------------------------------
    def submit(self, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any] | None,
               params_token: object) -> None:  # fmt: skip
        """Queue one batch (``BATCH_FIELDS`` arrays) for scoring under ``params`` (the model's
        own weights if ``None``). ``params_token`` identifies ``params``: they are sent again
        only when it changes."""
        self.ready(wait=True)
        if params_token is not self._params_token:
            self._call("params", _as_numpy(params))
            self._params_token = params_token
        self._call("score", _to_wire(arrays))
        self._pending += 1

    def receive(self) -> np.ndarray:
        """Scores ``[B]`` float64 of the oldest submitted batch not yet received."""
        if self._pending == 0:
            raise ScoringProcessError("no batch is waiting for its scores")
        self._pending -= 1
        return np.asarray(self._reply(), np.float64)

    def close(self) -> None:
        """End the child (it also ends by itself when this process goes away)."""
        proc = self._proc
        if proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


def main() -> None:
    """The child's loop: ``init`` once, then ``params`` and ``score`` messages until EOF."""
    import torch

    from ms_meta.model.batch import GraphBatch
    from ms_meta.model.gnn import GNNConfig, LoopGraphGNN
    from ms_meta.model.meta import predict_batch

    torch.set_num_threads(1)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the replies
    model, params = None, None
    while True:
        try:
            kind, *args = _receive(requests)
        except EOFError:
            return
        try:
            if kind == "init":
                config, state = args
                model = LoopGraphGNN(config=GNNConfig.from_dict(config))
                model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
                model.eval()
                _send(replies, "ready")
            elif kind == "params":
                (values,) = args
                params = None if values is None else {
                    k: torch.from_numpy(v) for k, v in values.items()}  # fmt: skip
            elif kind == "score":
                arrays = _from_wire(args[0])
                batch = GraphBatch(
                    **{k: torch.from_numpy(arrays[k]) for k in BATCH_FIELDS},
                    num_graphs=int(arrays["task"].shape[0]),
                )
                _send(replies, predict_batch(model, params, batch))
            else:
                _send(replies, ("error", f"unknown request {kind!r}"))
        except Exception as err:  # report, and keep serving: the caller decides
            _send(replies, ("error", f"{type(err).__name__}: {err}"))


if __name__ == "__main__":
    main()
