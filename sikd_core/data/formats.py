"""Dataset formats: detect the layout on disk and load it into a checked, described :class:`Manifest`.

Accepted layouts (tried in this order, at the given path or inside its one top-level folder):

1. nnU-Net v2 raw dataset: ``dataset.json`` + ``imagesTr/`` + ``labelsTr/``.
2. MONAI datalist: a ``.json`` file with a ``"training"`` list (or a folder holding one
   ``datalist.json``/``dataset.json`` with that key; Medical Segmentation Decathlon folders are read
   this way).
3. Folder dataset: ``images/`` + ``masks/`` (or ``labels/``, ``gt/``, ...) with matching file names.
4. DICOM: series of single-frame images, each with one DICOM SEG (:mod:`sikd_core.data.dicom`), read as NIfTI
   volumes.

This module detects the layout and is the entry point (:func:`load_dataset`); the three readers live in
:mod:`sikd_core.data.loaders`, the one-pass check and statistics (:func:`scan_dataset`,
:func:`dataset_stats`) in :mod:`sikd_core.data.scan`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sikd_core.data import dicom
from sikd_core.data import io as dio
from sikd_core.data.loaders import (
    ACCEPTED_LAYOUTS,
    IMAGE_DIR_NAMES,
    MASK_DIR_NAMES,
    _load_datalist,
    _load_folder,
    _load_nnunet,
    _read_json,
    _rel,
)
from sikd_core.data.manifest import Manifest
from sikd_core.data.scan import _scan, scan_dataset
from sikd_core.errors import DatasetError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# entry point


def load_dataset(
    path: str | os.PathLike[str], *, name: str | None = None, mask_mode: str = "auto", scan: bool = True
) -> Manifest:
    """Detect the layout at ``path`` and return its :class:`Manifest`.

    ``mask_mode``: ``"auto"`` (decided from the mask values, see :func:`sikd_core.data.io.detect_mask_mode`;
    nnU-Net datasets are always label maps), ``"label"`` or ``"binary"``. With ``scan=True`` every pair is
    read once to validate the dataset and fill ``manifest.stats``; with ``scan=False`` only a sample of up
    to 32 pairs is read to settle the mask mode, classes and channels (faster, but a bad file or a class
    that only occurs in unread masks goes unnoticed).
    """
    if mask_mode not in ("auto", "label", "binary"):
        raise ValueError(f"mask_mode must be 'auto', 'label' or 'binary'; got {mask_mode!r}")
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise DatasetError(f"dataset path does not exist: {p}", files=[str(p)])
    p = p.resolve()
    if p.is_file():
        if p.suffix.lower() != ".json":
            raise DatasetError(
                f"{p.name} is a file, not a dataset; give a dataset folder or a MONAI datalist .json",
                problems=[f"accepted: {x}" for x in ACCEPTED_LAYOUTS],
                files=[p.name],
            )
        manifest = _load_datalist(p, name)
    else:
        base, kind, info = _detect(p)
        if kind == "nnunet":
            manifest = _load_nnunet(base, info["json"], info["meta"], name)
        elif kind == "datalist":
            manifest = _load_datalist(info["json"], name, meta=info["meta"])
        elif kind == "folder":
            manifest = _load_folder(base, info["images"], info["masks"], name)
        elif kind == "dicom":
            manifest = dicom.load_dicom(base, name)
        else:  # pragma: no cover - _detect raises
            raise AssertionError(kind)
    if mask_mode != "auto":
        manifest.mask_mode = mask_mode
    if scan:
        scan_dataset(manifest)
        if manifest.format == "dicom":
            manifest.stats["dicom"] = dicom.dicom_summary(manifest.root)  # type: ignore[index]
    else:
        _scan(manifest, sample_only=True)
    log.info(
        "loaded %s dataset %r: %d samples, %d classes, %d channel(s), mask_mode=%s",
        manifest.format, manifest.name, len(manifest.samples), manifest.num_classes,
        manifest.in_channels, manifest.mask_mode,
    )
    return manifest


def _visible_children(d: Path) -> list[Path]:
    return sorted(c for c in d.iterdir() if not dio._is_junk(c.name))


def _detect(p: Path) -> tuple[Path, str, dict[str, Any]]:
    """Find the layout at ``p`` or inside its single top-level folder."""
    found = _detect_here(p)
    if found is not None:
        return p, found[0], found[1]
    subdirs = [c for c in _visible_children(p) if c.is_dir()]
    if len(subdirs) == 1:
        found = _detect_here(subdirs[0])
        if found is not None:
            return subdirs[0], found[0], found[1]
    if dicom.has_dicom_files(p):  # inside its one top-level folder when that is all there is
        top_files = [c for c in _visible_children(p) if c.is_file()]
        return (subdirs[0] if len(subdirs) == 1 and not top_files else p), "dicom", {}
    listing = [c.name + ("/" if c.is_dir() else "") for c in _visible_children(p)]
    hints = []
    for d in [p, *subdirs[:1]] if len(subdirs) == 1 else [p]:
        names = {c.name.lower() for c in _visible_children(d) if c.is_dir()}
        if names & set(IMAGE_DIR_NAMES) and not names & set(MASK_DIR_NAMES):
            hints.append(f"{_rel(d, p) if d != p else '.'}: found an image folder but no mask folder ({', '.join(MASK_DIR_NAMES[:5])}/...)")
        if names & set(MASK_DIR_NAMES) and not names & set(IMAGE_DIR_NAMES):
            hints.append(f"{_rel(d, p) if d != p else '.'}: found a mask folder but no image folder (images/, image/)")
        if {"imagestr", "labelstr"} <= names and not (d / "dataset.json").is_file():
            hints.append(f"{_rel(d, p) if d != p else '.'}: imagesTr/ and labelsTr/ need a dataset.json beside them")
    raise DatasetError(
        f"no supported dataset layout found in {p}"
        + (f" (it holds: {', '.join(listing[:15])}{' ...' if len(listing) > 15 else ''})" if listing else " (it is empty)"),
        problems=hints + [f"accepted: {x}" for x in [*ACCEPTED_LAYOUTS, dicom.LAYOUT]],
    )


def _detect_here(d: Path) -> tuple[str, dict[str, Any]] | None:
    ds_json = d / "dataset.json"
    if ds_json.is_file() and (d / "imagesTr").is_dir() and (d / "labelsTr").is_dir():
        meta = _read_json(ds_json, d)
        if isinstance(meta, dict) and ("channel_names" in meta or "training" not in meta):
            return "nnunet", {"json": ds_json, "meta": meta}
    lists = []
    for nm in ("datalist.json", "dataset.json"):
        f = d / nm
        if f.is_file():
            meta = _read_json(f, d)
            if isinstance(meta, dict) and "training" in meta:
                lists.append((f, meta))
    if len(lists) > 1:
        raise DatasetError(
            f"{d} holds both datalist.json and dataset.json with a 'training' list; keep one",
            files=["datalist.json", "dataset.json"],
        )
    if lists:
        return "datalist", {"json": lists[0][0], "meta": lists[0][1]}
    dirs = {c.name.lower(): c for c in _visible_children(d) if c.is_dir()}
    imgs = [dirs[n] for n in IMAGE_DIR_NAMES if n in dirs]
    masks = [dirs[n] for n in MASK_DIR_NAMES if n in dirs]
    if imgs and masks:
        for kind, found in (("image", imgs), ("mask", masks)):
            if len(found) > 1:
                names = ", ".join(f.name + "/" for f in found)
                raise DatasetError(
                    f"ambiguous folder dataset in {d}: several {kind} folders ({names}); keep one",
                    files=[f.name for f in found],
                )
        return "folder", {"images": imgs[0], "masks": masks[0]}
    return None
