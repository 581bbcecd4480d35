"""DICOM datasets: series of single-frame CT/MR images, each segmented by one DICOM SEG object.

Every series is checked and read (:mod:`sikd_core.data.dicom_series`), its SEG turned into a class map on its
slices, and both are written as NIfTI volumes (``rows, columns, slices``, the series' spacing and orientation
in the affine) under ``<dataset>/.sikd-dicom/``. The manifest then names those volumes, so splitting,
preprocessing, 2D training on slices and scoring (HD95 in mm) are exactly the NIfTI path. The conversion is
kept with an index of the DICOM files it came from and reused while they are unchanged.

Classes are the SEG segments' labels: the same SegmentLabel in every case is the same class; classes are
``background`` then the labels in alphabetical order. Labels that differ only in case or spacing, or one
label coded as two different segmented property types, are refused as inconsistent.

Nothing patient-identifying is kept: the volumes hold pixels and geometry only, case names come from the
series' folder names, groups (cases of one patient, kept on one side of a split) are named after their first
case, and messages name files, never attribute values. De-identifying the files is the user's duty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sikd_core.data import dicom_series as dcm
from sikd_core.data import io as dio
from sikd_core.data.loaders import MAX_CLASSES, _case_samples
from sikd_core.data.manifest import Manifest, relative_to
from sikd_core.errors import DatasetError

log = logging.getLogger(__name__)

CONVERTED_DIR = ".sikd-dicom"
INDEX_FILE = "index.json"
INDEX_VERSION = 1
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
LAYOUT = ("DICOM: series of single-frame CT/MR images (one file per slice), each with one DICOM SEG object "
          "(BINARY or LABELMAP) that references it; segments become classes by their labels")


def is_dicom_name(name: str) -> bool:
    """Whether a file name may be a DICOM file: ``.dcm``/``.dicom``/``.ima``, no extension, or a numeric one
    (files named by their UID)."""
    ext = os.path.splitext(os.path.basename(name))[1].lower()
    return ext in DICOM_SUFFIXES or ext == "" or ext[1:].isdigit()


def dicom_files(root: Path) -> list[Path]:
    """The DICOM Part 10 files under ``root`` (hidden files and folders skipped)."""
    return [f for f in dio.list_files(root) if is_dicom_name(f.name) and dcm.is_dicom_file(f)]


def has_dicom_files(root: Path) -> bool:
    return any(is_dicom_name(f.name) and dcm.is_dicom_file(f) for f in dio.list_files(root))


def _fingerprint(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{relative_to(f, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _refuse(errors: list[dcm.DicomError], head: str) -> DatasetError:
    files = list(dict.fromkeys(e.file for e in errors))
    return DatasetError(f"{head}: {len(files)} DICOM file(s) cannot be used ({errors[0]})",
                        problems=[str(e) for e in errors], files=files)


def _norm(label: str) -> str:
    return " ".join(label.split()).casefold()


def _type_code(seg: Any, number: int) -> tuple[str, str] | None:
    for item in getattr(seg, "SegmentSequence", None) or []:
        if str(getattr(item, "SegmentNumber", "")) == str(number):
            code = dcm._item(getattr(item, "SegmentedPropertyTypeCodeSequence", None))
            if code is not None:
                return str(getattr(code, "CodingSchemeDesignator", "")), str(getattr(code, "CodeValue", ""))
    return None


def _classes(segs: list[tuple[str, str, Any]], errors: list[dcm.DicomError]) -> list[str]:
    """Class names (background, then the segment labels sorted); inconsistent labels go to ``errors``."""
    spelled: dict[str, tuple[str, str]] = {}  # normalised label -> (label, first file)
    coded: dict[str, tuple[tuple[str, str], str]] = {}
    for name, _, seg in segs:
        try:
            labels = dcm.segment_labels(name, seg)
        except dcm.DicomError as e:
            errors.append(e)
            continue
        for number, label in labels.items():
            key = _norm(label)
            first = spelled.setdefault(key, (label, name))
            if first[0] != label:
                errors.append(dcm.DicomError(name, f"segment label {label!r} is spelled {first[0]!r} in {first[1]}: "
                                                   "the same structure must carry the same label in every SEG"))
                continue
            code = _type_code(seg, number)
            if code is not None:
                seen = coded.setdefault(label, (code, name))
                if seen[0] != code:
                    errors.append(dcm.DicomError(
                        name, f"segment {label!r} is coded as {code[0]} {code[1]} but as {seen[0][0]} {seen[0][1]} in "
                              f"{seen[1]}: one label must name one structure"))
    names = ["background"] + sorted(label for label, _ in spelled.values())
    if len(names) > MAX_CLASSES:
        errors.append(dcm.DicomError(segs[0][0], f"the SEGs name {len(names) - 1} segments; at most "
                                                 f"{MAX_CLASSES - 1} classes are supported"))
    return names


def _referenced_series(seg: Any) -> tuple[str | None, set[str]]:
    ref = dcm._item(getattr(seg, "ReferencedSeriesSequence", None))
    if ref is None:
        return None, set()
    uids = {str(i.ReferencedSOPInstanceUID) for i in getattr(ref, "ReferencedInstanceSequence", None) or []}
    return str(getattr(ref, "SeriesInstanceUID", "") or "") or None, uids


def _pair(groups: dict[str, list], segs: list[tuple[str, str, Any]], errors: list[dcm.DicomError]
          ) -> list[tuple[tuple[str, str, Any], list]]:
    """(SEG, its series' images) per case: one SEG per series, every series segmented, every reference present."""
    by_sop = {str(ds.SOPInstanceUID): uid for uid, items in groups.items() for _, _, ds in items}
    owner: dict[str, str] = {}
    pairs = []
    for seg_item in segs:
        name, _, seg = seg_item
        try:
            series_uid, refs = _referenced_series(seg)
        except (AttributeError, IndexError, TypeError, ValueError) as e:
            errors.append(dcm.DicomError(name, f"is a malformed SEG ({type(e).__name__}: {e})"))
            continue
        if series_uid is None:
            frame_uids = {u for f in range(dcm.frames_of(seg)) if (u := dcm._frame_refs(seg, f)[1])}
            found = {by_sop[u] for u in frame_uids if u in by_sop}
            series_uid = next(iter(found)) if len(found) == 1 else None
            refs = frame_uids
        if series_uid is None or series_uid not in groups:
            errors.append(dcm.DicomError(name, f"segments a series none of whose {len(refs) or 'referenced'} images "
                                               "are in the dataset: add the series' image files"))
            continue
        present = {str(ds.SOPInstanceUID) for _, _, ds in groups[series_uid]}
        missing = refs - present
        if missing:
            errors.append(dcm.DicomError(name, f"references {len(missing)} image(s) of its series that are not in "
                                               f"the dataset (of {len(refs)} referenced): add the missing slices"))
            owner.setdefault(series_uid, name)  # the series has its SEG: one problem, not two
            continue
        if series_uid in owner:
            errors.append(dcm.DicomError(name, f"segments the same series as {owner[series_uid]}: keep one SEG per "
                                               "series"))
            continue
        owner[series_uid] = name
        pairs.append((seg_item, groups[series_uid]))
    for uid, items in groups.items():
        if uid not in owner:
            example = sorted(n for n, _, _ in items)[0]
            errors.append(dcm.DicomError(example, f"its series ({len(items)} image(s)) has no SEG object: every "
                                                  "series needs its segmentation (remove series without one)"))
    return pairs


def _case_names(pairs: list[tuple[tuple[str, str, Any], list]]) -> list[str]:
    """Case names: the folder of each series' images, or the SEG's file name where folders are shared."""
    folders = [os.path.dirname(sorted(n for n, _, _ in items)[0]) for _, items in pairs]
    count = Counter(folders)
    out = []
    for (seg_item, _), folder in zip(pairs, folders, strict=True):
        stem = os.path.splitext(os.path.basename(seg_item[0]))[0]
        out.append(folder if folder and count[folder] == 1 else "/".join(p for p in (folder, stem) if p))
    return out


def _groups(pairs: list[tuple[tuple[str, str, Any], list]], cases: list[str]) -> list[str]:
    """Cases of one patient (same PatientID) share a group, named after its first case."""
    first: dict[str, str] = {}
    out = []
    for (_, items), case in zip(pairs, cases, strict=True):
        pid = str(getattr(items[0][2], "PatientID", "") or "")
        out.append(first.setdefault(pid, case) if pid else case)
    return out


def _write(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, affine), str(path))


def _convert(root: Path, files: list[Path], fingerprint: str) -> dict[str, Any]:
    """Check and read every series and SEG; write the volumes; return the index (nothing written on refusal)."""
    named = [(relative_to(f, root), str(f)) for f in files]
    errors: list[dcm.DicomError] = []
    groups, segs, skipped = dcm.group_files(named, errors)
    if errors:
        raise _refuse(errors, "cannot read the DICOM files")
    if not segs:
        raise DatasetError(f"no DICOM SEG object found among the {len(named)} DICOM files: each series needs its "
                           "segmentation as a DICOM SEG", problems=[f"accepted: {LAYOUT}"])
    classes = _classes(segs, errors)
    pairs = _pair(groups, segs, errors)
    if errors:
        raise _refuse(errors, "dataset check failed")
    cases = _case_names(pairs)
    tmp = root / f"{CONVERTED_DIR}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    class_of = {label: k for k, label in enumerate(classes)}
    entries = []
    try:
        tmp.mkdir()
        for i, (((seg_name, seg_path, _), items), case, group) in enumerate(
                zip(pairs, cases, _groups(pairs, cases), strict=True)):
            try:
                series = dcm.build_series(items)
                if series.voxels > dio.DECODE_LIMITS.max_voxels:
                    raise dcm.DicomError(series.names[0], f"its series holds {series.voxels} voxels, more than the "
                                                          f"limit of {dio.DECODE_LIMITS.max_voxels}")
                label = dcm.seg_label_volume(seg_name, seg_path, series, class_of)
                image = series.volume()
            except dcm.DicomError as e:
                errors.append(e)
                continue
            if errors:
                continue  # keep checking the others, write nothing more
            if series.integral() and image.min() >= -32768 and image.max() <= 32767:
                image = image.astype(np.int16)
            stem = f"case{i:04d}"
            _write(tmp / f"{stem}_image.nii.gz", image, series.affine())
            _write(tmp / f"{stem}_label.nii.gz", label, series.affine())
            entries.append({"case": case, "group": group, "image": f"{stem}_image.nii.gz",
                            "label": f"{stem}_label.nii.gz", "modality": series.modality, "plane": series.plane(),
                            "slices": series.num_slices})
        if errors:
            raise _refuse(errors, "dataset check failed")
        index = {"version": INDEX_VERSION, "fingerprint": fingerprint, "classes": classes, "cases": entries,
                 "ignored": len(skipped)}
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1))
        final = root / CONVERTED_DIR
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process converted the same files first
            if _cached_index(root, fingerprint) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index


def _cached_index(root: Path, fingerprint: str) -> dict[str, Any] | None:
    path = root / CONVERTED_DIR / INDEX_FILE
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if index.get("version") != INDEX_VERSION or index.get("fingerprint") != fingerprint:
        return None
    if not all((root / CONVERTED_DIR / c[k]).is_file() for c in index["cases"] for k in ("image", "label")):
        return None
    return index


def load_dicom(root: Path, name: str | None) -> Manifest:
    """The DICOM dataset at ``root`` as a manifest of its converted NIfTI volumes (see the module docstring)."""
    files = dicom_files(root)
    if not files:
        raise DatasetError(f"no DICOM files found in {root}", problems=[f"accepted: {LAYOUT}"])
    fingerprint = _fingerprint(root, files)
    index = _cached_index(root, fingerprint)
    if index is None:
        try:
            index = _convert(root, files, fingerprint)
        except OSError as e:
            raise DatasetError(f"cannot write the converted volumes under {root / CONVERTED_DIR}: {e.strerror or e}; "
                               "copy the dataset to a writable folder") from None
    return manifest_of(root, index, name)


def manifest_of(root: Path, index: dict[str, Any], name: str | None) -> Manifest:
    ds_name = name or root.name
    out = root / CONVERTED_DIR
    samples = []
    for c in index["cases"]:
        samples += _case_samples((str(out / c["image"]),), str(out / c["label"]), c["case"], c["group"], ds_name,
                                 None, root)
    return Manifest(name=ds_name, root=str(root), format="dicom", samples=samples, class_names=list(index["classes"]),
                    in_channels=1, mask_mode="label", volumetric=True)


def dicom_summary(root: str | os.PathLike[str]) -> dict[str, Any]:
    """What the statistics say of a DICOM dataset: series, modalities, planes, segment labels (nothing
    patient-identifying)."""
    index = json.loads((Path(root) / CONVERTED_DIR / INDEX_FILE).read_text())
    return {"series": len(index["cases"]), "modalities": dict(Counter(c["modality"] for c in index["cases"])),
            "planes": dict(Counter(c["plane"] for c in index["cases"])), "segment_labels": index["classes"][1:],
            "ignored_objects": index.get("ignored", 0)}
