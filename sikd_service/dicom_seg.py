"""Prediction on a DICOM series received by ``POST /models/{id}/predict``: the answer is a DICOM SEG.

A request is a DICOM series when it is one .zip (checked against zip bombs and path tricks exactly as a dataset
upload is, :func:`sikd_service.ingest.check_archive`) or when every file sent is a DICOM Part 10 file. The
series' size is read from the headers first and held to the per-request pixel budget (413 before any pixel is
decoded); unreadable, compressed-without-decoder, multi-frame or inconsistent files are refused (422) naming the
file and the problem. Nothing of the request is kept, and no header value is logged.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sikd_core.data import dicom_series as dcm
from sikd_core.dicom_seg import as_dataset_error, predict_series, seg_bytes, seg_dataset, series_files
from sikd_core.errors import DatasetError
from sikd_core.inference import LoadedModel
from sikd_service.config import Settings
from sikd_service.errors import ServiceError, dataset_error
from sikd_service.predict import ImageFile

MEDIA_TYPE = "application/dicom"


@dataclass(frozen=True)
class SegAnswer:
    """The SEG's bytes and what the response says of it."""

    data: bytes
    slices: int
    class_fractions: dict[str, float]


def is_series_request(files: Sequence[ImageFile]) -> bool:
    """One .zip, or DICOM Part 10 files only."""
    if len(files) == 1 and (files[0].filename.lower().endswith(".zip") or zipfile.is_zipfile(files[0].path)):
        return True
    return bool(files) and all(dcm.is_dicom_file(f.path) for f in files)


def _named(files: Sequence[ImageFile], settings: Settings, workdir: Path) -> list[tuple[str, str]]:
    if len(files) == 1 and zipfile.is_zipfile(files[0].path):
        from sikd_service.ingest import check_archive, extract_archive

        entries = check_archive(files[0].path, settings)
        folder = workdir / "series"
        folder.mkdir()
        extract_archive(files[0].path, entries, folder, settings)
        return series_files(folder)
    if len(files) == 1 and files[0].filename.lower().endswith(".zip"):
        raise ServiceError(400, f"{files[0].filename} is not a readable zip archive", files=[files[0].filename])
    return [(f.filename, str(f.path)) for f in files]


def predict_series_request(loaded: LoadedModel, files: Sequence[ImageFile], settings: Settings,
                           workdir: Path) -> SegAnswer:
    """Segment the one series of the request (see the module docstring) and build its SEG."""
    named = _named(files, settings, workdir)
    dicom = [(n, p) for n, p in named if dcm.is_dicom_file(p)]
    if not dicom:
        raise ServiceError(422, "no DICOM files received: send the series' files (DICOM Part 10) or one .zip of "
                                "them", files=[n for n, _ in named][:20])
    try:
        series = dcm.read_one_series(dicom)
    except dcm.DicomError as e:
        raise dataset_error(as_dataset_error(e)) from None
    if series.voxels > settings.max_predict_pixels:
        raise ServiceError(413, f"the series holds {series.num_slices} slices of {series.rows}x{series.columns} = "
                                f"{series.voxels} pixels, more than the per-request budget of "
                                f"{settings.max_predict_pixels} pixels (SIKD_MAX_PREDICT_PIXELS)",
                           files=[series.names[0]])
    try:
        classes = predict_series(loaded, series)
        seg = seg_dataset(loaded, series, classes)
    except DatasetError as e:
        raise dataset_error(e) from None
    fractions = {name: float((classes == k).sum()) / max(1, classes.size) for k, name in enumerate(loaded.class_names)}
    return SegAnswer(seg_bytes(seg), series.num_slices, fractions)
