"""Trained models (every baseline and SIKD student): list, download, predict."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from functools import partial
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, ExperimentFilter, Limit, ModelId, SessionDep, SettingsDep, Skip
from api.schemas import ModelPublic, Page, PredictionPublic, Predictions, error_responses
from api.uploads import receive_multipart
from sikd_core.errors import SIKDError
from sikd_service import cards, crud
from sikd_service.errors import ServiceError, not_found
from sikd_service.storage import new_tmp_dir
from sikd_service.tables import TrainedModel

router = APIRouter(tags=["models"])

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                     "description": "One or more images (PNG, JPEG, TIFF, BMP, 2D NIfTI), or one DICOM "
                                                    "series (one .zip of its files, or the files): the answer is then "
                                                    "a DICOM SEG (application/dicom) that references it."}}}}},
    },
    "responses": {"200": {"content": {"application/dicom": {"schema": {"type": "string", "format": "binary"}}}}},
}


def _get(session: SessionDep, user: CurrentUser, model_id: int) -> TrainedModel:
    row = crud.get_model(session, user=user, model_id=model_id)
    if row is None:
        raise not_found("model", model_id)
    return row


@router.get("/models", response_model=Page[ModelPublic])
def list_models(session: SessionDep, user: CurrentUser, experiment_id: ExperimentFilter = None, skip: Skip = 0,
                limit: Limit = 100) -> Page[ModelPublic]:
    rows, count = crud.list_models(session, user=user, experiment_id=experiment_id, skip=skip, limit=limit)
    return Page(data=[ModelPublic.model_validate(m) for m in rows], count=count)


@router.get("/models/{model_id}", response_model=ModelPublic,
             responses=error_responses(404))
def read_model(model_id: ModelId, session: SessionDep, user: CurrentUser) -> ModelPublic:
    return ModelPublic.model_validate(_get(session, user, model_id))


@router.get("/models/{model_id}/download", response_class=FileResponse,
             responses=error_responses(404))
def download_model(model_id: ModelId, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> FileResponse:
    """The ``model.pt`` bundle (weights + spec); use it with ``sikd predict`` or ``sikd_core.inference``."""
    row = _get(session, user, model_id)
    path = settings.storage_dir / row.path
    if not path.is_file():
        raise ServiceError(404, f"the file of model {model_id} is missing")
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"sikd-exp{row.experiment_id}-{row.method}-seed{row.seed}.pt")


@router.get("/models/{model_id}/card",
            responses={**error_responses(404), 200: {"content": {"text/markdown": {}}}})
def model_card(model_id: ModelId, session: SessionDep, settings: SettingsDep, user: CurrentUser,
               format: Literal["json", "md"] = "json") -> Any:
    """The model card: datasets (counts, content hashes, terms), spec, method, seed, scores with CIs,
    health warnings, intended use and limits, citation. ``format=md`` for Markdown."""
    row = _get(session, user, model_id)
    if not (settings.storage_dir / row.path).is_file():
        raise ServiceError(404, f"the file of model {model_id} is missing")
    card = cards.model_card(settings, session, row)
    if format == "md":
        from sikd_core.export import render_card_markdown

        return PlainTextResponse(render_card_markdown(card), media_type="text/markdown; charset=utf-8")
    return card


@router.get("/models/{model_id}/export", response_class=FileResponse,
             responses=error_responses(404))
def export_model(model_id: ModelId, session: SessionDep, settings: SettingsDep, user: CurrentUser,
                 format: Literal["onnx", "torchscript"] = "onnx") -> FileResponse:
    """A deployable bundle (.zip): the network, recipe.json (the exact preprocessing), predict.py (numpy,
    Pillow, onnxruntime only), requirements.txt and the model card. Built on first request, then cached."""
    row = _get(session, user, model_id)
    if not (settings.storage_dir / row.path).is_file():
        raise ServiceError(404, f"the file of model {model_id} is missing")
    try:
        path = cards.export_zip(settings, session, row, format)
    except SIKDError as e:
        raise ServiceError(422, f"cannot export model {model_id} as {format}: {e}") from None
    return FileResponse(path, media_type="application/zip", filename=f"sikd-model-{model_id}-{format}.zip")


@router.post("/models/{model_id}/predict", response_model=Predictions, openapi_extra=_PREDICT_BODY,
             responses=error_responses(404, 503, 507))
async def predict(model_id: ModelId, request: Request, session: SessionDep, settings: SettingsDep,
                  user: CurrentUser) -> Predictions | Response:
    """Segment uploaded images (multipart field ``files``, repeatable): masks and overlays as base64 PNG.
    A DICOM series (one .zip of its files, or its files) is answered by a DICOM SEG that references it.
    At most ``SIKD_MAX_PREDICT_PIXELS`` pixels per request (read from the headers: 413 before decoding)."""
    from sikd_service import dicom_seg  # these two import PyTorch: not at the API's start
    from sikd_service.predict import predict_files

    row = await run_in_threadpool(_get, session, user, model_id)
    path = settings.storage_dir / row.path
    if not path.is_file():
        raise ServiceError(404, f"the file of model {model_id} is missing")
    workdir = new_tmp_dir(settings, "predict-")
    try:
        form = await receive_multipart(request, dest=workdir, file_fields={"files"},
                                       max_file_bytes=settings.max_predict_file_bytes,
                                       max_total_bytes=settings.max_predict_file_bytes * settings.max_predict_files,
                                       max_files=settings.max_predict_files)
        if not form.files:
            raise ServiceError(422, "no images received: send them in the multipart field 'files'")
        loaded = await run_in_threadpool(request.app.state.model_cache.get, path)
        if dicom_seg.is_series_request(form.files):
            seg = await run_in_threadpool(dicom_seg.predict_series_request, loaded, form.files, settings, workdir)
            return Response(seg.data, media_type=dicom_seg.MEDIA_TYPE, headers={
                "Content-Disposition": f'attachment; filename="sikd-model-{model_id}-seg.dcm"',
                "X-SIKD-Slices": str(seg.slices)})
        data = await run_in_threadpool(partial(predict_files, max_pixels=settings.max_predict_pixels), loaded,
                                       form.files)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Predictions(data=[PredictionPublic(**asdict(p)) for p in data], model_id=model_id)
