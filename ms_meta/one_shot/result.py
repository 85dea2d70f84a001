"""What a one-shot run returns and writes to ``one_shot_summary.json``: per task its pick,
timings, measurements and confidence (how far the task is from the schedule library), so that a
user can tell which picks to trust and which to measure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tvm.s_tir import meta_schedule as ms

from ms_meta.one_shot.settings import PREDICTED_RUN_SECS, SearchSettings

__all__ = [
    "CONFIDENCE_LABELS",
    "FAR_DISTANCE",
    "NEAR_DISTANCE",
    "RUN_SECS_CONVENTION",
    "UNCERTAIN_LABELS",
    "Measurement",
    "OneShotResult",
    "TaskConfidence",
    "TaskOutcome",
    "TaskStatus",
    "label_of",
]

# predicted: the committed record is the model's pick, not measured;
# measured: ``verify`` measured finalists and the committed record is the fastest of them, or
# (source "store") the record store's fastest measurement of this very task, with no search;
# no-schedule: the search found nothing valid, nothing committed (the task compiles untuned);
# failed: the search raised, nothing committed.
TaskStatus = Literal["predicted", "measured", "no-schedule", "failed"]

RUN_SECS_CONVENTION = (
    f"predicted records store run_secs=[{PREDICTED_RUN_SECS:g}], a sentinel that no kernel "
    "reaches (valid for MetaSchedule, slower than any measurement); measured records store the "
    "runner's seconds per repeat"
)


# Confidence labels, most trusted first. exact: the library (or the record store) measured this
# task's own main block; near / moderate / far: the nearest library task is at most
# NEAR_DISTANCE, at most FAR_DISTANCE, or farther (ScheduleLibrary.nearest's distance over task
# signatures); none: the task was searched, no library schedule served it.
CONFIDENCE_LABELS = ("exact", "near", "moderate", "far", "none")
# What ``SearchSettings.verify_uncertain`` measures.
UNCERTAIN_LABELS = ("far", "none")
# The thresholds, in task-signature distance (log2 units: doubling one dimension of a dense
# layer moves it about 2.5, its FLOPs, shapes and loop extents all changing). Calibrated on the
# shipped rocketlake library (209 tasks, commit 8368fa4; each task's distance to its nearest
# other task of its kind: median 2.45, 75th percentile 3.14, 90th 4.56) and on 32 held-out
# tasks whose neighbours' schedules were all measured on them (Zen 4, 2026-12-04, commit
# 1a99707, benchmarks/library_transfer): the shipped pick ran 0.84x the reference in geomean
# (worst 1.09x) with its nearest library task within 2, 0.88-0.90x (worst 1.39x) between 2 and
# 4, and 1.05x (worst 1.81x) beyond 4.
NEAR_DISTANCE = 2.0
FAR_DISTANCE = 4.0


@dataclass
class TaskConfidence:
    """How far a task is from the measured schedules its pick came from.

    ``distance`` is the task-signature distance to the nearest library task that lends
    schedules to it (:meth:`~ms_meta.one_shot.library.ScheduleLibrary.neighbours`),
    ``neighbour`` that task, ``same_kind`` whether it is of the task's operator kind (else a
    sibling kind, e.g. the plain convolution of a fused one), ``same_main_block`` whether it was
    measured on the very same main block (loops and shapes). All are None when no library task
    of the task's kind exists. ``note`` says why a task is ``none``.
    """

    label: str
    distance: float | None = None
    neighbour: str | None = None
    same_kind: bool | None = None
    same_main_block: bool | None = None
    note: str | None = None

    @property
    def uncertain(self) -> bool:
        """Whether ``verify_uncertain`` measures the task (:data:`UNCERTAIN_LABELS`)."""
        return self.label in UNCERTAIN_LABELS

    def describe(self) -> str:
        """One line for logs and the CLI: ``far (5.21 from dense_512_512_512, same kind)``."""
        if self.neighbour is None:
            return f"{self.label} ({self.note})" if self.note else self.label
        kind = "same kind" if self.same_kind else "sibling kind"
        block = ", same main block" if self.same_main_block else ""
        text = f"{self.label} ({self.distance:.2f} from {self.neighbour}, {kind}{block})"
        return f"{text[:-1]}; {self.note})" if self.note else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "distance": None if self.distance is None else round(self.distance, 4),
            "neighbour": self.neighbour,
            "same_kind": self.same_kind,
            "same_main_block": self.same_main_block,
            "note": self.note,
        }


def label_of(distance: float) -> str:
    """The label of a task whose nearest library task (not its own main block) is at
    ``distance``."""
    if distance <= NEAR_DISTANCE:
        return "near"
    return "moderate" if distance <= FAR_DISTANCE else "far"


@dataclass
class Measurement:
    """One verified finalist: its predicted rank and score, and what the runner measured."""

    rank: int
    score: float
    run_secs: list[float] | None
    error: str | None = None

    @property
    def median_seconds(self) -> float | None:
        if not self.run_secs:
            return None
        ordered = sorted(self.run_secs)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    @property
    def mean_seconds(self) -> float | None:
        """The figure a MetaSchedule database ranks records by (mean of run_secs)."""
        return sum(self.run_secs) / len(self.run_secs) if self.run_secs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": self.score,
            "run_secs": self.run_secs,
            "median_seconds": self.median_seconds,
            "error": self.error,
        }


@dataclass
class TaskOutcome:
    """One task of a one-shot run.

    ``score`` and ``predicted_rank`` belong to the committed schedule (rank 1 = the model's best
    score; with ``verify`` the fastest measured finalist may have another rank).
    ``search_seconds`` covers design space, sampling, mutation, featurization and prediction;
    ``predict_seconds`` is the featurize + predict part of it; ``cpu_seconds`` the search's
    process CPU time (all threads); ``verify_seconds`` the build and
    measurement of the verified finalists (not part of the search). ``confidence`` says how far
    the task is from the measured schedules its pick came from.
    """

    task_name: str
    status: TaskStatus
    weight: float = 1.0
    score: float | None = None
    predicted_rank: int | None = None
    finalists: int = 0
    scored: int = 0
    score_median: float | None = None
    search_seconds: float = 0.0
    predict_seconds: float = 0.0
    cpu_seconds: float = 0.0
    verify_seconds: float | None = None
    measured_seconds: float | None = None
    verified: list[Measurement] = field(default_factory=list)
    error: str | None = None
    # "library": the finalists were library schedules replayed on the task (``neighbours``
    # lent them; ``origin`` names the committed one); "search": the evolutionary search's;
    # "store": the record store's fastest measurement of this task, no search (origin "store")
    source: str = "search"
    origin: str | None = None
    own_measurement: bool = False  # the pick is the library's measurement of this very task
    neighbours: list[str] = field(default_factory=list)
    confidence: TaskConfidence = field(default_factory=lambda: TaskConfidence("none"))

    @property
    def measured(self) -> bool:
        """Whether the committed record is a real measurement."""
        return self.status == "measured"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_name": self.task_name,
            "status": self.status,
            "measured": self.measured,
            "weight": self.weight,
            "score": self.score,
            "predicted_rank": self.predicted_rank,
            "finalists": self.finalists,
            "scored": self.scored,
            "score_median": self.score_median,
            "search_seconds": round(self.search_seconds, 4),
            "predict_seconds": round(self.predict_seconds, 4),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "verify_seconds": (
                None if self.verify_seconds is None else round(self.verify_seconds, 4)
            ),
            "measured_seconds": self.measured_seconds,
            "verified": [m.to_dict() for m in self.verified],
            "error": self.error,
            "source": self.source,
            "origin": self.origin,
            "own_measurement": self.own_measurement,
            "neighbours": self.neighbours,
            "confidence": self.confidence.to_dict(),
        }


@dataclass
class OneShotResult:
    """A one-shot run: the database to compile with, and what happened per task.

    ``database`` holds one record per task that got a schedule. Without ``verify`` it is the
    predicted-records database; with ``verify`` it puts the measured records first and falls
    back to the predicted ones for tasks whose measurements all failed.
    """

    database: ms.database.Database
    work_dir: Path
    tasks: list[TaskOutcome]
    startup_seconds: float
    pretrained: bool
    weights: str | None
    model_warning: str | None
    target: dict[str, Any]
    settings: SearchSettings
    verify: int
    seed: int
    library: str | None = None  # the schedule library's file, None when every task was searched
    summary_path: Path | None = None
    # what recording ``verify``'s measurements into the record store did (None: nothing
    # recorded; an ms_meta.store.ImportReport otherwise)
    store_report: Any = None

    @property
    def search_seconds(self) -> float:
        """Search + featurize + predict, summed over tasks (no start-up, no verification)."""
        return sum(t.search_seconds for t in self.tasks)

    @property
    def tasks_from_library(self) -> int:
        """Tasks whose finalists were library schedules (the others were searched)."""
        return sum(t.source == "library" for t in self.tasks)

    @property
    def tasks_from_store(self) -> int:
        """Tasks that took the record store's measurement of themselves (no search)."""
        return sum(t.source == "store" for t in self.tasks)

    @property
    def tasks_measured(self) -> int:
        """Tasks whose candidates this run measured (``verify`` or ``verify_uncertain``)."""
        return sum(bool(t.verified) for t in self.tasks)

    @property
    def confidence_counts(self) -> dict[str, int]:
        """How many tasks got each confidence label (:data:`CONFIDENCE_LABELS`, all listed)."""
        counts = dict.fromkeys(CONFIDENCE_LABELS, 0)
        for outcome in self.tasks:
            counts[outcome.confidence.label] = counts.get(outcome.confidence.label, 0) + 1
        return counts

    @property
    def measured(self) -> bool:
        """Whether every committed record is a real measurement."""
        committed = [t for t in self.tasks if t.status in ("predicted", "measured")]
        return bool(committed) and all(t.measured for t in committed)

    def task(self, name: str) -> TaskOutcome:
        for outcome in self.tasks:
            if outcome.task_name == name:
                return outcome
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured": self.measured,
            "run_secs_convention": RUN_SECS_CONVENTION,
            "model": {
                "weights": self.weights,
                "pretrained": self.pretrained,
                "warning": self.model_warning,
            },
            "target": self.target,
            "settings": self.settings.to_dict(),
            "verify": self.verify,
            "verify_uncertain": self.settings.verify_uncertain,
            "seed": self.seed,
            "library": self.library,
            "tasks_from_library": self.tasks_from_library,
            "tasks_from_store": self.tasks_from_store,
            "tasks_measured": self.tasks_measured,
            "confidence": self.confidence_counts,
            "record_store_added": None if self.store_report is None else self.store_report.added,
            "startup_seconds": round(self.startup_seconds, 4),
            "search_seconds": round(self.search_seconds, 4),
            "tasks": [t.to_dict() for t in self.tasks],
        }
