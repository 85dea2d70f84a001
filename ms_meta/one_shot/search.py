"""One task's one-shot search: MetaSchedule's evolutionary search scored by a cost model alone.

No builder, no runner, no model update: ``TuneContext.pre_tuning`` and one
``generate_measure_candidates`` call run the whole evolution (random samples from the design
space, ``genetic_num_iters`` generations of mutation, every generation scored by the cost model),
and return the best-scored distinct schedules. Those finalists are scored once more, so that
their scores can be reported, and ranked. The library's path (:func:`library_search`) also
says how far the task is from the library (:func:`library_confidence`): its picks are as good
as its nearest measured neighbour is near.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.cost_model import PyCostModel

from ms_meta.one_shot.library import SAME_TASK_DISTANCE
from ms_meta.one_shot.result import TaskConfidence, label_of
from ms_meta.one_shot.settings import SearchSettings

__all__ = [
    "Finalist",
    "TaskSearch",
    "epilogue_at_tile",
    "epilogue_pays",
    "library_confidence",
    "library_search",
    "search_task",
    "transfer_schedule",
]

logger = logging.getLogger(__name__)


@derived_object
class _ScoreProbe(PyCostModel):
    """Passes ``predict`` through to a cost model and keeps its scores and time.

    ``update`` must never run in one-shot mode (nothing is measured); it raises, so a wiring
    mistake cannot quietly adapt the model to fake results.
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.scores: list[np.ndarray] = []
        self.seconds = 0.0

    def load(self, path: str) -> None:
        self.model.load(path)

    def save(self, path: str) -> None:
        self.model.save(path)

    def update(self, context, candidates, results) -> None:
        raise RuntimeError("one-shot search must not update the cost model")

    def predict(self, context, candidates) -> np.ndarray:
        started = time.perf_counter()
        scores = np.asarray(self.model.predict(context, candidates), dtype=np.float64)
        self.seconds += time.perf_counter() - started
        self.scores.append(scores)
        return scores

    @property
    def scored(self) -> int:
        return sum(len(s) for s in self.scores)


@dataclass
class Finalist:
    """A schedule the search returned, with the cost model's score (higher = predicted faster)."""

    candidate: ms.MeasureCandidate
    score: float
    rank: int  # 1 = the best score
    # "search", or where a library schedule came from: "<library task> #<its speed rank>"
    origin: str = "search"
    # a library schedule measured on this very task (the library holds the task itself)
    own_measurement: bool = False

    @property
    def trace(self) -> tvm.s_tir.Trace:
        return self.candidate.sch.trace


@dataclass
class TaskSearch:
    """The outcome of one task's search.

    ``finalists`` are sorted best first; empty when the search found no valid schedule.
    ``search_seconds`` is the whole task (design space, sampling, mutation, featurization and
    prediction); ``predict_seconds`` the part inside the cost model (featurize + predict);
    ``cpu_seconds`` the process CPU time of the search, all threads (less sensitive than wall
    time to other processes on a shared machine).
    """

    task_name: str
    mod: tvm.IRModule
    finalists: list[Finalist]
    scored: int
    search_seconds: float
    predict_seconds: float
    cpu_seconds: float = 0.0
    score_median: float | None = None
    design_spaces: int = 0
    notes: list[str] = field(default_factory=list)
    source: str = "search"  # or "library": the finalists are transferred library schedules
    neighbours: list[str] = field(default_factory=list)  # the library tasks that lent them
    # how far the task is from the library (library_search); "none" for a searched task
    confidence: TaskConfidence = field(default_factory=lambda: TaskConfidence("none"))

    @property
    def best(self) -> Finalist | None:
        return self.finalists[0] if self.finalists else None


def search_task(
    mod: tvm.IRModule | tvm.tirx.PrimFunc,
    target: tvm.target.Target,
    cost_model,
    *,
    task_name: str = "main",
    rand_state: int = 1,
    settings: SearchSettings | None = None,
    finalists: int | None = None,
) -> TaskSearch:
    """Run MetaSchedule's evolutionary search on one task, scored only by ``cost_model``.

    Parameters
    ----------
    mod : IRModule or PrimFunc
        The task (one PrimFunc, or an IRModule whose single function is the task).
    target : Target
        Needs ``num-cores`` (MetaSchedule's CPU rules read it).
    cost_model : CostModel
        Any MetaSchedule cost model; only its ``predict`` is called.
    rand_state : int
        The search's seed, in [1, 2**31 - 1].
    settings : SearchSettings, optional
        Population, generations and finalists (default: ``SearchSettings()``).
    finalists : int, optional
        How many best-scored distinct schedules to return (default ``settings.finalists``).
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    settings = settings or SearchSettings()
    keep = finalists or settings.finalists
    probe = _ScoreProbe(cost_model)
    strategy = ms.search_strategy.EvolutionarySearch(
        population_size=settings.population_size,
        # nothing is measured: the initial population is random samples only
        init_measured_ratio=0.0,
        init_min_unmeasured=min(settings.init_min_unmeasured, settings.population_size),
        genetic_num_iters=settings.genetic_num_iters,
        genetic_mutate_prob=settings.genetic_mutate_prob,
        # no random picks among the returned candidates: only the best-scored ones
        eps_greedy=0.0,
    )
    context = _tune_context(mod, target, task_name, rand_state, settings, strategy)
    spaces = context.generate_design_space()
    notes: list[str] = []
    candidates: list[ms.MeasureCandidate] = []
    if spaces:
        context.pre_tuning(
            max_trials=keep,
            num_trials_per_iter=keep,
            design_spaces=spaces,
            # an empty database: nothing measured to start from, nothing measured to skip
            database=ms.database.MemoryDatabase(),
            cost_model=probe,
        )
        try:
            candidates = list(context.generate_measure_candidates() or [])
        finally:
            context.post_tuning()
    else:
        notes.append("the design space is empty")
    if not candidates and spaces:
        notes.append("the search found no valid schedule (every sample failed to replay)")
    population_scores = np.concatenate(probe.scores) if probe.scores else np.zeros(0)
    ranked: list[Finalist] = []
    if candidates:
        scores = probe.predict(context, candidates)
        order = np.argsort(-scores, kind="stable")
        ranked = [
            Finalist(candidates[i], float(scores[i]), rank)
            for rank, i in enumerate(order.tolist(), start=1)
        ]
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for note in notes:
        logger.warning("one-shot search of %s: %s", task_name, note)
    return TaskSearch(
        task_name=task_name,
        mod=context.mod,
        finalists=ranked,
        scored=probe.scored,
        search_seconds=elapsed,
        predict_seconds=probe.seconds,
        cpu_seconds=cpu,
        score_median=float(np.median(population_scores)) if len(population_scores) else None,
        design_spaces=len(spaces),
        notes=notes,
    )


def _tune_context(mod, target, task_name: str, rand_state: int, settings: SearchSettings,
                  strategy=None) -> ms.TuneContext:  # fmt: skip
    return ms.TuneContext(
        mod=mod,
        target=target,
        space_generator="post-order-apply",
        search_strategy=strategy,
        task_name=task_name,
        rand_state=rand_state,
        num_threads=settings.num_threads or int(target.attrs.get("num-cores", 1)),
    )


def _standardized(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def epilogue_at_tile(sch: tvm.s_tir.Schedule) -> None:
    """Compute every root-level block after the tiled main block inside the main block's outer
    spatial tile loops (the loops the postprocessors fuse into the parallel one).

    A library schedule was measured on a plain task (a convolution alone); the network's task
    adds the bias, the activation, a residual ``add``. The trace names only the plain task's
    blocks, so those epilogue blocks would stay loop nests of their own, each a pass over the
    whole output after the convolution's. In MobileNetV2 the 384-channel 14x14 depthwise
    convolution with its bias and ReLU6 ran in 264 us that way and in 42.5 us with the
    epilogue in the tile loop (31 us alone; rocketlake, 2 threads, 2026-12-05).

    Raises ``ScheduleError`` (a ``RuntimeError``) when a block does not fit there; the caller
    keeps the schedule as it was.
    """
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    tiled = [
        i for i, block in enumerate(blocks)
        if "meta_schedule.tiling_structure" in sch.get(block).annotations
    ]  # fmt: skip
    if not tiled or tiled[0] == len(blocks) - 1:
        return
    main = blocks[tiled[0]]
    spatial = sum(1 for iv in sch.get(main).iter_vars if iv.iter_type == tvm.tirx.IterVar.DataPar)
    loops = sch.get_loops(main)
    if spatial == 0 or len(loops) < spatial:
        return
    outer = sch.get(loops[0])
    for block in blocks[tiled[0] + 1 :]:
        inside = sch.get_loops(block)
        if inside and sch.get(inside[0]).same_as(outer):
            continue  # in the tiles already (the main block's write cache)
        sch.reverse_compute_at(block, loops[spatial - 1])


def epilogue_pays(mod: tvm.IRModule, kind: str) -> bool:
    """Whether a replayed schedule of this task computes its epilogue in the tiles
    (:func:`epilogue_at_tile`): for depthwise and pointwise (1x1) convolutions, whose few
    operations per output element leave the extra passes over the output a large share.
    One-Shot's MobileNetV2 ran in 5.78 ms so, 9.44 ms without the move and 5.49 ms with it for
    every task; ResNet-50 in 37.76 ms against 43.86; ResNet-18, whose 3x3 convolutions ran 11%
    slower with the move, in 14.76 ms against 14.88 (rocketlake, 2 threads, 3 rounds each,
    2026-12-05)."""
    if kind == "depthwise_conv2d":
        return True
    if not kind.startswith("conv2d"):
        return False
    sch = tvm.s_tir.Schedule(mod)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        reduce = [
            iv for iv in sch.get(block).iter_vars if iv.iter_type == tvm.tirx.IterVar.CommReduce
        ]
        if len(reduce) == 3:  # input channels, kernel rows, kernel columns
            return all(int(iv.dom.extent) == 1 for iv in reduce[1:])
    return False


def transfer_schedule(
    trace_json, mod: tvm.IRModule, postprocs, *, epilogue: bool = False
) -> tvm.s_tir.Schedule | None:
    """Replay a library trace (without its postprocessors' part) on ``mod``, with ``epilogue``
    compute the task's epilogue inside the main block's tiles (:func:`epilogue_at_tile`, where
    it fits), then run ``postprocs``. ``None`` when the trace does not fit ``mod`` (other blocks or
    loops) or a postprocessor rejects the result. Tile factors that do not divide the new
    extents are repaired by ``SamplePerfectTile`` on replay."""
    sch = tvm.s_tir.Schedule(mod)
    try:
        tvm.s_tir.Trace.apply_json_to_schedule(trace_json, sch)
        if epilogue:
            moved = sch.copy()
            try:
                epilogue_at_tile(moved)
                sch = moved
            except RuntimeError:  # a ScheduleError: the epilogue does not fit the tiles, so
                pass  # it stays after them
        for postproc in postprocs:
            if not postproc.apply(sch):
                return None
    except Exception:  # a TVMError on a block or loop the trace names that mod lacks
        return None
    return sch


def library_confidence(library, kind: str, signature, nearest) -> TaskConfidence:
    """The confidence of a task of operator ``kind`` and ``signature`` whose library neighbours
    (:meth:`~ms_meta.one_shot.library.ScheduleLibrary.neighbours`) are ``nearest``.

    ``exact`` when the first neighbour was measured on the task's own main block (the task
    itself, or a sibling kind on the same loops: its fastest schedule is committed first);
    otherwise ``near``, ``moderate`` or ``far`` by the distance to the nearest neighbour
    (:func:`~ms_meta.one_shot.result.label_of`); ``none`` when there is no neighbour.
    """
    if not nearest:
        return TaskConfidence(
            "none", note=f"the library has no {kind} task with this task's main-block loop count"
        )
    leader, distance = nearest[0]
    if library.same_main_block(leader, signature):
        label = "exact"
    else:
        leader, distance = min(nearest, key=lambda item: item[1])
        label = label_of(distance)
    return TaskConfidence(
        label,
        distance=float(distance),
        neighbour=leader.name,
        same_kind=leader.kind == kind,
        same_main_block=library.same_main_block(leader, signature),
    )


def library_search(
    mod: tvm.IRModule | tvm.tirx.PrimFunc,
    target: tvm.target.Target,
    cost_model,
    library,
    *,
    task_name: str = "main",
    rand_state: int = 1,
    settings: SearchSettings | None = None,
    neighbours: int = 4,
    finalists: int | None = None,
    prior_weight: float | None = None,
) -> TaskSearch:
    """Score the library schedules of the task's nearest library tasks, replayed on it.

    When the library holds the task itself (same operator kind and signature), its fastest
    measured schedule comes first whatever its score: a measurement beats a prediction. The
    finalists are every distinct schedule that replayed (up to ``finalists``), ranked by the
    model's score plus ``prior_weight`` (default
    :data:`~ms_meta.one_shot.library.DEFAULT_PRIOR_WEIGHT`) times how fast each was on its own
    task, both standardized over the task's candidates; none when the library has no task of
    this operator kind or none of their schedules fits, so that the caller can fall back to
    :func:`search_task`.
    """
    from ms_meta.feature.task import infer_operator_kind
    from ms_meta.one_shot.library import DEFAULT_PRIOR_WEIGHT, task_signature

    started, cpu_started = time.perf_counter(), time.process_time()
    settings = settings or SearchSettings()
    keep = finalists or settings.finalists
    context = _tune_context(mod, target, task_name, rand_state, settings)
    kind = infer_operator_kind(context.mod)
    signature = task_signature(context.mod)
    nearest = library.neighbours(kind, signature, k=neighbours)
    confidence = library_confidence(library, kind, signature, nearest)
    # the library measured this task's main block already: its fastest schedule leads
    leader = nearest[0] if nearest and library.same_main_block(nearest[0][0], signature) else None
    postprocs = list(context.space_generator.postprocs)
    epilogue = epilogue_pays(context.mod, kind)
    prior_weight = DEFAULT_PRIOR_WEIGHT if prior_weight is None else prior_weight
    candidates, origins, relative, seen = [], [], [], set()
    failed = 0
    lead = False  # the leader's fastest schedule fits
    for entry, _ in nearest:
        for speed_rank, schedule in enumerate(entry.schedules, start=1):
            sch = transfer_schedule(schedule.trace, context.mod, postprocs, epilogue=epilogue)
            if sch is None:
                failed += 1
                continue
            key = str(sch.trace.as_json())  # two library traces may repair to one schedule
            if key in seen:
                continue
            seen.add(key)
            # as MetaSchedule's own search does: a layout-rewritten weight is an argument in its
            # new layout
            args_info = ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
            candidates.append(ms.MeasureCandidate(sch, args_info))
            origins.append(f"{entry.name} #{speed_rank}")
            relative.append(schedule.relative)
            lead = lead or (leader is not None and entry is leader[0] and speed_rank == 1)
    notes = []
    if not nearest:
        # nearest() pairs only tasks whose main blocks have as many loops as this one's
        notes.append(f"the library has no {kind} task with this task's main-block loop count")
    elif not candidates:
        notes.append(f"none of the {failed} schedules of {len(nearest)} library tasks fits")
    damaged = library.meta.get("damaged")
    if notes and damaged:
        notes[-1] += f" ({damaged['tasks']} damaged library tasks were left out)"
    ranked: list[Finalist] = []
    probe = _ScoreProbe(cost_model)
    if candidates:
        scores = probe.predict(context, candidates)
        # the model alone ranks its confident mistakes first now and then; a schedule's
        # measured speed on its own task is evidence the model does not see
        rank_key = _standardized(scores) + prior_weight * _standardized(-np.log(relative))
        order = np.argsort(-rank_key, kind="stable")
        # the leader's schedule #1 is candidate 0 when it fits (the library lists a task's
        # schedules fastest first): a measurement of these loops beats any prediction
        own = lead and leader[0].kind == kind and leader[1] <= SAME_TASK_DISTANCE
        if lead:
            order = np.concatenate([[0], order[order != 0]])
            origins[0] += (
                " (this task's own measurement)" if own else " (measured on its main block)"
            )
        order = order[:keep]
        ranked = [
            Finalist(candidates[i], float(scores[i]), rank, origins[i], own and i == 0)
            for rank, i in enumerate(order.tolist(), start=1)
        ]
    scored = np.concatenate(probe.scores) if probe.scores else np.zeros(0)
    return TaskSearch(
        task_name=task_name,
        mod=context.mod,
        finalists=ranked,
        scored=probe.scored,
        search_seconds=time.perf_counter() - started,
        predict_seconds=probe.seconds,
        cpu_seconds=time.process_time() - cpu_started,
        score_median=float(np.median(scored)) if len(scored) else None,
        notes=notes,
        source="library",
        neighbours=[entry.name for entry, _ in nearest],
        confidence=confidence,
    )
