"""Prediction on a DICOM series, returned as a DICOM SEG that references it (``sikd predict``, the API).

The series is read and checked as a training series is (:mod:`sikd_core.data.dicom_series`), normalised as a
volume and segmented slice by slice exactly as evaluation does (:func:`sikd_core.inference.predict_volume`), and
the class maps become one BINARY SEG (one segment per foreground class, labelled with the class name) built and
checked by highdicom over the series' own instances, so a DICOM viewer shows it over the series.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sikd_core import __version__
from sikd_core.data import dicom_series as dcm
from sikd_core.errors import DatasetError
from sikd_core.inference import LoadedModel, predict_volume


def as_dataset_error(e: dcm.DicomError) -> DatasetError:
    return DatasetError(f"cannot use DICOM file {e.file}: {e.problem}", problems=[str(e)], files=[e.file])


def read_series(named: Sequence[tuple[str, str | os.PathLike[str]]]) -> dcm.Series:
    """The one image series among ``(name, path)`` files (DICOMDIR and SEG objects ignored); DatasetError naming
    the file and the problem otherwise."""
    dicom = [(n, os.fspath(p)) for n, p in named if dcm.is_dicom_file(p)]
    if not dicom:
        raise DatasetError("no DICOM files received (a DICOM series is read from its Part 10 files)",
                           files=[n for n, _ in named][:10])
    try:
        return dcm.read_one_series(dicom)
    except dcm.DicomError as e:
        raise as_dataset_error(e) from None


def series_files(folder: Path) -> list[tuple[str, str]]:
    """``(name relative to folder, path)`` of every file under ``folder`` (hidden files skipped)."""
    from sikd_core.data.io import list_files

    return [(f.relative_to(folder).as_posix(), str(f)) for f in list_files(folder)]


def predict_series(loaded: LoadedModel, series: dcm.Series) -> np.ndarray:
    """uint8 ``rows, columns, slices`` class map of the series, normalised as a volume the way training
    normalises volumes (:func:`sikd_core.inference.predict_volume`)."""
    try:
        volume = series.volume()
    except dcm.DicomError as e:
        raise as_dataset_error(e) from None
    return predict_volume(loaded, volume)


def seg_dataset(loaded: LoadedModel, series: dcm.Series, classes: np.ndarray) -> Any:
    """The highdicom Segmentation of ``classes`` over ``series`` (the model named as the algorithm)."""
    info = loaded.info
    algorithm = f"SIKD Studio {info.get('method') or 'model'} {info.get('network') or ''}".strip()
    return dcm.write_seg(series, classes, loaded.class_names, algorithm=algorithm, version=__version__)


def seg_bytes(seg: Any) -> bytes:
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()


def predict_to_seg(loaded: LoadedModel, named: Sequence[tuple[str, str | os.PathLike[str]]]) -> tuple[bytes, dict[str, float]]:
    """Segment the series among ``named`` files: the SEG's bytes and each class's fraction of the voxels."""
    series = read_series(named)
    classes = predict_series(loaded, series)
    fractions = {name: float(np.count_nonzero(classes == k)) / max(1, classes.size)
                 for k, name in enumerate(loaded.class_names)}
    return seg_bytes(seg_dataset(loaded, series, classes)), fractions


def is_series_input(path: str | os.PathLike[str]) -> bool:
    """A ``sikd predict`` argument that is a DICOM series: a folder, or a .zip of the series' files."""
    p = Path(path)
    return p.is_dir() or (p.is_file() and p.suffix.lower() == ".zip")


def extract_zip(path: Path, dest: Path) -> Path:
    """A local .zip (the CLI's own input) extracted under ``dest``; names that leave it are refused."""
    root = dest.resolve()
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                target = (root / info.filename).resolve()
                if root != target and root not in target.parents:
                    raise DatasetError(f"{path.name}: entry {info.filename!r} leaves the archive",
                                       files=[info.filename])
            zf.extractall(root)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"{path.name}: not a readable zip archive ({e})", files=[path.name]) from None
    return root


def predict_dicom_cli(loaded: LoadedModel, path: Path, out: Path) -> str:
    """``sikd predict`` on a series folder or .zip: writes ``<out>/<name>_seg.dcm``; returns the line to print."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sikd-series-") as tmp:
        folder = extract_zip(path, Path(tmp)) if path.is_file() else path
        data, fractions = predict_to_seg(loaded, series_files(folder))
    target = out / f"{path.stem if path.is_file() else path.name}_seg.dcm"
    target.write_bytes(data)
    shares = ", ".join(f"{n} {f:.1%}" for n, f in fractions.items() if n != loaded.class_names[0])
    return f"{path}: {target} (DICOM SEG; {shares})"
