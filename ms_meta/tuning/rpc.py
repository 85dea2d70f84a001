"""Timing candidates on remote devices through a TVM RPC tracker.

Builds stay on this machine; TVM's ``RPCRunner`` uploads each artifact to a device registered
under one key at a tracker and times it there. This module checks the tracker before a run
(so a typo fails in one line, before any record is written), asks a device for its CPU (so
records are filed under the right target), and makes the runner. It knows nothing of record
files: the collector (:mod:`ms_meta.data.collect`) decides what to do with the timings.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from dataclasses import dataclass

from ms_meta.errors import MsMetaError

__all__ = [
    "TRACKER_TIMEOUT_SEC",
    "RPCError",
    "RPCSettings",
    "check_rpc_results",
    "count_rpc_devices",
    "make_rpc_runner",
    "query_rpc_cpu",
]

logger = logging.getLogger(__name__)

# How long to wait for an RPC tracker to answer, and for a free device to report its CPU.
TRACKER_TIMEOUT_SEC = 10.0


class RPCError(MsMetaError):
    """An RPC tracker address that is malformed or unreachable, or has no device for the key."""


@dataclass(frozen=True)
class RPCSettings:
    """Measure on the devices registered under ``key`` at an RPC tracker (builds stay local).

    Every device registered under the same key takes sessions from the tracker, so several
    devices share one collection; ``workers`` sessions run at a time (default: one per
    device registered when the collection starts).
    """

    tracker_host: str
    tracker_port: int
    key: str
    workers: int | None = None
    session_timeout_sec: float = 60.0  # one candidate: upload, load, allocate, time
    priority: int = 1

    @classmethod
    def parse(cls, address: str, key: str, workers: int | None = None) -> RPCSettings:
        """Settings from a ``HOST:PORT`` tracker address; raises :class:`RPCError` if malformed."""
        host, sep, port = address.strip().rpartition(":")
        host = host.strip("[]")  # [::1]:9190
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RPCError(
                f"expected the tracker as HOST:PORT, e.g. 127.0.0.1:9190, got {address!r}"
            )
        if not key:
            raise RPCError("an RPC key is required: the key the devices registered under")
        if workers is not None and workers < 1:
            raise RPCError(f"RPC workers must be at least 1, got {workers}")
        return cls(tracker_host=host, tracker_port=int(port), key=key, workers=workers)

    @property
    def address(self) -> str:
        return f"{self.tracker_host}:{self.tracker_port}"

    def describe(self) -> str:
        """What meta.json records as ``runner``: ``rpc <key>@<host:port>``."""
        return f"rpc {self.key}@{self.address}"

    def rpc_config(self):
        from tvm.s_tir import meta_schedule as ms

        return ms.runner.RPCConfig(
            tracker_host=self.tracker_host,
            tracker_port=self.tracker_port,
            tracker_key=self.key,
            session_priority=self.priority,
            session_timeout_sec=self.session_timeout_sec,
        )


def _tracker_socket(rpc: RPCSettings, timeout_sec: float) -> socket.socket:
    """A connection to the tracker after its handshake, or :class:`RPCError`."""
    from tvm.rpc import base

    where = f"RPC tracker at {rpc.address}"
    try:
        sock = socket.create_connection((rpc.tracker_host, rpc.tracker_port), timeout=timeout_sec)
    except OSError as err:
        raise RPCError(
            f"cannot reach the {where} ({err.strerror or err}); start one with "
            f"`python -m tvm.exec.rpc_tracker --host {rpc.tracker_host} --port {rpc.tracker_port}`"
        ) from None
    try:
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", base.recvall(sock, 4))[0]
    except (OSError, RuntimeError) as err:
        sock.close()
        raise RPCError(f"no answer from the {where}: {err}") from None
    if magic != base.RPC_TRACKER_MAGIC:
        sock.close()
        raise RPCError(f"{rpc.address} is not a TVM RPC tracker")
    return sock


def count_rpc_devices(rpc: RPCSettings, timeout_sec: float = TRACKER_TIMEOUT_SEC) -> int:
    """Devices registered under ``rpc.key``; raises :class:`RPCError` if there are none."""
    from tvm.rpc import base

    with contextlib.closing(_tracker_socket(rpc, timeout_sec)) as sock:
        try:
            base.sendjson(sock, [base.TrackerCode.SUMMARY])
            reply = base.recvjson(sock)
        except (OSError, RuntimeError, ValueError) as err:
            raise RPCError(f"the RPC tracker at {rpc.address} did not answer: {err}") from None
    servers = reply[1].get("server_info", []) if reply[0] == base.TrackerCode.SUCCESS else []
    keys = sorted({str(s.get("key", "")).removeprefix("server:") for s in servers})
    count = sum(1 for s in servers if s.get("key") == f"server:{rpc.key}")
    if count == 0:
        raise RPCError(
            f"no device is registered under key {rpc.key!r} at the RPC tracker {rpc.address} "
            f"(keys there: {', '.join(keys) or 'none'}); start one with `python -m "
            f"tvm.exec.rpc_server --tracker {rpc.address} --key {rpc.key}`"
        )
    return count


def query_rpc_cpu(rpc: RPCSettings, timeout_sec: float = TRACKER_TIMEOUT_SEC) -> str | None:
    """LLVM's name for the CPU of one device under ``rpc.key``, or None if it cannot tell.

    The tracker's own ``request`` waits for a free device without a time limit, so this asks
    over a socket with a timeout: devices busy with another collection just give None.
    """
    from tvm import rpc as tvm_rpc
    from tvm.rpc import base

    try:
        with contextlib.closing(_tracker_socket(rpc, timeout_sec)) as sock:
            base.sendjson(sock, [base.TrackerCode.REQUEST, rpc.key, "", rpc.priority])
            reply = base.recvjson(sock)
        if reply[0] != base.TrackerCode.SUCCESS:
            return None
        url, port, matchkey = reply[1]
        session = tvm_rpc.connect(url, port, matchkey, session_timeout=timeout_sec)
        # Registered by TVM's compiler library, which a Python RPC server loads; a bare
        # C++ runtime server lacks it.
        return str(session.get_function("target.llvm_get_system_cpu")())
    except Exception as err:  # any failure only loses the CPU name in meta.json
        logger.warning("could not ask an RPC device %r for its CPU: %s", rpc.key, err)
        return None


def make_rpc_runner(rpc: RPCSettings, target, evaluator_config) -> tuple[object, str | None]:
    """TVM's ``RPCRunner`` on the devices under ``rpc.key``, and the CPU they report.

    Returns
    -------
    tuple
        ``(runner, cpu)``: ``cpu`` is the devices' CPU, else the target's ``mcpu``, else None.

    Raises
    ------
    RPCError
        When the tracker is unreachable or has no device under the key.
    """
    from tvm.s_tir import meta_schedule as ms

    devices = count_rpc_devices(rpc)
    cpu = query_rpc_cpu(rpc)
    mcpu = str(target.attrs["mcpu"]) if "mcpu" in target.attrs else None
    if cpu is not None and mcpu and cpu != mcpu:
        logger.warning(
            "the RPC devices under %r report CPU %r but the target says mcpu=%r: pass the "
            "device's --target so records are filed under the right target",
            rpc.key,
            cpu,
            mcpu,
        )
    workers = rpc.workers or devices
    logger.info(
        "measuring on %s: %d device(s), %d session(s) at a time", rpc.describe(), devices, workers
    )
    # The builder's .so artifacts are uploaded as they are; the server dlopens them. That needs
    # a device with the ISA/ABI of the host's linker output (same-arch devices).
    runner = ms.runner.RPCRunner(
        rpc_config=rpc.rpc_config(), evaluator_config=evaluator_config, max_workers=workers
    )
    return runner, cpu or mcpu


def check_rpc_results(results, rpc: RPCSettings | None) -> None:
    """A lost tracker is not a property of the schedules: stop instead of recording failures."""
    if rpc is None:
        return
    for result in results:
        if result.error_msg and "Unable to connect to the tracker" in str(result.error_msg):
            raise RPCError(
                f"lost the RPC tracker at {rpc.address} while measuring; the batch in flight "
                "was not recorded, re-run to continue"
            )
