"""How long an experiment will take on this service's workers: measured, not guessed.

The costs come from stages that ran (the stored ``epoch_metrics.train_seconds`` of every epoch, the stages' start
and end, the evaluation's): seconds per optimiser step per network, width, image size, batch and stage kind (a
student's step also runs its teacher), seconds a stage spends outside its epochs (loading, checkpoints), seconds
per evaluated image and model. A spec is costed stage by stage from its plan (sikd_core.methods.plan): the same
configuration at its measured cost; another size or batch of a measured network scaled by the work per step; a
configuration never run here from a few training steps a worker timed for it (sikd_service.steptimes: asked for
at the first estimate, which meanwhile answers a-priori, labelled, or "not measured yet"). The API itself never
times a step. The queue is the time left of the experiments ahead, shared among the workers' slots.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from sikd_core.methods.plan import PlannedStage, stage_plan
from sikd_core.spec import ExperimentSpec, stored_spec
from sikd_service import crud, reuse, steptimes
from sikd_service.config import Settings
from sikd_service.steptimes import StepConfig
from sikd_service.tables import ACTIVE_EXPERIMENT, Dataset, Experiment, Stage

#: A stage's time outside its epochs when nothing has been measured yet (data preparation, model build, saving).
DEFAULT_FIXED_SECONDS = 5.0
#: A stage reused from a finished identical one (its files hard-linked, its record copied) before any reuse was
#: measured here; then the median of the measured ones.
REUSED_STAGE_SECONDS = 1.0
#: How many recent finished experiments calibrate the costs.
HISTORY = 40


@dataclass(frozen=True)
class Shape:
    """What a spec trains and scores: images per split, steps per epoch."""

    n_train: int
    n_val: int
    n_test: int
    n_cross: int
    steps_per_epoch: int
    val_batches: int


@dataclass
class Costs:
    """Measured costs of this service's workers (see the module's docstring)."""

    steps: list[dict[str, Any]] = field(default_factory=list)  # {net, kind, pixels, batch, work, step_s}
    #: steps timed on the workers (sikd_service.steptimes.timed_costs)
    timed: list[dict[str, Any]] = field(default_factory=list)
    #: configurations costed without a measurement of their own: to be timed on a worker
    missing: set[StepConfig] = field(default_factory=set)
    fixed: list[float] = field(default_factory=list)  # a stage's seconds outside its epochs
    #: evaluation seconds per image and model beyond the network's forward pass (metrics, files, overlays)
    eval_image: list[float] = field(default_factory=list)
    #: wall seconds of stages reused from a finished identical one (files linked, record copied)
    reused: list[float] = field(default_factory=list)
    slots: int = 1


def split_counts(num_pairs: Sequence[int], val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """About how many images go to train, validation and test, each source split on its own."""
    train = val = test = 0
    for n in num_pairs:
        t = max(1, round(n * test_fraction)) if n else 0
        v = max(1, round(n * val_fraction)) if n and val_fraction > 0 else 0
        train, val, test = train + max(n - t - v, 0), val + v, test + t
    return train, val, test


def shape_of(spec: ExperimentSpec, train_pairs: Sequence[int], cross_pairs: Sequence[int]) -> Shape:
    n_train, n_val, n_test = split_counts(train_pairs, spec.val_fraction, spec.test_fraction)
    steps = spec.steps_per_epoch or max(1, n_train // spec.batch_size)  # the trainer's rule
    return Shape(n_train, n_val, n_test, sum(cross_pairs), steps, math.ceil(n_val / spec.batch_size))


def cost_kind(p: PlannedStage) -> str:
    """Stages whose step costs the same: the teacher's is a baseline step (on class-mean images)."""
    return "baseline" if p.role == "teacher" else p.stage


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() if a and b else None


def calibrate(session: Session, settings: Settings) -> Costs:
    """The measured costs, from the last :data:`HISTORY` experiments with finished stages."""
    exps = list(session.scalars(
        select(Experiment).where(Experiment.status.in_(("succeeded", "failed", "cancelled")))
        .options(selectinload(Experiment.stages), selectinload(Experiment.dataset_links))
        .order_by(Experiment.id.desc()).limit(HISTORY)))
    costs = Costs()
    done = [s for e in exps for s in e.stages if s.status == "succeeded" and s.kind != "evaluation"]
    metrics = crud.epoch_metrics(session, stage_ids=[s.id for s in done])
    ds_ids = {lk.dataset_id for e in exps for lk in e.dataset_links}
    found = crud.get_datasets_by_id(session, ids=list(ds_ids)) if ds_ids else {}
    pairs = {d.id: d.num_pairs for d in found.values()}
    for e in exps:
        spec = stored_spec(e.spec)
        train = [pairs.get(lk.dataset_id, 0) for lk in e.dataset_links if lk.role == "train"]
        cross = [pairs.get(lk.dataset_id, 0) for lk in e.dataset_links if lk.role == "eval"]
        if not all(train) or not train:
            continue  # a dataset was deleted: its sizes are unknown
        shape = shape_of(spec, train, cross)
        first = found[next(lk.dataset_id for lk in e.dataset_links if lk.role == "train")]
        plan = {(p.stage, p.seed): p for p in stage_plan(spec)}
        forward = None  # seconds of one image's forward pass: a third of a measured step of this experiment
        evaluation = None
        for s in e.stages:
            wall = _seconds(s.started_at, s.finished_at)
            if s.status != "succeeded" or wall is None:
                continue
            if s.reused_from is not None:  # linked, not trained: its own (tiny) cost, not a step's
                costs.reused.append(wall)
                continue
            if s.kind == "evaluation":
                models = sum(1 for p in plan.values() if p.method is not None)
                images = (shape.n_test + shape.n_cross) * models
                evaluation = wall / images if images else None
                continue
            p = plan.get((s.kind, s.seed))
            rows = [m for m in metrics.get(s.id, []) if m.train_seconds]
            if p is None or s.resumed_from_epoch or len(rows) != s.epochs or not s.epochs:
                continue  # a resumed stage's wall time is not one run
            step = statistics.median(m.train_seconds for m in rows) / shape.steps_per_epoch
            cfg = step_config(spec, p, first.in_channels, first.num_classes)
            costs.steps.append({"net": cfg.net, "kind": cost_kind(p), "batch": cfg.batch, "pixels": cfg.pixels,
                                "work": cfg.work(), "step_s": step})
            if p.role != "student":
                forward = step / 3 / spec.batch_size
            validation = s.epochs * shape.val_batches * step / 3  # a forward pass: about a third of a step
            costs.fixed.append(max(0.0, wall - sum(m.train_seconds for m in rows) - validation))
        if evaluation is not None and forward is not None:
            costs.eval_image.append(max(0.0, evaluation - forward))
    since = datetime.now(timezone.utc) - timedelta(days=1)
    workers = set(session.scalars(select(Stage.worker).where(Stage.started_at >= since, Stage.worker.is_not(None))))
    costs.slots = max(1, len(workers)) * max(1, settings.worker_stages_per_gpu)
    costs.timed = steptimes.timed_costs(session)
    return costs


def step_config(spec: ExperimentSpec, p: PlannedStage, in_channels: int, num_classes: int) -> StepConfig:
    """What a planned stage's step costs depends on (the reference recipe's network has its own arguments)."""
    kwargs = spec.network_kwargs if p.network == spec.network else {}
    return StepConfig.of(p.network, kwargs, in_channels, num_classes, spec.image_size, spec.batch_size)


def step_seconds(costs: Costs, spec: ExperimentSpec, p: PlannedStage, in_channels: int,
                 num_classes: int) -> tuple[float | None, str]:
    """Seconds per optimiser step of a planned stage (None: not measured yet), and where the figure comes from
    (sikd_service.steptimes.step_cost)."""
    return steptimes.step_cost(costs, step_config(spec, p, in_channels, num_classes), student=p.role == "student",
                               kind=cost_kind(p))


def kind_factor(costs: Costs, kind: str, measured: str) -> float:
    """A stage kind's step cost relative to another's, from any network measured both ways (1 when none)."""
    ratios = []
    by = {(r["net"], r["pixels"], r["batch"], r["kind"]): r["step_s"] for r in costs.steps}
    for (net, px, b, k), v in by.items():
        if k == measured and (net, px, b, kind) in by:
            ratios.append(by[(net, px, b, kind)] / v)
    return statistics.median(ratios) if ratios else 1.0


def _total(values: Sequence[float | None]) -> float | None:
    """The sum, or None when a part is not measured yet."""
    return None if None in values else float(sum(v for v in values if v is not None))


def _round1(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def estimate_spec(costs: Costs, spec: ExperimentSpec, shape: Shape, *, in_channels: int, num_classes: int,
                  queue_seconds: float = 0.0, reused: dict[tuple[str, int], tuple[str, int]] | None = None
                  ) -> dict[str, Any]:
    """The run time of ``spec``: each planned stage (its steps, validation passes and time outside the epochs),
    the training as the workers' slots run it (students after their teacher), the evaluation, and the queue.
    Figures resting on a step not measured yet are None, and so are the totals they are part of. A stage in
    ``reused`` (:func:`sikd_service.reuse.reuse_preview`) costs :data:`REUSED_STAGE_SECONDS` (its files are linked)
    (the median of the reused stages measured here, once there are some) or nothing of its own when it waits for an
    identical stage still training (that stage's time is in the queue)."""
    fixed = statistics.median(costs.fixed) if costs.fixed else DEFAULT_FIXED_SECONDS
    plan = stage_plan(spec)
    stages, per = [], {}
    for p in plan:
        how = (reused or {}).get((p.stage, p.seed))
        if how is not None:
            link = statistics.median(costs.reused) if costs.reused else REUSED_STAGE_SECONDS
            seconds = round(link, 2) if how[0] == "reused" else 0.0
            basis = (f"reused from experiment {how[1]}" if how[0] == "reused" else
                     f"waits for experiment {how[1]}'s identical stage (its time is in the queue)")
            per[(p.stage, p.seed)] = seconds
            stages.append({"stage": p.stage, "seed": p.seed, "epochs": p.epochs, "step_seconds": None,
                           "seconds": seconds, "basis": basis})
            continue
        step, basis = step_seconds(costs, spec, p, in_channels, num_classes)
        seconds = None if step is None else fixed + p.epochs * (shape.steps_per_epoch * step + shape.val_batches * step / 3)
        per[(p.stage, p.seed)] = seconds
        stages.append({"stage": p.stage, "seed": p.seed, "epochs": p.epochs, "step_seconds": None if step is None
                       else round(step, 4), "seconds": _round1(seconds), "basis": basis})
    chains: list[float | None] = []  # per seed: its plain stages alone, its teacher then its slowest student
    for seed in spec.seeds:
        mine = [(p, per[(p.stage, p.seed)]) for p in plan if p.seed == seed]
        students = [s for p, s in mine if p.role == "student"]
        student = None if None in students else max([s or 0.0 for s in students], default=0.0)
        parts = [s for p, s in mine if p.role == "plain"]
        parts.append(_total([s for p, s in mine if p.role == "teacher"] + [student]))
        chains.append(None if None in parts else max(s or 0.0 for s in parts))
    stage_sum = _total(list(per.values()))
    training = (None if stage_sum is None or None in chains
                else max(stage_sum / costs.slots, max([c or 0.0 for c in chains], default=0.0)))
    models = sum(1 for p in plan if p.method is not None)
    images = (shape.n_test + shape.n_cross) * models
    # per image and model: this network's forward pass (a third of its step) plus the metrics, files and overlays
    probe = next(p for p in plan if p.role != "student")
    probe_step = step_seconds(costs, spec, probe, in_channels, num_classes)[0]
    if costs.eval_image:
        extra, eval_basis = statistics.median(costs.eval_image), "measured"
    else:
        extra, eval_basis = 0.05, "model (the forward pass at the step cost + 0.05 s per image)"
    evaluation = None if probe_step is None else fixed + images * (probe_step / 3 / spec.batch_size + extra)
    total = _total([queue_seconds, training, evaluation])
    return {"seconds": _round1(total), "queue_seconds": round(queue_seconds, 1),
            "training_seconds": _round1(training), "evaluation_seconds": _round1(evaluation),
            "evaluation_basis": eval_basis, "stages": stages, "slots": costs.slots,
            "planned_epochs": sum(p.epochs for p in plan),
            "steps_per_epoch": shape.steps_per_epoch, "fixed_seconds": round(fixed, 1),
            "images": {"train": shape.n_train, "val": shape.n_val, "test": shape.n_test, "cross": shape.n_cross},
            "measured_stages": len(costs.steps)}


def time_left(costs: Costs, exp: Experiment, pairs: dict[int, Dataset]) -> float:
    """Seconds of work left in an active experiment: its unfinished stages at their estimated cost (a running
    one: its own ETA when it has one, else the unfinished share; a stage not measured yet counts for nothing)."""
    spec = stored_spec(exp.spec)
    train = [pairs[lk.dataset_id] for lk in exp.dataset_links if lk.role == "train" and lk.dataset_id in pairs]
    cross = [pairs[lk.dataset_id].num_pairs for lk in exp.dataset_links if lk.role == "eval" and lk.dataset_id in pairs]
    if not train:
        return 0.0
    est = estimate_spec(costs, spec, shape_of(spec, [d.num_pairs for d in train], cross),
                        in_channels=train[0].in_channels, num_classes=train[0].num_classes)
    cost = {(s["stage"], s["seed"]): s["seconds"] for s in est["stages"]}
    left = 0.0
    for s in exp.stages:
        full = (est["evaluation_seconds"] if s.kind == "evaluation" else cost.get((s.kind, s.seed))) or 0.0
        if s.status in ("queued", "pending"):
            left += full
        elif s.status == "running":
            left += s.eta_seconds if s.eta_seconds is not None else full * (1 - min(max(s.progress, 0.0), 1.0))
    return left


def estimate(session: Session, settings: Settings, spec: ExperimentSpec, train: Sequence[Dataset],
             cross: Sequence[Dataset], *, owner_id: int | None = None) -> dict[str, Any]:
    """The estimate for a new experiment of ``spec`` on these datasets (see :func:`estimate_spec`), with the
    queue: the work left of every queued or running experiment, shared among the workers' slots. Configurations
    without a measured step of their own are sent to a worker to be timed (``timing`` says where they stand)."""
    costs = calibrate(session, settings)
    active = list(session.scalars(select(Experiment).where(Experiment.status.in_(ACTIVE_EXPERIMENT))
                                  .options(selectinload(Experiment.stages), selectinload(Experiment.dataset_links))))
    ids = {lk.dataset_id for e in active for lk in e.dataset_links}
    pairs = crud.get_datasets_by_id(session, ids=list(ids)) if ids else {}
    queue = sum(time_left(costs, e, pairs) for e in active) / costs.slots
    costs.missing.clear()  # only this spec's configurations are sent to be timed
    reused = ({} if owner_id is None else
              reuse.reuse_preview(session, settings, spec=spec, train=list(train), owner_id=owner_id))
    out = estimate_spec(costs, spec, shape_of(spec, [d.num_pairs for d in train], [d.num_pairs for d in cross]),
                        in_channels=train[0].in_channels, num_classes=train[0].num_classes, queue_seconds=queue,
                        reused=reused)
    out["ahead"] = len(active)
    steptimes.request(session, costs.missing)
    out["timing"] = steptimes.pending_note(session, costs.missing) or None
    return out
