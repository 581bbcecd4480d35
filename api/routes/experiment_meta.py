"""Finding experiments again: tags and a note (``PATCH /experiments/{id}``), the tags in use, and the paired
test between two experiments' models on the images both scored (the Compare page's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.deps import CurrentUser, ExperimentId, Id, SessionDep, SettingsDep
from api.meta_schemas import ExperimentMetaUpdate, PairedBetween, TagCount
from api.routes.experiments import _get, public
from api.schemas import ExperimentPublic, Page, error_responses
from api.status_cache import drop as drop_status
from sikd_service import between, finder

router = APIRouter(tags=["experiments"])
_METHOD = r"^[A-Za-z0-9_.+\-]+$"


@router.patch("/experiments/{experiment_id}", response_model=ExperimentPublic, responses=error_responses(404))
def update_experiment(experiment_id: ExperimentId, body: ExperimentMetaUpdate, request: Request,
                      session: SessionDep, user: CurrentUser) -> ExperimentPublic:
    """Set the experiment's tags and/or note (its owner or an admin; anything else of it never changes).
    What the body gives is replaced, what it leaves out stays."""
    exp = _get(session, user, experiment_id)
    finder.set_meta(session, exp, tags=body.tags if "tags" in body.model_fields_set else None,
                    note=body.note, set_note="note" in body.model_fields_set)
    drop_status(request, experiment_id)
    return public(_get(session, user, experiment_id))


@router.get("/tags", response_model=Page[TagCount])
def list_tags(session: SessionDep, user: CurrentUser) -> Page[TagCount]:
    """The tags on your experiments (every experiment, for an admin), most used first."""
    rows = finder.user_tags(session, user=user)
    return Page(data=[TagCount(tag=t, count=n) for t, n in rows], count=len(rows))


@router.get("/experiments/{experiment_id}/compare/{other_id}", response_model=PairedBetween,
            responses=error_responses(404, 409))
def compare_experiments(
    experiment_id: ExperimentId,
    other_id: Annotated[Id, Path(description="The other experiment's id (the same id compares two of its models).")],
    session: SessionDep, settings: SettingsDep, user: CurrentUser,
    method: Annotated[str | None, Query(min_length=1, max_length=100, pattern=_METHOD,
                                        description="The model of this experiment (a method: sikd, baseline, ...); "
                                                    "default: its headline model (SIKD's student if trained, else its "
                                                    "first method other than the baseline)")] = None,
    other_method: Annotated[str | None, Query(min_length=1, max_length=100, pattern=_METHOD,
                                              description="The model of the other experiment; default: the same "
                                                          "method if it trained it, else its headline model")] = None,
) -> PairedBetween:
    """This experiment's ``method`` minus the other's ``other_method`` on the images both scored (same dataset,
    same case), paired per case, each model averaged over its seeds: the mean difference with its bootstrap 95%
    CI, the Wilcoxon p and its Holm adjustment across the shared datasets, as within an experiment; with both
    experiments' health. Both must have succeeded (else 409)."""
    exp_a = _get(session, user, experiment_id)
    exp_b = exp_a if other_id == experiment_id else _get(session, user, other_id)
    return PairedBetween(**between.compare(session, settings, exp_a=exp_a, method_a=method, exp_b=exp_b,
                                           method_b=other_method))
