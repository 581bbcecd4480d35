"""Sweeps: one request, one experiment per combination of the swept settings (:mod:`sikd_core.sweep`), grouped by
a sweep id; what they share is trained once (the stage keys of :mod:`sikd_service.reuse`).

Every experiment is validated before any is stored (a 422 names the combination that failed); the user's limit
of active experiments counts the sweep once; all are stored in one transaction and then sent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from sikd_core.errors import SpecError
from sikd_core.sweep import expand_sweep, sweep_points
from sikd_service import experiments as svc
from sikd_service.config import Settings
from sikd_service.errors import ServiceError
from sikd_service.health import experiment_health
from sikd_service.tables import Experiment, User


def create(session: Session, settings: Settings, *, user: User, body: dict[str, Any]) -> tuple[int, list[Experiment]]:
    """Validate, store and send a sweep's experiments; returns the sweep id and the experiments."""
    combos = expand_sweep(body)
    checked = []
    for values, spec_body in combos:
        label = ", ".join(f"{k}={v!r}" for k, v in values.items())
        try:
            checked.append((values, *svc.validate(session, settings, user=user, body=spec_body)))
        except SpecError as e:
            raise SpecError(f"sweep ({label}): {e}") from None
        except ServiceError as e:
            raise ServiceError(e.status_code, f"sweep ({label}): {e.detail}", e.headers, **e.extra) from None
    svc.check_active_limit(session, settings, user=user)
    exps: list[Experiment] = []
    for values, spec, found in checked:  # in order: a later one waits for an earlier one's shared stages
        exp = svc.store(session, settings, user=user, spec=spec, found=found, sweep_values=values,
                        sweep_id=exps[0].id if exps else None)
        if not exps:
            exp.sweep_id = exp.id  # a sweep is known by its first experiment's id
        exps.append(exp)
    sweep_id = exps[0].id
    session.commit()
    svc.enqueue(session, exps)
    for e in exps:
        session.refresh(e)
    return sweep_id, exps


def get(session: Session, *, user: User, sweep_id: int) -> list[Experiment]:
    """The sweep's experiments the user may see, in creation order."""
    q = (select(Experiment).where(Experiment.sweep_id == sweep_id,
                                  True if user.is_admin else Experiment.owner_id == user.id)
         .options(selectinload(Experiment.stages)).order_by(Experiment.id))
    return list(session.scalars(q))


def points(settings: Settings, exps: list[Experiment]) -> list[dict[str, Any]]:
    """The sweep chart's points: per succeeded experiment, its swept values, health and per method and split the
    mean Dice with its 95% CI (:func:`sikd_core.sweep.sweep_points`)."""
    out = []
    for e in exps:
        if e.status != "succeeded":
            continue
        try:
            cases = svc.cases(settings, e, dataset=None, method=None, split=None)
        except ServiceError:  # the files are gone: no point for it
            continue
        health = experiment_health(e) or {}
        models = health.get("models") or {}
        for p in sweep_points(cases):
            bad = sorted(k for k, v in models.items() if k.split("/")[0] == p["method"] and v == "unhealthy")
            out.append({"experiment_id": e.id, "values": dict(e.sweep_values or {}), **p,
                        "health": "unhealthy" if bad else "healthy"})
    return out

