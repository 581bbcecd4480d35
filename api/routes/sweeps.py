"""Sweeps: one request creates an experiment per combination of the swept settings; the sweep's chart points."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from sqlalchemy.orm import Session

from api.deps import CurrentUser, Id, SessionDep, SettingsDep, id_path
from api.routes.experiments import public
from api.schemas import error_responses
from api.schemas_service import SweepPublic
from sikd_service import experiments as svc
from sikd_service import sweeps
from sikd_service.errors import not_found

router = APIRouter(tags=["sweeps"])

_EXAMPLE = {"name": "alpha", "train_dataset": 1, "eval_datasets": [2], "image_size": 64, "epochs": 10,
            "network_kwargs": {"widths": [8, 16, 32]}, "sweep": {"alpha": [0.5, 1, 2, 5]}}
SweepId = Annotated[Id, id_path("sweep")]


def _public(session: Session, settings: Any, sweep_id: int, exps: list[Any]) -> SweepPublic:
    keys = list(dict.fromkeys(k for e in exps for k in (e.sweep_values or {})))
    svc.fill_summaries(session, settings, exps)
    return SweepPublic(id=sweep_id, settings=keys, experiments=[public(e) for e in exps],
                       points=sweeps.points(settings, exps))  # type: ignore[arg-type]


@router.post("/sweeps", response_model=SweepPublic, status_code=201, responses=error_responses(429, 503))
def create_sweep(
    body: Annotated[dict[str, Any], Body(description="An ExperimentSpec (dataset ids) with 'sweep': {setting: "
                                                     "[values]}: one experiment per combination (at most 12)",
                                         examples=[_EXAMPLE])],
    session: SessionDep, settings: SettingsDep, user: CurrentUser,
) -> SweepPublic:
    """Validate every combination, store and enqueue them as one sweep; stages they share train once."""
    sweep_id, exps = sweeps.create(session, settings, user=user, body=body)
    return _public(session, settings, sweep_id, exps)


@router.get("/sweeps/{sweep_id}", response_model=SweepPublic, responses=error_responses(404))
def read_sweep(sweep_id: SweepId, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> SweepPublic:
    """The sweep's experiments and, for those that succeeded, each method's Dice (95% CI) against the settings."""
    exps = sweeps.get(session, user=user, sweep_id=sweep_id)
    if not exps:
        raise not_found("sweep", sweep_id)
    return _public(session, settings, sweep_id, exps)
