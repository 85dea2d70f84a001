"""Collect measured schedules into standard MetaSchedule JSON databases, resumably.

For each task, a share of the trials are uniform random samples of the design space
(``ReplayTrace``) and the rest come from cost-model-guided evolutionary search, which
concentrates samples on fast code (One-Shot Tuner's finding: a data set for a good predictor
needs many near-optimal programs, which random sampling rarely yields).

Layout: ``<root>/<target-key>/<task-name>/{database_workload.json,
database_tuning_record.json, meta.json}``. Records are appended after every measured batch;
a kill loses at most the batch in flight, and a re-run continues where it stopped.

Candidates are built here and timed either by a local runner or, with :class:`RPCSettings`,
by TVM's ``RPCRunner`` on every device registered under one key at an RPC tracker.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ms_meta.errors import MsMetaError
from ms_meta.workloads import Workload

logger = logging.getLogger(__name__)

COLLECTOR_VERSION = 1
RECORD_FILE = "database_tuning_record.json"
WORKLOAD_FILE = "database_workload.json"
META_FILE = "meta.json"

# A phase that ends short (its samples were already on disk) is re-run with a new seed this
# many times before the collector accepts fewer records for the task.
MAX_PHASE_ATTEMPTS = 3
ONE_SHOT_PHASE = "one-shot"
# How long to wait for an RPC tracker to answer, and for a free device to report its CPU.
TRACKER_TIMEOUT_SEC = 10.0


class TaskLockedError(MsMetaError, RuntimeError):
    """Another process is appending to this task's records."""


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


@dataclass(frozen=True)
class CollectConfig:
    """Settings of one collection run (keyword-only, immutable)."""

    trials_per_task: int = 192
    random_fraction: float = 0.33  # share of uniform random samples; the rest are guided
    batch_size: int = 32
    cost_model: str = "xgb"  # guides the evolutionary phase: xgb | meta | random
    population_size: int = 256
    genetic_num_iters: int = 3
    seed: int = 0
    max_workers: int | None = None
    number: int = 1
    repeat: int = 3
    min_repeat_ms: int = 40
    rpc: RPCSettings | None = None  # None: time on this machine with a LocalRunner
    # Re-time a batch measured while other processes took CPU (local runner only; see
    # ms_meta.tuning.contention).
    contention_guard: bool = True
    # Measure tasks an earlier run marked as exhausted (say, to top them up with another model).
    retry_exhausted: bool = False
    # Records measured from One-Shot searches (ms_meta.one_shot.search), counted apart from
    # trials_per_task: the schedules the pre-trained model alone ranks best, the model's own
    # confident mistakes among them. Training on them teaches the model where its search goes.
    one_shot_picks: int = 0
    one_shot_per_search: int = 4  # the best-scored unmeasured finalists taken from each search
    one_shot_weights: str | None = None  # None: the shipped weights for the target


@dataclass(frozen=True)
class Measurer:
    """Builder and runner of a collection, and what meta.json says about the runner."""

    builder: object
    runner: object
    runner_name: str = "local"  # "local" or "rpc <key>@<host:port>"
    cpu: str | None = None  # the measuring device's CPU; None: this machine's


@dataclass
class TaskProgress:
    task: str
    existing: int
    measured: int = 0
    failed: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    best_us: float | None = None
    skipped: str | None = None  # why the task was not collected (another collector holds it)
    exhausted: bool = False  # the search found no schedule it had not measured already
    stopped: bool = False  # a stop was requested; the task is left part-done
    timing_reruns: int = 0  # batches re-timed because other processes took CPU
    disturbed_batches: int = 0  # batches kept although every timing was disturbed

    @property
    def records_per_second(self) -> float:
        return self.measured / self.seconds if self.seconds > 0 else 0.0


@dataclass
class CollectSummary:
    tasks: list[TaskProgress] = field(default_factory=list)

    @property
    def measured(self) -> int:
        return sum(t.measured for t in self.tasks)

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tasks)


ProgressCallback = Callable[[str, int, int], None]  # (task name, records added now, failed now)


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def repair_torn_tail(path: Path) -> bool:
    """Cut a last line that a kill left half-written; returns whether anything was cut.

    JSONDatabase refuses to load a file with a torn line, and the next append would glue a
    record onto it. Records end with a newline, so everything after the last one is torn.
    """
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return False
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
    logger.warning("%s: dropped a torn last line (%d bytes)", path, len(data) - keep)
    return True


def _repaired_count(task_dir: Path) -> int:
    """Records of a task once torn tails are cut (call it holding the task lock)."""
    repair_torn_tail(task_dir / WORKLOAD_FILE)
    repair_torn_tail(task_dir / RECORD_FILE)
    return count_lines(task_dir / RECORD_FILE)


@contextlib.contextmanager
def task_lock(task_dir: Path) -> Iterator[None]:
    """Stop two collectors (say, overlapping shards) from appending to one task at once."""
    task_dir.mkdir(parents=True, exist_ok=True)
    with open(task_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TaskLockedError(f"{task_dir} is being collected by another process") from None
        yield


def write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def workload_meta(workload: Workload, target) -> dict:
    """The fields meta.json records about a task's workload and target."""
    from ms_meta.tuning.target import target_summary

    return {
        "task": workload.name,
        "spec": workload.spec,
        "op": workload.op,
        "kind": workload.kind,
        "aliases": list(workload.aliases),
        "flops": workload.flops,
        "target": target_summary(target),
    }


def update_meta(task_dir: Path, workload: Workload, target, config: CollectConfig, **extra):
    from ms_meta.tuning.target import host_cpu

    path = task_dir / META_FILE
    meta = json.loads(path.read_text()) if path.exists() else {}
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta.update(workload_meta(workload, target))
    meta.update(
        cpu=host_cpu(),
        origin=meta.get("origin", f"ms-meta collect v{COLLECTOR_VERSION}"),
        collector=asdict(config),
    )
    meta.update(extra)
    write_json_atomic(path, meta)


# --- RPC ----------------------------------------------------------------------------------------


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


def make_measurer(target, config: CollectConfig) -> Measurer:
    """The builder (always local) and the runner (local, or RPC per ``config.rpc``)."""
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.builder import make_builder
    from ms_meta.tuning.measure import MeasureSettings, make_local_runner

    settings = MeasureSettings(
        number=config.number, repeat=config.repeat, min_repeat_ms=config.min_repeat_ms
    )
    rpc = config.rpc
    if rpc is None:
        return Measurer(make_builder(max_workers=config.max_workers), make_local_runner(settings))
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
        rpc_config=rpc.rpc_config(),
        evaluator_config=settings.evaluator_config(),
        max_workers=workers,
    )
    return Measurer(
        make_builder(max_workers=config.max_workers),
        runner,
        runner_name=rpc.describe(),
        cpu=cpu or mcpu,
    )


def _check_rpc_results(results, rpc: RPCSettings | None) -> None:
    """A lost tracker is not a property of the schedules: stop instead of recording failures."""
    if rpc is None:
        return
    for result in results:
        if result.error_msg and "Unable to connect to the tracker" in str(result.error_msg):
            raise RPCError(
                f"lost the RPC tracker at {rpc.address} while measuring; the batch in flight "
                "was not recorded, re-run to continue"
            )


# --- collection ---------------------------------------------------------------------------------


def _canonical(obj):
    """The JSON value as it reads back from a database file, where booleans are 0/1."""
    if isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items()}
    return obj


def _trace_key(trace) -> str:
    """De-duplication key of a trace; equal to :func:`_line_trace_key` of its record line."""
    from ms_meta.tuning.plain import to_plain

    return json.dumps(_canonical(to_plain(trace.as_json(remove_postproc=False))), sort_keys=True)


def _line_trace_key(line: str) -> str:
    return json.dumps(_canonical(json.loads(line)[1][0]), sort_keys=True)


def _existing_trace_keys(path: Path) -> set[str]:
    keys: set[str] = set()
    if not path.exists():
        return keys
    with open(path) as f:
        for line in f:
            try:
                keys.add(_line_trace_key(line))
            except (ValueError, IndexError, TypeError):
                continue  # not a record line; repair_torn_tail removes torn ones
    return keys


def _make_cost_model(kind: str, seed: int, target):
    from tvm.s_tir import meta_schedule as ms

    if kind == "xgb":
        # Warm-up of 16 samples instead of 100: the random phase provides them.
        return ms.cost_model.XGBModel(num_warmup_samples=16, adaptive_training=True)
    if kind == "random":
        return ms.cost_model.RandomModel(seed=seed)
    if kind == "meta":
        from ms_meta.model.cost_model import MetaCostModel

        # no scoring process: its start-up, once per task, would cost more than it saves,
        # and it must not run beside the timed runs
        return MetaCostModel(target=target, seed=seed, scoring_process=False)
    raise ValueError(f"unknown cost model {kind!r}; expected xgb, meta or random")


def collect_task(
    workload: Workload,
    root: Path,
    target,
    config: CollectConfig,
    builder,
    runner,
    on_progress: ProgressCallback | None = None,
    *,
    runner_name: str = "local",
    cpu: str | None = None,
) -> TaskProgress:
    """Measure ``config.trials_per_task`` schedules of one workload (minus those on disk).

    Raises :class:`TaskLockedError` if another process is collecting the same task.
    """
    from ms_meta.tuning.target import target_key

    task_dir = root / target_key(target) / workload.name
    with task_lock(task_dir):
        measurer = Measurer(builder, runner, runner_name=runner_name, cpu=cpu)
        return _collect_locked(workload, task_dir, target, config, measurer, on_progress)


def _collect_locked(
    workload: Workload,
    task_dir: Path,
    target,
    config: CollectConfig,
    measurer: Measurer,
    on_progress: ProgressCallback | None,
    stop: threading.Event | None = None,
) -> TaskProgress:
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.run_secs import FAILED_RUN_SECS
    from ms_meta.tuning.contention import ContentionGuard
    from ms_meta.tuning.measure import ContentionReport, measure, run_secs_of
    from ms_meta.tuning.target import host_cpu

    record_path = task_dir / RECORD_FILE
    existing = _repaired_count(task_dir)
    progress = TaskProgress(workload.name, existing)
    if records_wanted(task_dir, existing, config) == 0:
        return progress
    meta_path = task_dir / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    seconds_before = float(meta.get("collect_seconds", 0.0))
    reruns_before = int(meta.get("timing_reruns", 0))
    disturbed_before = int(meta.get("disturbed_batches", 0))
    # [first, last] record lines of batches kept although every timing was disturbed; the
    # dataset builder leaves them out (ms_meta.data.dataset.disturbed_line_mask)
    disturbed_lines: list = list(meta.get("disturbed_lines") or [])
    # Which record lines came from random sampling and which from a guided search with which
    # cost model: the records a model-guided search meets are a different (harder) ranking
    # job than random samples, and evaluations want to tell them apart.
    sources: list = list(meta.get("sources") or [])
    run_started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    device = {"runner": measurer.runner_name, "cpu": measurer.cpu or host_cpu()}
    machine = measurer.runner_name if config.rpc is not None else local_machine()
    # Timings on a remote device are not disturbed by what runs here.
    guard = ContentionGuard() if config.contention_guard and config.rpc is None else None
    contention = ContentionReport()
    started = time.perf_counter()

    def save_meta(**extra) -> None:
        # After every batch, so that a killed run still accounts for its time.
        progress.seconds = time.perf_counter() - started
        progress.timing_reruns = contention.reruns
        progress.disturbed_batches = contention.disturbed
        if progress.measured:  # a run that added nothing keeps the last real rate
            extra["records_per_second"] = round(progress.records_per_second, 4)
        extra["sources"] = sources
        if guard is not None:
            extra["timing_reruns"] = reruns_before + contention.reruns
            extra["disturbed_batches"] = disturbed_before + contention.disturbed
            extra["disturbed_lines"] = disturbed_lines
        update_meta(
            task_dir,
            workload,
            target,
            config,
            **device,
            collect_seconds=seconds_before + progress.seconds,
            records=count_lines(record_path),
            **extra,
        )

    update_meta(task_dir, workload, target, config, **device)
    mod = workload.build()
    database = ms.database.JSONDatabase(work_dir=str(task_dir))
    db_workload = database.commit_workload(mod)
    seen = _existing_trace_keys(record_path)

    def measure_and_commit(fresh: list, phase: str, source_model: str | None) -> list:
        """Time ``fresh``, append their records and account for them; returns the results."""
        disturbed_so_far = contention.disturbed
        results = measure(measurer.builder, measurer.runner, target, fresh, guard, contention)
        first = existing + progress.measured + 1  # the batch's first record line
        if contention.disturbed > disturbed_so_far and fresh:
            disturbed_lines.append([first, first + len(fresh) - 1])
        if fresh:
            note_source(
                sources, phase, source_model, run_started, first, len(fresh), machine=machine
            )
        _check_rpc_results(results, config.rpc)
        failed_now = 0
        for cand, result in zip(fresh, results, strict=True):
            secs = run_secs_of(result)
            if secs is None:
                failed_now += 1
                logger.debug("%s: %s", workload.name, result.error_msg)
            else:
                best = 1e6 * sorted(secs)[len(secs) // 2]
                progress.best_us = min(progress.best_us or best, best)
            database.commit_tuning_record(
                ms.database.TuningRecord(
                    cand.sch.trace,
                    db_workload,
                    secs if secs is not None else [FAILED_RUN_SECS],
                    target,
                    cand.args_info,
                )
            )
        progress.measured += len(fresh)
        progress.failed += failed_now
        save_meta()
        if on_progress is not None:
            on_progress(workload.name, len(fresh), failed_now)
        return results

    n_random_target = round(config.trials_per_task * config.random_fraction)
    phases = [("random", n_random_target), ("guided", config.trials_per_task)]
    if skips_as_exhausted(task_dir, existing, config):
        phases = []  # only One-Shot picks are wanted: the mark is about the other searches
    for phase, phase_target in phases:
        if progress.stopped:
            break
        for attempt in range(MAX_PHASE_ATTEMPTS):
            have = existing + progress.measured
            n_trials = phase_target - have
            if n_trials <= 0:
                break
            if phase == "random":
                strategy = ms.search_strategy.ReplayTrace(max_fail_count=100)
                model = None
            else:
                strategy = ms.search_strategy.EvolutionarySearch(
                    population_size=config.population_size,
                    genetic_num_iters=config.genetic_num_iters,
                )
                model = _make_cost_model(config.cost_model, config.seed, target)
            context = ms.TuneContext(
                mod=mod,
                target=target,
                space_generator="post-order-apply",
                search_strategy=strategy,
                task_name=workload.name,
                rand_state=config.seed + have + 1 + 7919 * attempt,
                num_threads="physical",
            )
            if model is not None:
                _warm_start(model, context, database, db_workload)
            context.pre_tuning(
                max_trials=n_trials,
                num_trials_per_iter=min(config.batch_size, n_trials),
                design_spaces=context.generate_design_space(),
                database=database,
                cost_model=model,
            )
            measured_before = progress.measured
            while (candidates := context.generate_measure_candidates()) is not None:
                fresh, keys = [], []
                for cand in candidates:
                    key = _trace_key(cand.sch.trace)
                    if key in seen:
                        progress.duplicates += 1
                        continue
                    if have + len(fresh) >= phase_target:
                        continue  # never more records than asked for
                    seen.add(key)
                    fresh.append(cand)
                    keys.append(key)
                results = measure_and_commit(fresh, phase, config.cost_model)
                have += len(fresh)
                if model is not None and fresh:
                    model.update(context, fresh, results)
                # Duplicates get a neutral "not run" result so the search's trial count moves on.
                by_key = dict(zip(keys, results, strict=True))
                context.notify_runner_results(
                    candidates,
                    [
                        by_key.get(_trace_key(c.sch.trace), ms.runner.RunnerResult(None, "dup"))
                        for c in candidates
                    ],
                )
                if not fresh and progress.duplicates > 4 * config.trials_per_task:
                    break  # a tiny design space: nothing new left to sample
                if stop is not None and stop.is_set():
                    break
            context.post_tuning()
            if stop is not None and stop.is_set():
                progress.stopped = True
                break
            if progress.measured == measured_before:
                progress.exhausted = True
                break  # the search found nothing new; another seed will not either
            progress.exhausted = False  # only the last attempt's outcome counts
    if not progress.stopped and config.one_shot_picks:
        _measure_one_shot_picks(
            mod, workload.name, target, config, seen, measure_and_commit, progress, stop,
            already=one_shot_records(sources),
        )  # fmt: skip
    # Remember an exhausted design space, so that later runs do not spend minutes re-sampling
    # it; the mark holds only while the record count is the one it was made at.
    done = existing + progress.measured
    progress.exhausted = _looks_exhausted(progress)
    save_meta(exhausted_at=done if progress.exhausted and done < config.trials_per_task else None)
    return progress


def local_machine() -> str:
    """This boot of this machine, e.g. ``"vm boot bb739b0d"``.

    Timings from two machines of one type differ: a fresh VM of the same Zen 4 type timed the
    best records of earlier ones at 0.7-0.8x their stored latency (session 11). Records
    therefore name the boot they were timed in, and the dataset builder keeps each boot's
    labels apart (:func:`ms_meta.data.dataset.measurement_sources`).
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "unknown"
    return f"{socket.gethostname()} boot {boot}"


def note_source(
    sources: list,
    phase: str,
    cost_model: str | None,
    run: str,
    first: int,
    count: int,
    *,
    machine: str | None = None,
) -> None:
    """Add record lines ``first .. first + count - 1`` to meta.json's ``sources`` list.

    Each entry is ``{"lines": [first, last], "phase": "random" | "guided" | "one-shot",
    "cost_model": name or None (random samples), "run": start time of the collect run,
    "machine": where they were timed (:func:`local_machine`, or the RPC key and tracker)}``;
    a batch that continues the last entry's lines with the same source extends it. Entries
    written before session 11 have no ``machine``.
    """
    source = {"phase": phase, "cost_model": cost_model if phase != "random" else None, "run": run}
    if machine is not None:
        source["machine"] = machine
    last = first + count - 1
    if sources:
        previous = sources[-1]
        same = all(previous.get(key) == value for key, value in source.items())
        if same and previous["lines"][1] == first - 1:
            previous["lines"][1] = last
            return
    sources.append({"lines": [first, last], **source})


def one_shot_records(sources: list) -> int:
    """How many records of a task's ``sources`` (meta.json) came from One-Shot searches."""
    return sum(
        entry["lines"][1] - entry["lines"][0] + 1
        for entry in sources
        if entry.get("phase") == ONE_SHOT_PHASE
    )


def one_shot_wanted(task_dir: Path, config: CollectConfig) -> int:
    """One-Shot picks still to measure for a task (``config.one_shot_picks`` minus those on
    disk)."""
    if not config.one_shot_picks:
        return 0
    meta_path = task_dir / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return max(0, config.one_shot_picks - one_shot_records(meta.get("sources") or []))


def records_wanted(task_dir: Path, existing: int, config: CollectConfig) -> int:
    """Records still to measure for a task: up to ``trials_per_task`` in all (whatever
    measured them; none if the task is marked exhausted and ``config`` does not retry it),
    and ``one_shot_picks`` from One-Shot searches (another search, which an exhausted mark
    does not stop)."""
    exhausted = skips_as_exhausted(task_dir, existing, config)
    standard = 0 if exhausted else max(0, config.trials_per_task - existing)
    return standard + one_shot_wanted(task_dir, config)


def _one_shot_model(config: CollectConfig, target):
    from ms_meta.model.cost_model import MetaCostModel

    weights = config.one_shot_weights or "default"
    # no scoring process: it must not run beside the timed runs
    model = MetaCostModel(weights=weights, target=target, scoring_process=False, seed=config.seed)
    return model, f"one-shot:{Path(weights).name if config.one_shot_weights else 'shipped'}"


def _measure_one_shot_picks(
    mod, task_name, target, config, seen, measure_and_commit, progress, stop, *, already
) -> None:
    """Measure the best-scored unmeasured finalists of One-Shot searches until the task has
    ``config.one_shot_picks`` such records; each search has its own seed and contributes at
    most ``config.one_shot_per_search``."""
    from ms_meta.one_shot.search import search_task
    from ms_meta.one_shot.settings import SearchSettings

    need = config.one_shot_picks - already
    if need <= 0:
        return
    model, label = _one_shot_model(config, target)
    settings = SearchSettings()
    searches_without_news = 0
    search = already  # seeds continue where an earlier run stopped
    while need > 0 and searches_without_news < MAX_PHASE_ATTEMPTS:
        found = search_task(
            mod, target, model, task_name=task_name, settings=settings,
            rand_state=config.seed + 1 + 7919 * search,
        )  # fmt: skip
        search += 1
        fresh = []
        for finalist in found.finalists:
            key = _trace_key(finalist.trace)
            if key in seen:
                progress.duplicates += 1
                continue
            if len(fresh) < min(need, config.one_shot_per_search):
                seen.add(key)
                fresh.append(finalist.candidate)
        if not fresh:
            searches_without_news += 1
            continue
        searches_without_news = 0
        measure_and_commit(fresh, ONE_SHOT_PHASE, label)
        need -= len(fresh)
        if stop is not None and stop.is_set():
            progress.stopped = True
            return


# A run whose search proposed this many already-measured schedules per new one has all but
# exhausted its design space: small pooling tasks gave 5 new records for 63-191 duplicates in
# 1-3 minutes, on every pass of `collect all`.
_EXHAUSTED_DUPLICATES_PER_RECORD = 8


def _looks_exhausted(progress: TaskProgress) -> bool:
    """Whether later runs should skip this task until its record count changes."""
    if progress.stopped:
        return False
    mostly_duplicates = progress.duplicates >= _EXHAUSTED_DUPLICATES_PER_RECORD * max(
        progress.measured, 1
    )
    # A search that ends a productive run with an empty last attempt has not exhausted a large
    # space: stock XGB-guided runs of dense layers stopped at 62-63 of 64 records, with 2-7
    # duplicates, that way, and a mark keeps every later run (with any cost model) off the
    # task. A small space shows itself by proposing more measured schedules than new ones.
    ran_dry = progress.exhausted and progress.duplicates >= progress.measured
    return ran_dry or mostly_duplicates


def skips_as_exhausted(task_dir: Path, records: int, config: CollectConfig) -> bool:
    """Whether a run with ``config`` skips this task: an earlier run marked its design space
    exhausted at ``records`` records, and ``config`` does not ask to retry marked tasks."""
    return not config.retry_exhausted and exhausted_mark(task_dir, records)


def exhausted_mark(task_dir: Path, records: int) -> bool:
    """Whether an earlier run found this task's design space exhausted at ``records`` records."""
    meta_path = task_dir / META_FILE
    if not meta_path.exists():
        return False
    try:
        mark = json.loads(meta_path.read_text()).get("exhausted_at")
    except (OSError, ValueError):
        return False
    return mark is not None and mark == records


def _warm_start(model, context, database, db_workload) -> None:
    """Train the guiding model on what is already measured for this task."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.run_secs import is_failed

    records = database.get_top_k(db_workload, 4096)
    if not records:
        return
    candidates, results = [], []
    for rec in records:
        try:
            sch = Schedule(rec.workload.mod)
            rec.trace.apply_to_schedule(sch, remove_postproc=False)
        except Exception:  # a record whose trace no longer applies is not usable here
            continue
        if is_failed(rec.run_secs):
            continue
        secs = [float(s) for s in rec.run_secs]
        candidates.append(ms.MeasureCandidate(sch, rec.args_info))
        results.append(ms.runner.RunnerResult(secs, None))
    if candidates:
        model.update(context, candidates, results)


def collect(
    workloads: Sequence[Workload],
    root: Path,
    target,
    config: CollectConfig = CollectConfig(),
    on_progress: ProgressCallback | None = None,
    on_task_done: Callable[[TaskProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> CollectSummary:
    """Collect every workload in turn; see :func:`collect_task`.

    Setting ``stop`` (say, from a SIGINT handler) ends the run after the batch in flight is
    written, so nothing is lost and no interrupt lands inside TVM's C++ code.

    The builder and runner start only once a task needs measuring; a task that another
    collector holds is skipped (``TaskProgress.skipped`` says why).

    Raises
    ------
    RPCError
        With ``config.rpc``: the tracker is unreachable or has no device under the key.
    """
    from ms_meta.tuning.intrin import import_tensor_intrinsics
    from ms_meta.tuning.target import target_key

    if config.rpc is not None:
        count_rpc_devices(config.rpc)  # fail before touching the record tree
    import_tensor_intrinsics(target.kind.name)
    measurer: Measurer | None = None
    summary = CollectSummary()
    for workload in workloads:
        if stop is not None and stop.is_set():
            break
        task_dir = root / target_key(target) / workload.name
        try:
            with task_lock(task_dir):
                existing = _repaired_count(task_dir)
                wanted = records_wanted(task_dir, existing, config)
                if wanted == 0 and existing >= config.trials_per_task:
                    progress = TaskProgress(workload.name, existing)
                elif wanted == 0:  # only the other searches were wanted, and the mark stops them
                    progress = TaskProgress(workload.name, existing, exhausted=True)
                    progress.skipped = (
                        f"design space exhausted at {existing} records by an earlier run"
                    )
                else:
                    if measurer is None:
                        measurer = make_measurer(target, config)
                    progress = _collect_locked(
                        workload, task_dir, target, config, measurer, on_progress, stop
                    )
        except TaskLockedError as err:  # leave the task to the collector that holds it
            logger.warning("%s", err)
            progress = TaskProgress(workload.name, count_lines(task_dir / RECORD_FILE))
            progress.skipped = "being collected by another process"
        summary.tasks.append(progress)
        if on_task_done is not None:
            on_task_done(progress)
    return summary
