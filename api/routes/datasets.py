"""Datasets: upload a .zip, list, inspect (statistics and thumbnails), delete."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, DatasetId, Id, Limit, SampleIndex, SessionDep, SettingsDep, Skip
from api.schemas import (
    DatasetDetail,
    DatasetPublic,
    DatasetRef,
    Page,
    PlanPublic,
    SamplePublic,
    error_responses,
)
from api.uploads import receive_multipart
from sikd_core.data import Sample
from sikd_service import crud, datasets, ingest, names
from sikd_service.errors import ServiceError, not_found
from sikd_service.storage import new_tmp_dir
from sikd_service.tables import Dataset, User

router = APIRouter(tags=["datasets"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "A .zip of images/ + masks/ (optionally inside one folder) or an nnU-Net "
                                        "dataset (dataset.json, imagesTr/, labelsTr/)."},
                "name": {"type": "string", "maxLength": 200, "description": "Display name (default: the file name)."},
            }}}},
    }
}


def _detail(request: Request, ds: Dataset, k: int, session: Session, user: User) -> DatasetDetail:
    samples = ds.manifest["samples"]
    picks = sorted({int(i) for i in np.linspace(0, len(samples) - 1, min(k, len(samples)))}) if samples else []
    return DatasetDetail(
        **DatasetPublic.model_validate(ds).model_dump(), stats=ds.stats,
        duplicates=[DatasetRef(id=d.id, name=d.name) for d in datasets.duplicates(session, user=user, ds=ds)],
        numbering=datasets.numbering([Sample.from_dict(s).key for s in samples]),
        samples=[SamplePublic(index=i, key=Sample.from_dict(samples[i]).key,
                              url=str(request.app.url_path_for("dataset_sample", dataset_id=str(ds.id), index=str(i))))
                 for i in picks])


@router.post("/datasets", response_model=DatasetDetail, status_code=201, openapi_extra=_UPLOAD_BODY,
             responses=error_responses(503, 507))
async def upload_dataset(request: Request, session: SessionDep, settings: SettingsDep,
                         user: CurrentUser) -> DatasetDetail:
    """Upload a dataset .zip (multipart field ``file``, optional ``name``); it is validated in full.

    Rejections name the problem and the files (``problems``, ``files``); nothing is kept from them.
    """
    workdir = new_tmp_dir(settings, "upload-")
    try:
        form = await receive_multipart(request, dest=workdir / "upload", file_fields={"file"},
                                       max_file_bytes=settings.max_upload_bytes,
                                       max_total_bytes=settings.max_upload_bytes, max_files=1)
        if not form.files:
            raise ServiceError(422, "no file received: send the .zip in the multipart field 'file'")
        upload = form.files[0]
        name = names.check_name((form.fields.get("name") or "").strip() or Path(upload.filename).stem,
                                what="dataset name")
        ds = await run_in_threadpool(ingest.ingest_zip, session, settings, owner=user, archive=upload.path,
                                     name=name, workdir=workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _detail(request, ds, settings.samples_per_dataset, session, user)


@router.get("/datasets", response_model=Page[DatasetPublic])
def list_datasets(session: SessionDep, user: CurrentUser, skip: Skip = 0, limit: Limit = 100) -> Page[DatasetPublic]:
    rows, count = crud.list_datasets(session, user=user, skip=skip, limit=limit)
    return Page(data=[DatasetPublic.model_validate(d) for d in rows], count=count)


@router.get("/datasets/{dataset_id}", response_model=DatasetDetail,
             responses=error_responses(404))
def read_dataset(dataset_id: DatasetId, request: Request, session: SessionDep, settings: SettingsDep,
                 user: CurrentUser) -> DatasetDetail:
    ds = crud.get_dataset(session, user=user, dataset_id=dataset_id, with_manifest=True)
    if ds is None:
        raise not_found("dataset", dataset_id)
    return _detail(request, ds, settings.samples_per_dataset, session, user)


@router.get("/datasets/{dataset_id}/plan", response_model=PlanPublic, responses=error_responses(404, 422))
def plan_dataset(dataset_id: DatasetId, session: SessionDep, settings: SettingsDep, user: CurrentUser,
                 eval_datasets: Annotated[list[Id] | None, Query(max_length=20)] = None, device: str = "auto",
                 device_memory_gb: Annotated[float | None, Query(gt=0, le=4096)] = None,
                 budget_minutes: Annotated[float | None, Query(gt=0, le=10080)] = None,
                 measure: bool = True) -> PlanPublic:
    """``sikd plan`` on a stored dataset: network, widths, image size, batch and epochs planned from the dataset's
    fingerprint and a device: the most capable live worker's as the workers reported them (``device``: auto, cpu
    or cuda), or a GPU described by ``device_memory_gb``; this API host's CPU only when no worker has ever
    reported (``device.source`` says which). The run time rests on training steps measured on the workers; a
    configuration not measured yet is sent to a worker to be timed, and answered at once a-priori (labelled) or
    "not measured yet" (``measure=false``: no estimate). Nothing is trained or timed in the API. ``spec`` is ready
    for POST /experiments."""
    return PlanPublic(**datasets.plan(session, settings, user=user, dataset_id=dataset_id, eval_datasets=eval_datasets,
                                      device=device, device_memory_gb=device_memory_gb, budget_minutes=budget_minutes,
                                      measure=measure))


@router.get("/datasets/{dataset_id}/samples/{index}.png", name="dataset_sample", response_class=Response,
            responses={**error_responses(404, 503, 507), 200: {"content": {"image/png": {}}}})
def dataset_sample(dataset_id: DatasetId, index: SampleIndex, session: SessionDep, settings: SettingsDep,
                   user: CurrentUser, full: bool = False) -> Response:
    """A thumbnail of sample ``index`` with its mask overlaid; ``full=true``: at the image's own resolution
    (longest side at most 2048 px), for a readable full-screen view."""
    ds = crud.get_dataset(session, user=user, dataset_id=dataset_id, with_manifest=True)
    if ds is None:
        raise not_found("dataset", dataset_id)
    if not 0 <= index < ds.num_pairs:
        raise ServiceError(404, f"dataset {dataset_id} has samples 0..{ds.num_pairs - 1}; there is no sample {index}")
    return Response(ingest.thumbnail_png(settings, ds, index, full=full), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/datasets/{dataset_id}", status_code=204, response_class=Response,
               responses=error_responses(404, 409))
def delete_dataset(dataset_id: DatasetId, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> Response:
    datasets.delete(session, settings, user=user, dataset_id=dataset_id)
    return Response(status_code=204)
