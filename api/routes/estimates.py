"""Before an experiment starts: its stage plan and its run time, estimated from what ran on these workers."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.schemas import EstimatePublic, ExperimentCreate, PlannedStagePublic, error_responses
from sikd_service import estimate
from sikd_service import experiments as svc

router = APIRouter(tags=["experiments"])


@router.post("/experiments/estimate", response_model=EstimatePublic, responses=error_responses(422))
def estimate_experiment(body: ExperimentCreate, session: SessionDep, settings: SettingsDep,
                        user: CurrentUser) -> EstimatePublic:
    """The spec's stage plan and estimated run time, no experiment stored: each stage at the step cost measured on
    the workers for its network, size and batch (scaled from a measured size; a configuration never measured is
    sent to a worker to be timed and answered a-priori, labelled, or null "not measured yet" meanwhile), the
    evaluation at its measured cost per image and model, and the queue ahead. A stage identical to a finished one
    the user may reuse costs a second (basis "reused from experiment N"); one identical to a stage still training
    waits for it (its time is in the queue). The same body as
    ``POST /experiments``, with the same 422s."""
    found = svc.datasets_of(session, user=user, spec=body)
    est = estimate.estimate(session, settings, body, [found[k] for k in body.train_datasets],
                            [found[k] for k in body.eval_datasets], owner_id=user.id)
    return EstimatePublic(plan=[PlannedStagePublic(**p.as_dict()) for p in body.plan()], **est)
