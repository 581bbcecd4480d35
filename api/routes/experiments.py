"""Experiments: create (enqueue), follow, cancel, delete; results, report, overlays, feature maps, files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, ExperimentId, Limit, SessionDep, SettingsDep, Skip
from api.experiment_query import ExperimentFilters
from api.schemas import (
    CaseScore,
    EpochMetricPublic,
    ExperimentCreate,
    ExperimentMetrics,
    ExperimentPublic,
    ExperimentResults,
    FeaturePublic,
    OverlayPublic,
    Page,
    PlannedStagePublic,
    ResultRow,
    StageMetrics,
    StagePublic,
    error_responses,
)
from api.schemas_service import MethodOption, NetworkOption, OptionsPublic, PresetOption
from api.status_cache import drop as drop_status
from api.status_cache import status_cache
from sikd_core.methods import method_names, method_options
from sikd_core.methods.plan import stored_stage_plan
from sikd_core.spec import PRESETS, TEACHER_INPUTS, ExperimentSpec, spec_defaults
from sikd_service import case_view, crud, finder
from sikd_service import experiments as svc
from sikd_service.errors import not_found
from sikd_service.health import experiment_health, report_health
from sikd_service.storage import experiment_dir, safe_join
from sikd_service.tables import Experiment

router = APIRouter(tags=["experiments"])
T = TypeVar("T")


def _get(session: SessionDep, user: CurrentUser, experiment_id: int) -> Experiment:
    exp = crud.get_experiment(session, user=user, experiment_id=experiment_id)
    if exp is None:
        raise not_found("experiment", experiment_id)
    return exp


def public(exp: Experiment) -> ExperimentPublic:
    return ExperimentPublic(id=exp.id, name=exp.name, owner_id=exp.owner_id, status=exp.status,  # type: ignore[arg-type]
                            spec=exp.spec, created_at=exp.created_at, started_at=exp.started_at,
                            finished_at=exp.finished_at, error=exp.error, progress=svc.progress(exp),
                            stages=[StagePublic.model_validate(s) for s in exp.stages], summary=exp.summary,
                            sweep_id=exp.sweep_id, sweep_values=exp.sweep_values,
                            plan=[PlannedStagePublic(**p.as_dict()) for p in stored_stage_plan(exp.spec)],
                            health=experiment_health(exp), tags=list(exp.tags or []), note=exp.note)


@router.get("/options", response_model=OptionsPublic)
def options(user: CurrentUser) -> OptionsPublic:
    """What an experiment can be made of: networks, methods, teacher inputs, spec defaults and schema."""
    from sikd_core.models import available_models, model_info  # PyTorch: not imported at the API's start
    networks = [NetworkOption(name=m.name, description=m.description, skip_switch=m.skip_switch, defaults=m.defaults,
                              teacher_note=m.teacher_note, plugin=m.plugin)
                for m in map(model_info, available_models())]  # available_models loads the plug-ins first
    return OptionsPublic(
        networks=networks, models=networks,  # "models": the deprecated old name, for older clients
        presets=[PresetOption(name=k, description=d, values=v) for k, (d, v) in PRESETS.items()],
        methods=[MethodOption(**m) for m in method_options()], method_names=method_names(),
        teacher_inputs=list(TEACHER_INPUTS),
        spec_defaults=spec_defaults(),
        spec_schema=ExperimentSpec.model_json_schema())


@router.post("/experiments", response_model=ExperimentPublic, status_code=201,
             responses=error_responses(429, 503))
def create_experiment(body: ExperimentCreate, session: SessionDep, settings: SettingsDep,
                      user: CurrentUser) -> ExperimentPublic:
    """Validate, store and enqueue an experiment; answers at once (training runs on the workers). A bad field is a
    422 whose ``errors`` name it (``loc`` ``["body", "<field>"]``), as is an unknown or mismatched dataset id."""
    return public(svc.create(session, settings, user=user, body=body))


async def _read(session: Session, read: Callable[[], T]) -> T:
    """A status read in ONE worker thread, the connection given back before the thread is.

    The hot reads are ``async`` routes: a sync route costs two thread hops (the handler, then FastAPI's
    validation of its return value), and under 50 clients each hop queued behind the others. The session's
    connection is released in the thread, so threads never wait for connections that idle sessions hold."""
    def run() -> T:
        try:
            return read()
        finally:
            session.close()

    return await run_in_threadpool(run)


@router.get("/experiments", response_model=Page[ExperimentPublic])
async def list_experiments(session: SessionDep, settings: SettingsDep, user: CurrentUser,
                           filters: ExperimentFilters, skip: Skip = 0,
                           limit: Limit = 100) -> Page[ExperimentPublic]:
    """The experiments, newest first, each with its stages and (succeeded ones) its headline ``summary``;
    narrowed by name, tags, dataset, network, method, status and health (api.experiment_query)."""
    def read() -> Page[ExperimentPublic]:
        rows, count = finder.find_experiments(session, user=user, f=filters, skip=skip, limit=limit)
        svc.fill_summaries(session, settings, rows)
        return Page(data=[public(e) for e in rows], count=count)

    return await _read(session, read)


@router.get("/experiments/{experiment_id}", response_model=ExperimentPublic,
            responses=error_responses(404))
async def read_experiment(experiment_id: ExperimentId, request: Request, session: SessionDep,
                          user: CurrentUser) -> Response:
    """The experiment with its stages (progress, epoch, loss, val Dice, ETA). Kept for
    ``SIKD_STATUS_CACHE_SECONDS`` per experiment: polls within that time are answered from memory."""
    cache = status_cache(request)
    hit = cache.get(experiment_id)
    if hit is not None and (user.is_admin or hit.owner_id == user.id):
        return Response(hit.body, media_type="application/json")
    generation = cache.generation
    exp = await _read(session, lambda: public(_get(session, user, experiment_id)))
    body = exp.model_dump_json().encode()
    cache.put(experiment_id, exp.owner_id, body, generation)
    return Response(body, media_type="application/json")


@router.get("/experiments/{experiment_id}/metrics", response_model=ExperimentMetrics,
             responses=error_responses(404))
def experiment_metrics(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> ExperimentMetrics:
    """Per-epoch curves of every training stage."""
    exp = _get(session, user, experiment_id)
    stages = [s for s in exp.stages if s.kind != "evaluation"]
    rows = crud.epoch_metrics(session, stage_ids=[s.id for s in stages])
    data = [StageMetrics(stage_id=s.id, kind=s.kind, seed=s.seed, status=s.status,  # type: ignore[arg-type]
                         epochs=[EpochMetricPublic.model_validate(m) for m in rows[s.id]]) for s in stages]
    train = crud.get_datasets_by_id(session, ids=[lk.dataset_id for lk in exp.dataset_links if lk.role == "train"])
    class_names = next((ds.class_names for ds in train.values()), [])
    return ExperimentMetrics(data=data, count=len(data), class_names=class_names)


@router.get("/experiments/{experiment_id}/results", response_model=ExperimentResults,
            responses=error_responses(404, 409))
async def experiment_results(experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep,
                             user: CurrentUser) -> ExperimentResults:
    """Dice, IoU and HD95 of every model on every dataset, the summary over seeds and the paired comparisons."""
    def read() -> ExperimentResults:
        rep = svc.report(settings, _get(session, user, experiment_id))
        rows = [ResultRow(**r) for r in rep["rows"]]
        health, comparisons = report_health(rep)
        return ExperimentResults(
            data=rows, count=len(rows), summary=rep["summary"], comparisons=comparisons,
            class_names=rep["class_names"], units=rep["units"], dataset_units=rep.get("dataset_units", {}),
            warnings=rep.get("warnings", []), health=health,
            methods=rep.get("methods") or list(rep["spec"].get("methods", [])),
            train_datasets=rep.get("train_datasets") or [rep.get("train_dataset", "")],
            baseline_strength=rep.get("baseline_strength"), reused_scores=rep.get("reused_scores") or [])

    return await _read(session, read)


@router.get("/experiments/{experiment_id}/report", response_class=Response,
            responses={**error_responses(404, 409), 200: {"content": {"text/markdown": {}}}})
def experiment_report(experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep,
                      user: CurrentUser) -> PlainTextResponse:
    text = svc.report_markdown(settings, _get(session, user, experiment_id))
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@router.post("/experiments/{experiment_id}/cancel", response_model=ExperimentPublic,
             responses=error_responses(404, 409))
def cancel_experiment(experiment_id: ExperimentId, request: Request, session: SessionDep, settings: SettingsDep,
                      user: CurrentUser) -> ExperimentPublic:
    """Stop the experiment: running stages stop within one training step."""
    exp = _get(session, user, experiment_id)
    svc.cancel(session, exp=exp, settings=settings)
    drop_status(request, experiment_id)
    session.expire_all()
    return public(_get(session, user, experiment_id))


@router.delete("/experiments/{experiment_id}", status_code=204, response_class=Response,
               responses=error_responses(404))
def delete_experiment(experiment_id: ExperimentId, request: Request, session: SessionDep, settings: SettingsDep,
                      user: CurrentUser) -> Response:
    """Cancel if needed, then remove the experiment, its models and its files."""
    svc.delete(session, settings, exp=_get(session, user, experiment_id))
    drop_status(request, experiment_id)
    return Response(status_code=204)


def _file_url(request: Request, experiment_id: int, rel: str) -> str:
    return str(request.app.url_path_for("experiment_file", experiment_id=str(experiment_id), path=rel))


@router.get("/experiments/{experiment_id}/overlays", response_model=Page[OverlayPublic],
            responses=error_responses(404, 409))
def experiment_overlays(
    experiment_id: ExperimentId, request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser,
    dataset: str | None = None,
    category: Literal["worst", "sikd_better", "baseline_better", "typical"] | None = None,
    sort: Annotated[Literal["dice_diff", "worst"] | None,
                    Query(description="dice_diff: largest SIKD gain first; worst: lowest Dice first")] = None,
    skip: Skip = 0, limit: Limit = 100,
) -> Page[OverlayPublic]:
    """Contour overlays (image, ground truth, baseline, SIKD) of selected cases, each with its PNG's URL."""
    items = svc.overlays(settings, _get(session, user, experiment_id), dataset=dataset, category=category, sort=sort)
    page = [OverlayPublic(**o, url=_file_url(request, experiment_id, o["file"])) for o in items[skip:skip + limit]]
    return Page(data=page, count=len(items))


@router.get("/experiments/{experiment_id}/cases", response_model=Page[CaseScore],
            responses=error_responses(404, 409))
def experiment_cases(
    experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep, user: CurrentUser,
    dataset: str | None = None, method: str | None = None, split: Literal["intra", "cross"] | None = None,
    skip: Skip = 0, limit: Limit = 500,
) -> Page[CaseScore]:
    """Per-case scores of every model, seed and evaluated case (for distributions and the drill-down)."""
    items = svc.cases(settings, _get(session, user, experiment_id), dataset=dataset, method=method, split=split)
    return Page(data=[CaseScore(**c) for c in items[skip:skip + limit]], count=len(items))


@router.get("/experiments/{experiment_id}/cases/view.png", response_class=Response,
            responses={**error_responses(404, 409), 200: {"content": {"image/png": {}}}})
def experiment_case_view(
    experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep, user: CurrentUser,
    dataset: Annotated[str, Query(description="the dataset's name, as in the results")],
    key: Annotated[str, Query(description="the image's key (a case's ``keys``)")],
    methods: Annotated[list[str], Query(description="the models whose predictions are shown, in order")] = [],  # noqa: B006
    mode: Literal["contours", "fill", "errors", "overlay"] = "contours",
) -> Response:
    """One image at full resolution: ground truth, then each chosen method's prediction (first seed), in
    per-class colours (``contours`` or ``fill``) or as an error map (``errors``: FP red, FN blue);
    ``overlay``: one picture with the outlines of the ground truth (green) and of two methods (red, blue)."""
    png = case_view.render_case(session, settings, _get(session, user, experiment_id), dataset=dataset, key=key,
                                methods=methods, mode=mode)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


@router.get("/experiments/{experiment_id}/features", response_model=Page[FeaturePublic],
            responses=error_responses(404, 409))
def experiment_features(experiment_id: ExperimentId, request: Request, session: SessionDep, settings: SettingsDep,
                        user: CurrentUser, dataset: str | None = None) -> Page[FeaturePublic]:
    """Penultimate feature maps of baseline, teacher and student side by side (the paper's Fig. 7)."""
    items = svc.read_json(settings, _get(session, user, experiment_id), "eval/features.json", "feature maps")
    if dataset:
        items = [f for f in items if f["dataset"] == dataset]
    return Page(data=[FeaturePublic(**f, url=_file_url(request, experiment_id, f["file"])) for f in items],
                count=len(items))


@router.get("/experiments/{experiment_id}/files/{path:path}", name="experiment_file", response_class=FileResponse,
             responses=error_responses(404))
def experiment_file(experiment_id: ExperimentId, path: str, session: SessionDep, settings: SettingsDep,
                    user: CurrentUser) -> FileResponse:
    """A file under the experiment's ``eval/`` folder (overlays, feature maps, predictions, cases.json)."""
    exp = _get(session, user, experiment_id)
    target = safe_join(experiment_dir(settings, exp.id) / "eval", path)
    if target is None:
        raise not_found("file", path)
    return FileResponse(target)


@router.get("/experiments/{experiment_id}/predictions.zip", response_class=StreamingResponse,
            responses={**error_responses(404, 409), 200: {"content": {"application/zip": {}}}})
def experiment_predictions(experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep,
                           user: CurrentUser) -> StreamingResponse:
    """The predicted masks (first seed) as a zip: ``<method>/<dataset>/<case>.png``, streamed."""
    files = svc.prediction_files(settings, _get(session, user, experiment_id))
    return StreamingResponse(svc.stream_zip(files), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="experiment-{experiment_id}'
                                                             f'-predictions.zip"'})
