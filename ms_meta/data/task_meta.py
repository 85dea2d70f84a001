"""What a collection run is asked to do, how far each task got, and the ``meta.json`` that
remembers it between runs.

A task folder's ``meta.json`` records the workload and target, the collector's settings, the
time spent, and which record lines came from which search (``sources``): random samples, a
guided search with which cost model, or One-Shot picks, and on which machine they were timed.
Later runs read it to resume (how many records are still wanted, whether the design space was
found exhausted), and the dataset builder reads it to keep each machine's labels apart.
"""

from __future__ import annotations

import datetime as _dt
import json
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ms_meta.atomic import atomic_write_json
from ms_meta.data.layout import META_FILE
from ms_meta.tuning.rpc import RPCSettings
from ms_meta.workloads import Workload

__all__ = [
    "COLLECTOR_VERSION",
    "ONE_SHOT_PHASE",
    "CollectConfig",
    "CollectSummary",
    "ProgressCallback",
    "TaskProgress",
    "exhausted_mark",
    "local_machine",
    "looks_exhausted",
    "note_source",
    "one_shot_records",
    "one_shot_wanted",
    "read_meta_json",
    "records_wanted",
    "skips_as_exhausted",
    "update_meta",
    "workload_meta",
]

COLLECTOR_VERSION = 1
ONE_SHOT_PHASE = "one-shot"


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
    # Time candidates in SCHED_FIFO runner workers (local runner only; see
    # ms_meta.tuning.measure.enter_realtime): on a shared machine, the only way to keep other
    # processes from preempting a timed run.
    realtime: bool = False
    # Flush the CPU caches before each timed run (local runner only; see
    # ms_meta.tuning.measure.MeasureSettings.with_cold_caches): inside a model a layer's
    # weights arrive from memory, and warm timings rank weight-heavy schedules wrongly.
    cache_flush: bool = False
    # Measure tasks an earlier run marked as exhausted (say, to top them up with another model).
    retry_exhausted: bool = False
    # Records measured from One-Shot searches (ms_meta.one_shot.search), counted apart from
    # trials_per_task: the schedules the pre-trained model alone ranks best, the model's own
    # confident mistakes among them. Training on them teaches the model where its search goes.
    one_shot_picks: int = 0
    one_shot_per_search: int = 4  # the best-scored unmeasured finalists taken from each search
    one_shot_weights: str | None = None  # None: the shipped weights for the target


@dataclass
class TaskProgress:
    """How far one task got in one run."""

    task: str
    existing: int
    measured: int = 0
    failed: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    best_us: float | None = None
    skipped: str | None = None  # why the task was not collected (another collector holds it)
    locked: bool = False  # skipped because another process held the task's lock
    exhausted: bool = False  # the search found no schedule it had not measured already
    stopped: bool = False  # a stop was requested; the task is left part-done
    timing_reruns: int = 0  # batches re-timed because other processes took CPU
    disturbed_batches: int = 0  # batches kept although every timing was disturbed

    @property
    def records_per_second(self) -> float:
        return self.measured / self.seconds if self.seconds > 0 else 0.0


@dataclass
class CollectSummary:
    """The tasks of one run, in order."""

    tasks: list[TaskProgress] = field(default_factory=list)

    @property
    def locked(self) -> list[str]:
        """Tasks skipped because another process was appending to them."""
        return [t.task for t in self.tasks if t.locked]

    @property
    def measured(self) -> int:
        return sum(t.measured for t in self.tasks)

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tasks)


ProgressCallback = Callable[[str, int, int], None]  # (task name, records added now, failed now)


def read_meta_json(task_dir: Path) -> dict:
    """A task folder's ``meta.json`` as a dict; empty when the file is missing."""
    path = task_dir / META_FILE
    return json.loads(path.read_text()) if path.exists() else {}


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
    atomic_write_json(path, meta)


def local_machine() -> str:
    """This boot of this machine, e.g. ``"vm boot bb739b0d"``.

    Timings from two machines of one type differ: a fresh VM of the same Zen 4 type timed the
    best records of earlier ones at 0.7-0.8x their stored latency (Zen 4, 2026-12-04). Records
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
    threads: int | None = None,
    cache_flush: bool = False,
) -> None:
    """Add record lines ``first .. first + count - 1`` to meta.json's ``sources`` list.

    Each entry is ``{"lines": [first, last], "phase": "random" | "guided" | "one-shot",
    "cost_model": name or None (random samples), "run": start time of the collect run,
    "machine": where they were timed (:func:`local_machine`, or the RPC key and tracker)}``;
    a batch that continues the last entry's lines with the same source extends it. Entries
    written before commit ff34129 (2026-12-04) have no ``machine``.

    ``"threads"`` is the runtime thread count each candidate ran with. Entries without it were
    timed at TVM's default, which on x86 is half the logical CPUs: one thread on a 2-vCPU guest,
    whatever the target's ``num-cores`` (see :func:`ms_meta.data.measurements.line_timing`).
    ``"cache_flush": true`` marks runs timed with the CPU caches flushed before each run
    (:meth:`ms_meta.tuning.measure.MeasureSettings.with_cold_caches`).
    """
    source = {"phase": phase, "cost_model": cost_model if phase != "random" else None, "run": run}
    if machine is not None:
        source["machine"] = machine
    if threads is not None:
        source["threads"] = threads
    if cache_flush:
        source["cache_flush"] = True
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


# A run whose search proposed this many already-measured schedules per new one has all but
# exhausted its design space: small pooling tasks gave 5 new records for 63-191 duplicates in
# 1-3 minutes, on every pass of `collect all`.
_EXHAUSTED_DUPLICATES_PER_RECORD = 8


def looks_exhausted(progress: TaskProgress) -> bool:
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
