"""Step times for plans and estimates, measured on the workers, never in the API.

What a configuration's training step costs (seconds per step of the baseline/teacher and of a SIKD student, per
forward pass) comes, in this order, from (:func:`step_cost`):

1. the stages that ran (``epoch_metrics.train_seconds``, sikd_service.estimate.calibrate): the same network,
   size and batch as measured, another size or batch scaled by the work per step;
2. the ``step_timings`` table: a few steps of the configuration timed on a worker by a Celery task
   (``worker.tasks.run_step_timing``), kept and reused by every later plan and estimate; another size or batch
   of a timed network scaled by the work per step;
3. a-priori, while the timing is queued: another configuration of the same network scaled by the work per step
   (the U-Net's multiply-accumulates in closed form, sikd_core.plan.unet_size; else pixels x batch), labelled so;
   with nothing of the network measured: "not measured yet" (no figure).

In cases 3 the configuration is sent to a worker (:func:`request`), once: a later request reads the timing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sikd_core.plan import unet_size
from sikd_service import dispatch
from sikd_service.config import Settings
from sikd_service.db import session_scope
from sikd_service.tables import StepTiming, utcnow

if TYPE_CHECKING:
    from sikd_service.estimate import Costs

log = logging.getLogger("sikd.steptimes")

#: Steps are timed at this batch at most; a larger one is scaled from it (linearly: what a CPU does; a GPU is
#: then estimated on the slow side).
MAX_TIMED_BATCH = 16
#: A timing queued or measuring this long (its message or its worker was lost), or failed this long ago, is sent
#: again by the next request that needs it.
RETRY_SECONDS = 600.0
UNET_DEFAULT_WIDTHS = [64, 128, 256, 512, 1024]


@dataclass(frozen=True)
class StepConfig:
    """What a training step's cost depends on."""

    network: str
    kwargs_json: str  # the network's arguments, JSON with sorted keys
    in_channels: int
    num_classes: int
    height: int
    width: int
    batch: int

    @classmethod
    def of(cls, network: str, network_kwargs: dict[str, Any], in_channels: int, num_classes: int,
           image_size: Iterable[int], batch: int) -> StepConfig:
        h, w = (int(v) for v in image_size)
        return cls(network, json.dumps(network_kwargs, sort_keys=True), int(in_channels), int(num_classes), h, w,
                   int(batch))

    @property
    def net(self) -> str:
        """The network with its arguments, as sikd_service.estimate keys the stages that ran."""
        return f"{self.network} {self.kwargs_json}"

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def timed(self) -> StepConfig:
        """The configuration a worker times for this one (the batch capped at :data:`MAX_TIMED_BATCH`)."""
        return replace(self, batch=min(self.batch, MAX_TIMED_BATCH))

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps([self.network, self.kwargs_json, self.in_channels, self.num_classes,
                                          self.height, self.width, self.batch]).encode()).hexdigest()

    def work(self) -> float:
        """The work of one step, to scale a measured step by: the U-Net's multiply-accumulates, else pixels."""
        if self.network == "unet":
            kwargs = json.loads(self.kwargs_json)
            try:
                macs = unet_size(list(kwargs.get("widths", UNET_DEFAULT_WIDTHS)), [self.height, self.width],
                                 self.in_channels, self.num_classes)[2]
            except (TypeError, ValueError):
                macs = 0
            if macs > 0:
                return float(macs * self.batch)
        return float(self.pixels * self.batch)


def timed_rows(session: Session) -> list[StepTiming]:
    return list(session.scalars(select(StepTiming).where(StepTiming.status == "measured")))


def _config_of(row: StepTiming) -> StepConfig:
    return StepConfig.of(row.network, row.network_kwargs, row.in_channels, row.num_classes, [row.height, row.width],
                         row.batch)


def timed_costs(session: Session) -> list[dict[str, Any]]:
    """The measured timings as :class:`~sikd_service.estimate.Costs` keeps them."""
    return [{"config": _config_of(r), "step_s": r.step_seconds, "student_step_s": r.student_step_seconds,
             "forward_s": r.forward_seconds, "where": f"worker {r.worker} ({r.device_name})"}
            for r in timed_rows(session)]


def _nearest(rows: list[dict[str, Any]], cfg: StepConfig, work: Any) -> dict[str, Any]:
    target = cfg.work()
    return min(rows, key=lambda r: abs(math.log(max(work(r), 1e-9) / target)))


def step_cost(costs: Costs, cfg: StepConfig, *, student: bool, kind: str) -> tuple[float | None, str]:
    """Seconds per optimiser step of ``cfg`` (a student's step: ``student``; ``kind``: the stage kind whose cost
    the stages that ran measured, sikd_service.estimate.cost_kind), and where the figure comes from. A
    configuration with no measured figure of its own is added to ``costs.missing`` (to be timed on a worker)."""
    from sikd_service.estimate import kind_factor

    target = cfg.work()
    for same_kind in (True, False):  # 1. the stages that ran
        found = [r for r in costs.steps if r["net"] == cfg.net and (r["kind"] == kind or not same_kind)]
        if found:
            best = _nearest(found, cfg, lambda r: r["work"])
            ratio = target / best["work"]
            factor = 1.0 if same_kind else kind_factor(costs, kind, best["kind"])
            exact = best["pixels"] == cfg.pixels and best["batch"] == cfg.batch and same_kind
            return (best["step_s"] * ratio * factor,
                    "measured" if exact else "measured, scaled" if same_kind else "measured, other stage kind")
    field = "student_step_s" if student else "step_s"
    timed = [r for r in costs.timed if r["config"].net == cfg.net]
    if timed:  # 2. timed on a worker
        best = _nearest(timed, cfg, lambda r: r["config"].work())
        exact = best["config"] == cfg.timed()
        basis = f"timed on {best['where']}" + ("" if exact else ", scaled")
        return best[field] * target / best["config"].work(), basis
    costs.missing.add(cfg.timed())
    same = [r for r in costs.timed if r["config"].network == cfg.network]
    if same:  # 3. a-priori: another configuration of this network
        best = _nearest(same, cfg, lambda r: r["config"].work())
        return (best[field] * target / best["config"].work(),
                f"a-priori: scaled from {best['config'].net} timed on {best['where']} by the work per step (this "
                "configuration is being timed on a worker)")
    runs = [r for r in costs.steps if r["net"].split(" ", 1)[0] == cfg.network]
    runs = [r for r in runs if r["kind"] == kind] or runs
    if runs:
        best = _nearest(runs, cfg, lambda r: r["work"])
        return (best["step_s"] * target / best["work"],
                f"a-priori: scaled from {best['net']} as it ran here by the work per step (this configuration is "
                "being timed on a worker)")
    return None, "not measured yet (being timed on a worker)"


# --------------------------------------------------------------------------------- requests (API side)
def request(session: Session, configs: Iterable[StepConfig]) -> list[int]:
    """Ask the workers to time ``configs`` (each once): new ones are stored as queued; one queued or measuring for
    over :data:`RETRY_SECONDS` (lost), or failed that long ago, again. Commits, then sends; returns the ids sent."""
    now = utcnow()
    old = now - timedelta(seconds=RETRY_SECONDS)
    ids = []
    for cfg in {c.key: c for c in configs}.values():
        row = session.scalar(select(StepTiming).where(StepTiming.key == cfg.key))
        if row is None:
            try:
                with session.begin_nested():
                    row = StepTiming(key=cfg.key, network=cfg.network, network_kwargs=json.loads(cfg.kwargs_json),
                                     in_channels=cfg.in_channels, num_classes=cfg.num_classes, height=cfg.height,
                                     width=cfg.width, batch=cfg.batch, status="queued", requested_at=now)
                    session.add(row)
            except IntegrityError:  # another request stored it meanwhile: that one sends it
                continue
            ids.append(row.id)
            continue
        res = session.execute(update(StepTiming).where(
            StepTiming.id == row.id, StepTiming.requested_at < old,
            or_(StepTiming.status.in_(("queued", "measuring")),
                (StepTiming.status == "failed") & (StepTiming.measured_at < old)))
            .values(status="queued", requested_at=now, claim_token=None))
        if res.rowcount:  # type: ignore[attr-defined]
            ids.append(row.id)
    session.commit()
    for timing_id in ids:
        try:
            dispatch.enqueue_step_timing(timing_id)
        except Exception as e:  # noqa: BLE001 - no broker: sent again by a request after RETRY_SECONDS
            log.warning("could not send step timing %d to the workers: %s", timing_id, e)
    return ids


def pending_note(session: Session, configs: Iterable[StepConfig]) -> str:
    """Where the timings of ``configs`` stand, in words (queued, measuring, failed and why)."""
    keys = [c.key for c in configs]
    if not keys:
        return ""
    rows = list(session.scalars(select(StepTiming).where(StepTiming.key.in_(keys))))
    parts = []
    for r in rows:
        what = f"{r.network} {r.height}x{r.width} batch {r.batch}"
        if r.status == "failed":
            parts.append(f"timing {what} failed on {r.worker}: {r.error}")
        elif r.status == "measuring":
            parts.append(f"{what} is being timed on {r.worker}")
        elif r.status == "queued":
            parts.append(f"{what} is queued for timing since {r.requested_at:%H:%M:%S} UTC")
    return "; ".join(parts)


# ------------------------------------------------------------------------------- the worker's side
def claim(settings: Settings, timing_id: int, worker: str) -> tuple[StepConfig, str] | None:
    """Claim a queued timing (or one whose measuring worker went silent) for ``worker``; None: nothing to do."""
    token = uuid.uuid4().hex
    stale = utcnow() - timedelta(seconds=RETRY_SECONDS)
    with session_scope(settings) as s:
        res = s.execute(update(StepTiming).where(
            StepTiming.id == timing_id,
            or_(StepTiming.status == "queued", (StepTiming.status == "measuring") & (StepTiming.started_at < stale)))
            .values(status="measuring", started_at=utcnow(), worker=worker, claim_token=token))
        if not res.rowcount:  # type: ignore[attr-defined]
            return None
        row = s.get(StepTiming, timing_id)
        assert row is not None
        return _config_of(row), token


def finish(settings: Settings, timing_id: int, token: str, *, device: dict[str, Any],
           timings: dict[str, float] | None = None, error: str | None = None) -> bool:
    """Record the measured timings (or the error) of a claimed timing; False when the claim was lost."""
    values: dict[str, Any] = {"status": "failed" if timings is None else "measured", "measured_at": utcnow(),
                              "device_kind": device.get("kind"), "device_name": device.get("name"),
                              "error": error[:2000] if error else None}
    if timings is not None:
        values.update(step_seconds=timings["step_s"], student_step_seconds=timings["student_step_s"],
                      forward_seconds=timings["forward_s"], peak_gib=timings.get("peak_gib"))
    with session_scope(settings) as s:
        res = s.execute(update(StepTiming).where(StepTiming.id == timing_id, StepTiming.claim_token == token)
                        .values(**values))
        return bool(res.rowcount)  # type: ignore[attr-defined]
