"""Dataset formats: detect the layout on disk, build a :class:`Manifest`, check it and describe it.

Accepted layouts (tried in this order, at the given path or inside its one top-level folder):

1. nnU-Net v2 raw dataset: ``dataset.json`` + ``imagesTr/`` + ``labelsTr/``.
2. MONAI datalist: a ``.json`` file with a ``"training"`` list (or a folder holding one
   ``datalist.json``/``dataset.json`` with that key; Medical Segmentation Decathlon folders are read
   this way).
3. Folder dataset: ``images/`` + ``masks/`` (or ``labels/``, ``gt/``, ...) with matching file names.

NIfTI volumes are sliced along their last axis into 2D samples. :func:`scan_dataset` reads every
image/mask pair once, both to check the dataset (unreadable files, size mismatches, class values) and
to compute the statistics returned by :func:`dataset_stats`, so an upload is validated and described
in one pass.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sikd_core.data import io as dio
from sikd_core.data.manifest import Manifest, Sample, relative_to
from sikd_core.data.splits import cvc_clinicdb_groups, find_cvc_clinicdb_readme
from sikd_core.errors import DatasetError

log = logging.getLogger(__name__)

ACCEPTED_LAYOUTS = [
    "nnU-Net: dataset.json + imagesTr/ + labelsTr/ (images <case>_0000<file_ending>, labels <case><file_ending>)",
    "MONAI datalist: a .json file (or a folder with one datalist.json/dataset.json) holding "
    '{"training": [{"image": ..., "label": ...}], "validation": [...], "test": [...]}',
    "folder: images/ and masks/ (also labels/, gt/, image/, mask/) with matching file names, "
    "optionally inside one top-level folder",
]
IMAGE_DIR_NAMES = ("images", "image", "imgs", "img")
MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "gt", "ground_truth", "groundtruth", "ground truth")
# Common suffixes of mask file names (ISIC "_segmentation", BUSI "_mask"...), stripped when the
# mask's own stem has no image.
MASK_SUFFIXES = ("_segmentation", "_mask", "_masks", "_seg", "_gt", "_label", "_labels")
MAX_CLASSES = 256  # labels are cached as uint8
_QUICK_SAMPLE_UNITS = 32
_QUICK_SAMPLE_VOLUMES = 4


def _workers(n_tasks: int, cap: int = 8) -> int:
    return max(1, min(cap, os.cpu_count() or 1, n_tasks))


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
        else:  # pragma: no cover - _detect raises
            raise AssertionError(kind)
    if mask_mode != "auto":
        manifest.mask_mode = mask_mode
    if scan:
        scan_dataset(manifest)
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
        problems=hints + [f"accepted: {x}" for x in ACCEPTED_LAYOUTS],
    )


def _read_json(path: Path, root: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        rel = _rel(path, root)
        raise DatasetError(f"cannot parse {rel}: {exc}", problems=[f"{rel}: {exc}"], files=[rel]) from exc


def _rel(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    return relative_to(path, root)


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


# --------------------------------------------------------------------------------------------
# class names, groups


def class_names_from_labels(labels: Any, source: str) -> list[str]:
    """Class names ordered by value from a ``labels`` entry: a list, ``{name: value}`` (nnU-Net v2)
    or ``{"value": name}`` (Decathlon / nnU-Net v1). Values must be 0..K-1."""
    if isinstance(labels, list):
        names = [str(x) for x in labels]
    elif isinstance(labels, dict) and labels:
        items = list(labels.items())
        if all(isinstance(v, str) for _, v in items) and all(str(k).strip().lstrip("-").isdigit() for k, _ in items):
            by_value = {int(k): v for k, v in items}
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for _, v in items):
            by_value = {}
            for k, v in items:
                if int(v) in by_value:
                    raise DatasetError(f"{source}: classes {by_value[int(v)]!r} and {k!r} share value {int(v)}")
                by_value[int(v)] = str(k)
        elif any(isinstance(v, (list, tuple)) for _, v in items):
            raise DatasetError(f"{source}: region-based labels (lists of values) are not supported", files=[source])
        else:
            raise DatasetError(f"{source}: cannot read 'labels' {labels!r}", files=[source])
        values = sorted(by_value)
        if values != list(range(len(values))):
            raise DatasetError(
                f"{source}: class values must be 0..{len(values) - 1} without gaps; got {values}", files=[source]
            )
        names = [by_value[v] for v in values]
    else:
        raise DatasetError(f"{source}: 'labels' must be a list or a dict; got {labels!r}", files=[source])
    if len(names) < 2:
        raise DatasetError(f"{source}: need at least 2 classes (background + one); got {names}", files=[source])
    if len(names) > MAX_CLASSES:
        raise DatasetError(f"{source}: at most {MAX_CLASSES} classes are supported; got {len(names)}", files=[source])
    return names


def _read_groups_csv(path: Path, root: Path) -> dict[str, str]:
    """``name,group`` rows (optional header) -> {stem: group}."""
    out: dict[str, str] = {}
    problems: list[str] = []
    rel = _rel(path, root)
    with open(path, newline="", encoding="utf-8-sig") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if lineno == 1 and [c.lower() for c in cells[:2]] == ["name", "group"]:
                continue
            if len(cells) < 2 or not cells[0] or not cells[1]:
                problems.append(f"{rel} line {lineno}: expected 'name,group', got {row!r}")
                continue
            out[dio.strip_extension(cells[0].replace("\\", "/"))] = cells[1]
    if problems:
        raise DatasetError(f"cannot read {rel}", problems=problems, files=[rel])
    return out


# --------------------------------------------------------------------------------------------
# samples for one case (2D file or sliced volume)


def _case_samples(
    image: tuple[str, ...],
    label: str | None,
    case_id: str,
    group_id: str,
    dataset: str,
    fixed_split: str | None,
    root: Path,
) -> list[Sample]:
    """One sample for a 2D case, one per slice for a 3D volume (shape from the NIfTI header)."""
    header_file = label if label is not None else image[0]
    if dio.is_volume_file(header_file):
        try:
            shape, zooms = dio.volume_header(header_file)
        except dio.UnreadableFileError as exc:
            rel = _rel(header_file, root)
            raise DatasetError(f"cannot read {rel}: {exc.reason}", problems=[f"{rel}: {exc.reason}"], files=[rel]) from exc
        spacing = (zooms[0], zooms[1])
        if len(shape) == 2:
            return [Sample(image, label, case_id, group_id, dataset, spacing=spacing, fixed_split=fixed_split)]
        z = shape[2]
        return [
            Sample(
                image, label, case_id, group_id, dataset, slice_index=k, num_slices=z,
                spacing=spacing, slice_spacing=zooms[2], fixed_split=fixed_split,
            )
            for k in range(z)
        ]
    return [Sample(image, label, case_id, group_id, dataset, fixed_split=fixed_split)]


# --------------------------------------------------------------------------------------------
# folder datasets


def _describe_found(folder: Path, root: Path) -> str:
    files = dio.list_files(folder)
    supported = [f for f in files if dio.is_supported_file(f)]
    other = Counter(dio.file_extension(f) or "<no extension>" for f in files if not dio.is_supported_file(f))
    msg = f"{_rel(folder, root)}/: {len(supported)} image file(s)"
    if other:
        msg += " and " + ", ".join(f"{n} {ext} file(s)" for ext, n in other.most_common(5)) + " that are not read"
    return msg


def _keyed_files(folder: Path, root: Path) -> tuple[dict[str, Path], list[str]]:
    """Supported files under ``folder`` keyed by relative path without extension; duplicate keys."""
    out: dict[str, Path] = {}
    dups: list[str] = []
    for f in dio.list_files(folder):
        if not dio.is_supported_file(f):
            continue
        key = dio.strip_extension(f.relative_to(folder).as_posix())
        if key in out:
            dups.append(f"{_rel(out[key], root)} and {_rel(f, root)} have the same name")
            continue
        out[key] = f
    return out, dups


def _load_folder(base: Path, img_dir: Path, mask_dir: Path, name: str | None) -> Manifest:
    """Folder dataset: ``images/`` and ``masks/`` with matching file names."""
    ds_name = name or base.name
    images, dup_i = _keyed_files(img_dir, base)
    masks, dup_m = _keyed_files(mask_dir, base)
    if dup_i or dup_m:
        raise DatasetError("several files share one name (extensions differ)", problems=dup_i + dup_m)
    if not images or not masks:
        raise DatasetError(
            f"no image/mask pairs found in {base}",
            problems=[_describe_found(img_dir, base), _describe_found(mask_dir, base)],
        )
    # Match masks to images by stem, then by stem without a usual mask suffix.
    pairs: dict[str, Path] = {}
    unmatched_masks: list[Path] = []
    for key, mpath in masks.items():
        if key in images and key not in pairs:
            pairs[key] = mpath
            continue
        low = key.lower()
        stripped = next((key[: -len(s)] for s in MASK_SUFFIXES if low.endswith(s)), None)
        if stripped is not None and stripped in images and stripped not in pairs and stripped not in masks:
            pairs[stripped] = mpath
        else:
            unmatched_masks.append(mpath)
    unmatched_images = [images[k] for k in images if k not in pairs]
    if unmatched_images or unmatched_masks:
        problems = [
            f"{_rel(p, base)}: no mask with this name in {_rel(mask_dir, base)}/" for p in unmatched_images
        ] + [f"{_rel(p, base)}: no image with this name in {_rel(img_dir, base)}/" for p in unmatched_masks]
        head = "no image/mask pairs found: " if not pairs else ""
        raise DatasetError(
            f"{head}{len(unmatched_images)} image(s) without a mask and {len(unmatched_masks)} mask(s) "
            f"without an image (names must match; the extension may differ)",
            problems=problems,
            files=[_rel(p, base) for p in unmatched_images + unmatched_masks],
        )

    class_names: list[str] = []
    for fname in ("classes.json", "dataset.json"):
        f = base / fname
        if not f.is_file():
            continue
        meta = _read_json(f, base)
        labels = meta if isinstance(meta, list) else (meta.get("labels") or meta.get("class_names"))
        if labels is not None:
            class_names = class_names_from_labels(labels, fname)
            break

    groups: dict[str, str] = {}
    if (base / "groups.csv").is_file():
        groups = _read_groups_csv(base / "groups.csv", base)
        unknown = sorted(set(groups) - set(pairs))
        if unknown:
            log.warning("groups.csv names %d file(s) not in the dataset, e.g. %s", len(unknown), unknown[:5])
    elif find_cvc_clinicdb_readme(base) is not None:
        frames = cvc_clinicdb_groups(base)
        groups = {k: frames[str(int(k))] for k in pairs if k.isdigit() and str(int(k)) in frames}
        if groups:
            log.info("grouping %d CVC-ClinicDB frames by video sequence (README table)", len(groups))

    samples: list[Sample] = []
    problems: list[str] = []
    for key in sorted(pairs):
        img, msk = images[key], pairs[key]
        if dio.is_volume_file(img) != dio.is_volume_file(msk):
            problems.append(f"{_rel(img, base)} and {_rel(msk, base)}: one is a NIfTI volume, the other a 2D image")
            continue
        samples.extend(_case_samples((str(img),), str(msk), key, groups.get(key, key), ds_name, None, base))
    if problems:
        raise DatasetError("image and mask file types do not match", problems=problems)
    return Manifest(
        name=ds_name, root=str(base), format="folder", samples=samples, class_names=class_names,
        in_channels=0, mask_mode="auto", volumetric=any(s.slice_index is not None for s in samples),
    )


# --------------------------------------------------------------------------------------------
# nnU-Net


def _load_nnunet(base: Path, json_path: Path, meta: dict[str, Any], name: str | None) -> Manifest:
    """nnU-Net v2 raw layout (``imagesTr/<case>_0000<ending>``, ``labelsTr/<case><ending>``)."""
    ds_name = name or base.name
    channels = meta.get("channel_names", meta.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise DatasetError("dataset.json: 'channel_names' is missing or empty", files=["dataset.json"])
    n_ch = len(channels)
    if "labels" not in meta:
        raise DatasetError("dataset.json: 'labels' is missing", files=["dataset.json"])
    class_names = class_names_from_labels(meta["labels"], "dataset.json")
    ending = str(meta.get("file_ending", ".nii.gz"))
    img_dir, lab_dir = base / "imagesTr", base / "labelsTr"

    cases: dict[str, dict[int, Path]] = {}
    labels: dict[str, Path] = {}
    if isinstance(meta.get("dataset"), dict):  # explicit file lists (nnU-Net v2 option)
        for case, entry in meta["dataset"].items():
            imgs = entry.get("images", [])
            cases[case] = {i: (base / p).resolve() for i, p in enumerate(imgs)}
            if entry.get("label"):
                labels[case] = (base / entry["label"]).resolve()
    else:
        pat = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})" + re.escape(ending) + "$")
        for f in dio.list_files(img_dir):
            m = pat.match(f.name)
            if m:
                cases.setdefault(m["case"], {})[int(m["ch"])] = f
        for f in dio.list_files(lab_dir):
            if f.name.endswith(ending):
                labels[f.name[: -len(ending)]] = f
    if not cases and not labels:
        raise DatasetError(
            f"no image/mask pairs found in {base}: no files ending in {ending!r} "
            "(dataset.json 'file_ending') in imagesTr/ and labelsTr/",
            problems=[_describe_found(img_dir, base), _describe_found(lab_dir, base)],
        )
    problems: list[str] = []
    files: list[str] = []
    for case in sorted(set(cases) - set(labels)):
        p = _rel(cases[case][min(cases[case])], base)
        problems.append(f"{p}: case {case!r} has no label labelsTr/{case}{ending}")
        files.append(p)
    for case in sorted(set(labels) - set(cases)):
        p = _rel(labels[case], base)
        problems.append(f"{p}: case {case!r} has no image imagesTr/{case}_0000{ending}")
        files.append(p)
    # Every case needs channel files 0..n_ch-1; a natural-image dataset may hold R,G,B in one file.
    single_rgb = n_ch == 3 and ending.lower() in dio.IMAGE_EXTENSIONS
    for case in sorted(set(cases) & set(labels)):
        have = sorted(cases[case])
        if have == list(range(n_ch)) or (single_rgb and have == [0]):
            continue
        missing = [f"_{i:04d}" for i in range(n_ch) if i not in have]
        extra = [f"_{i:04d}" for i in have if i >= n_ch]
        p = _rel(cases[case][have[0]], base)
        problems.append(
            f"case {case!r}: expected channel files _0000.._{n_ch - 1:04d}"
            + (f", missing {', '.join(missing)}" if missing else "")
            + (f", unexpected {', '.join(extra)}" if extra else "")
        )
        files.append(p)
    if problems:
        raise DatasetError("nnU-Net dataset is incomplete", problems=problems, files=files)
    n_train = meta.get("numTraining")
    if isinstance(n_train, int) and n_train != len(cases):
        log.warning("dataset.json says numTraining=%d but imagesTr/ holds %d cases", n_train, len(cases))

    samples: list[Sample] = []
    for case in sorted(cases):
        paths = tuple(str(cases[case][i]) for i in sorted(cases[case]))
        samples.extend(_case_samples(paths, str(labels[case]), case, case, ds_name, None, base))
    return Manifest(
        name=ds_name, root=str(base), format="nnunet", samples=samples, class_names=class_names,
        in_channels=n_ch, mask_mode="label", volumetric=any(s.slice_index is not None for s in samples),
    )


# --------------------------------------------------------------------------------------------
# MONAI datalist


_SECTIONS = (("training", "train"), ("validation", "val"), ("test", "test"))


def _load_datalist(json_path: Path, name: str | None, meta: Any = None) -> Manifest:
    """MONAI datalist / Decathlon ``dataset.json``: image/label lists per section."""
    folder = json_path.parent
    if meta is None:
        meta = _read_json(json_path, folder)
    jname = json_path.name
    if not isinstance(meta, dict) or not isinstance(meta.get("training"), list):
        raise DatasetError(
            f"{jname} is not a MONAI datalist: it needs a 'training' list of {{'image': ..., 'label': ...}}",
            problems=[f"accepted: {x}" for x in ACCEPTED_LAYOUTS],
            files=[jname],
        )
    root = folder
    if meta.get("base_dir"):
        root = (folder / os.path.expanduser(str(meta["base_dir"]))).resolve()
    default_name = folder.name if json_path.stem.lower() in ("dataset", "datalist") else json_path.stem
    ds_name = name or default_name

    def resolve(p: Any, where: str) -> Path:
        if not isinstance(p, str) or not p:
            raise DatasetError(f"{jname}: {where}: expected a file path, got {p!r}", files=[jname])
        q = Path(os.path.expanduser(p))
        return (q if q.is_absolute() else root / q).resolve()

    entries: list[tuple[tuple[Path, ...], Path, str | None, str, Any]] = []  # images, label, split, where, group
    missing: list[str] = []
    unlabeled = 0
    sections = {sec: meta.get(sec) or [] for sec, _ in _SECTIONS}
    for sec, items in sections.items():
        if not isinstance(items, list):
            raise DatasetError(f"{jname}: '{sec}' must be a list", files=[jname])
    for sec, split in _SECTIONS:
        for i, item in enumerate(sections[sec]):
            where = f"{sec}[{i}]"
            if isinstance(item, str) or (isinstance(item, dict) and not item.get("label")):
                unlabeled += 1
                continue
            if not isinstance(item, dict) or "image" not in item:
                raise DatasetError(f"{jname}: {where} needs 'image' and 'label' keys; got {item!r}", files=[jname])
            raw = item["image"] if isinstance(item["image"], list) else [item["image"]]
            imgs = tuple(resolve(p, where) for p in raw)
            lab = resolve(item["label"], where)
            if not imgs:
                raise DatasetError(f"{jname}: {where} has an empty image list", files=[jname])
            missing += [f"{where}: {_rel(p, root)} does not exist" for p in (*imgs, lab) if not p.is_file()]
            entries.append((imgs, lab, split, where, item.get("group")))
    if missing:
        raise DatasetError(
            f"{len(missing)} file(s) listed in {jname} do not exist (paths resolve against {root})",
            problems=missing,
            files=[m.split(": ", 1)[1].removesuffix(" does not exist") for m in missing],
        )
    if not entries:
        raise DatasetError(
            f"no image/mask pairs found in {jname}: "
            f"{', '.join(f'{len(sections[s])} {s} entr(ies)' for s, _ in _SECTIONS)}"
            + (f", of which {unlabeled} have no label" if unlabeled else "")
        )
    if unlabeled:
        log.warning("%s: skipped %d entr(ies) without a label (not usable for training)", jname, unlabeled)
    seen: dict[tuple[Path, ...], str] = {}
    dup = []
    for imgs, _, _, where, _ in entries:
        if imgs in seen:
            dup.append(f"{_rel(imgs[0], root)} is listed in both {seen[imgs]} and {where}")
        seen.setdefault(imgs, where)
    if dup:
        raise DatasetError(f"{jname} lists the same image more than once", problems=dup)

    has_eval = any(split in ("val", "test") for _, _, split, _, _ in entries)
    stems = [dio.strip_extension(lab.name) for _, lab, _, _, _ in entries]
    unique_stems = len(set(stems)) == len(stems)
    samples: list[Sample] = []
    for (imgs, lab, split, _, group), stem in zip(entries, stems, strict=True):
        case = stem if unique_stems else dio.strip_extension(_rel(lab, root))
        fixed = split if (split != "train" or has_eval) else None
        samples.extend(
            _case_samples(tuple(map(str, imgs)), str(lab), case, str(group) if group else case, ds_name, fixed, root)
        )
    class_names: list[str] = []
    labels = meta.get("labels", meta.get("class_names"))
    if labels is not None:
        class_names = class_names_from_labels(labels, jname)
    n_img = {len(e[0]) for e in entries}
    return Manifest(
        name=ds_name, root=str(root), format="datalist", samples=samples, class_names=class_names,
        in_channels=0 if n_img == {1} else max(n_img), mask_mode="auto",
        volumetric=any(s.slice_index is not None for s in samples),
    )


# --------------------------------------------------------------------------------------------
# scanning: validation + statistics in one pass


@dataclass
class _Unit:
    """What one read of a 2D pair or of a whole volume tells about its samples."""

    indices: list[int]
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (category, line, rel file)
    height: int = 0
    width: int = 0
    channels: int = 0
    values: np.ndarray | None = None  # unique raw mask values
    counts: np.ndarray | None = None  # [n_values, n_samples] pixel count per value per sample


def _value_counts(lab: np.ndarray, slices: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Unique values of a 2D/3D label array and their pixel counts per (selected) slice: ``[V, S]``."""
    if lab.ndim == 2:
        lab = lab[:, :, None]
        slices = [0]
    assert slices is not None
    if list(slices) != list(range(lab.shape[2])):
        lab = lab[:, :, list(slices)]
    z = lab.shape[2]
    lo, hi = (int(lab.min()), int(lab.max())) if lab.size else (0, 0)
    if lo >= 0 and (hi + 1) * z <= 50_000_000:
        m = hi + 1
        idx = lab.astype(np.int64) + m * np.arange(z, dtype=np.int64)
        counts = np.bincount(idx.ravel(), minlength=m * z).reshape(z, m).T
        values = np.flatnonzero(counts.sum(axis=1))
        return values.astype(np.int64), counts[values]
    values, inv = np.unique(lab, return_inverse=True)
    v = len(values)
    idx = inv.reshape(lab.shape).astype(np.int64) + v * np.arange(z, dtype=np.int64)
    counts = np.bincount(idx.ravel(), minlength=v * z).reshape(z, v).T
    return values.astype(np.int64), counts


def _dims(shape: Sequence[int]) -> str:
    """``WxH`` for 2D shapes (rows, cols), ``AxBxC`` for volumes."""
    return f"{shape[1]}x{shape[0]}" if len(shape) == 2 else "x".join(str(int(d)) for d in shape)


def _scan_unit(manifest: Manifest, indices: list[int]) -> _Unit:
    """Read the image file(s) and mask of one 2D sample or one volume and check them."""
    s0 = manifest.samples[indices[0]]
    u = _Unit(indices=indices)
    rel = manifest.rel
    shapes: list[tuple[tuple[int, ...], str]] = []  # only shapes are kept; pixels are dropped at once
    try:
        for p in s0.image:
            if s0.slice_index is not None:
                vol, _ = dio.read_volume(p)
                if vol.ndim != 3:
                    u.problems.append(("shape", f"{rel(p)}: expected a 3D volume, got shape {vol.shape}", rel(p)))
                    return u
                shapes.append((tuple(vol.shape), p))
                u.channels += 1
            else:
                img = dio.read_image(p)
                shapes.append((tuple(img.shape[:2]), p))
                u.channels += img.shape[2]
        if s0.label is None:
            u.height, u.width = shapes[0][0][:2]
            return u
        lab = dio.read_label_volume(s0.label) if s0.slice_index is not None else dio.read_mask_values(s0.label)
    except dio.UnreadableFileError as exc:
        u.problems.append(("read", f"{rel(exc.path)}: {exc.reason}", rel(exc.path)))
        return u
    u.height, u.width = lab.shape[:2]
    for shp, p in shapes:
        if shp != tuple(lab.shape):
            u.problems.append(
                (
                    "size",
                    f"{rel(s0.label)}: mask size {_dims(lab.shape)} differs from image {rel(p)} size {_dims(shp)}",
                    rel(s0.label),
                )
            )
    if u.problems:
        return u
    slices = [manifest.samples[i].slice_index for i in indices] if s0.slice_index is not None else None
    u.values, u.counts = _value_counts(lab, slices)  # type: ignore[arg-type]
    return u


def _units(manifest: Manifest) -> list[list[int]]:
    """Sample indices grouped by the files they are read from (a 2D pair, or all slices of a volume)."""
    by_files: dict[tuple[tuple[str, ...], str | None], list[int]] = {}
    for i, s in enumerate(manifest.samples):
        by_files.setdefault(s.volume_key, []).append(i)
    return list(by_files.values())


def scan_dataset(manifest: Manifest) -> dict[str, Any]:
    """Read every image/mask pair once: validate the dataset and compute its statistics.

    Settles ``manifest.mask_mode`` when it is ``"auto"`` and ``class_names`` when empty, sets
    ``in_channels`` from the images (checks it against dataset.json for nnU-Net), stores the
    statistics as ``manifest.stats`` and returns them. Raises
    :class:`DatasetError` listing every problem found (files relative to the dataset root).
    """
    return _scan(manifest, sample_only=False)


def dataset_stats(manifest: Manifest) -> dict[str, Any]:
    """JSON-serialisable statistics of a dataset (cached from the load-time scan when there was one)."""
    if manifest.stats is not None:
        return manifest.stats
    return scan_dataset(manifest)


def _pick(units: list[list[int]], manifest: Manifest) -> list[list[int]]:
    vol = [u for u in units if manifest.samples[u[0]].slice_index is not None]
    flat = [u for u in units if manifest.samples[u[0]].slice_index is None]
    out = []
    for group, k in ((flat, _QUICK_SAMPLE_UNITS), (vol, _QUICK_SAMPLE_VOLUMES)):
        if len(group) > k:
            group = [group[int(j)] for j in np.linspace(0, len(group) - 1, k).round().astype(int)]
        out.extend(group)
    return out


def _scan(manifest: Manifest, *, sample_only: bool) -> dict[str, Any]:
    units = _units(manifest)
    if not units:
        raise DatasetError(f"no image/mask pairs found in dataset {manifest.name!r}")
    dup = [u for u in units if len(u) > 1 and manifest.samples[u[0]].slice_index is None]
    if dup:
        raise DatasetError(
            "the same image/mask pair is listed more than once",
            problems=[f"{manifest.rel(manifest.samples[u[0]].image[0])} ({len(u)} times)" for u in dup],
        )
    if sample_only:
        units = _pick(units, manifest)
    n_vol = sum(1 for u in units if manifest.samples[u[0]].slice_index is not None)
    cap = 2 if n_vol > len(units) // 2 else 8  # volumes are large: fewer at once
    with ThreadPoolExecutor(max_workers=_workers(len(units), cap), thread_name_prefix="sikd-scan") as ex:
        results = list(ex.map(lambda u: _scan_unit(manifest, u), units))

    # 1. unreadable files and size mismatches
    problems = [p for r in results for p in r.problems]
    if problems:
        cats = Counter(c for c, _, _ in problems)
        heads = {
            "read": f"{cats['read']} file(s) could not be read",
            "size": f"{cats['size']} mask(s) do not match the size of their image",
            "shape": f"{cats['shape']} volume(s) have the wrong number of dimensions",
        }
        raise DatasetError(
            "dataset check failed: " + "; ".join(heads[c] for c in heads if cats[c]),
            problems=[line for _, line, _ in problems],
            files=sorted({f for _, _, f in problems}),
        )
    labeled = [r for r in results if r.values is not None]

    # 2. channels
    chans = Counter(r.channels for r in results)
    if manifest.format == "nnunet":
        if set(chans) != {manifest.in_channels}:
            bad = [r for r in results if r.channels != manifest.in_channels][:10]
            raise DatasetError(
                f"dataset.json lists {manifest.in_channels} channel(s) but some images have a different "
                "number of channels",
                problems=[f"{manifest.rel(manifest.samples[r.indices[0]].image[0])}: {r.channels} channel(s)" for r in bad],
            )
    elif set(chans) <= {1, 3}:  # grey images are replicated to RGB when the dataset mixes both
        manifest.in_channels = 3 if 3 in chans else 1
    elif len(chans) == 1:
        manifest.in_channels = next(iter(chans))
    else:
        ex_ = {}
        for r in results:
            ex_.setdefault(r.channels, manifest.rel(manifest.samples[r.indices[0]].image[0]))
        raise DatasetError(
            "images have inconsistent numbers of channels",
            problems=[f"{f}: {c} channel(s)" for c, f in sorted(ex_.items())],
        )

    # 3. mask mode
    if manifest.mask_mode == "auto":
        vals = {manifest.rel(manifest.samples[r.indices[0]].label): r.values for r in labeled}
        manifest.mask_mode = dio.detect_mask_mode(vals)  # type: ignore[arg-type]

    # 4. classes
    binary = manifest.mask_mode == "binary"
    if binary:
        if not manifest.class_names:
            manifest.class_names = ["background", "foreground"]
        elif len(manifest.class_names) != 2:
            raise DatasetError(
                f"binary masks give 2 classes but {len(manifest.class_names)} class names are given "
                f"({manifest.class_names}); use mask_mode 'label' for label maps"
            )
    else:
        neg = [r for r in labeled if int(r.values.min(initial=0)) < 0]  # type: ignore[union-attr]
        if neg:
            raise DatasetError(
                "label maps hold negative values",
                problems=[f"{manifest.rel(manifest.samples[r.indices[0]].label)}: value {int(r.values.min())}" for r in neg],  # type: ignore[union-attr]
            )
        vmax = max((int(r.values.max(initial=0)) for r in labeled), default=0)  # type: ignore[union-attr]
        if manifest.class_names:
            k = len(manifest.class_names)
            bad = [r for r in labeled if int(r.values.max(initial=0)) >= k]  # type: ignore[union-attr]
            if bad:
                raise DatasetError(
                    f"label values must be < {k} (the number of classes: {', '.join(manifest.class_names)})",
                    problems=[
                        f"{manifest.rel(manifest.samples[r.indices[0]].label)}: values "
                        f"{', '.join(str(int(v)) for v in r.values[r.values >= k][:8])}"  # type: ignore[index]
                        for r in bad
                    ],
                    files=[manifest.rel(manifest.samples[r.indices[0]].label) for r in bad],
                )
        else:
            if vmax + 1 > MAX_CLASSES:
                raise DatasetError(f"label value {vmax} is too large: at most {MAX_CLASSES} classes are supported")
            manifest.class_names = ["background"] + [f"class_{i}" for i in range(1, max(vmax, 1) + 1)]
    if manifest.num_classes > MAX_CLASSES:
        raise DatasetError(f"at most {MAX_CLASSES} classes are supported; got {manifest.num_classes}")
    if manifest.in_channels < 1:
        manifest.in_channels = 1
    if sample_only:
        return {}
    stats = _stats(manifest, results, binary)
    manifest.stats = stats
    return stats


def _stats(manifest: Manifest, results: list[_Unit], binary: bool) -> dict[str, Any]:
    """Aggregate the per-unit readings into the statistics dict."""
    k = manifest.num_classes
    pixels = np.zeros(k, dtype=np.float64)
    present = np.zeros(k, dtype=np.int64)
    total = 0.0
    empty = 0
    labeled_samples = 0
    sizes: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    widths: list[int] = []
    heights: list[int] = []
    for r in results:
        n = len(r.indices)
        sizes[f"{r.width}x{r.height}"] += n
        widths.append(r.width)
        heights.append(r.height)
        modes["grey" if r.channels == 1 else "rgb" if r.channels == 3 else "multichannel"] += n
        if r.values is None or r.counts is None:
            continue
        labeled_samples += n
        cls = (r.values > dio.BINARY_THRESHOLD).astype(np.int64) if binary else r.values
        per_class = np.zeros((k, r.counts.shape[1]), dtype=np.float64)
        np.add.at(per_class, cls, r.counts)
        pixels += per_class.sum(axis=1)
        present += (per_class > 0).sum(axis=1)
        total += float(r.counts.sum())
        empty += int((per_class[1:].sum(axis=0) == 0).sum())
    classes = [
        {
            "index": i,
            "name": nm,
            "pixel_fraction": float(pixels[i] / total) if total else 0.0,
            "images_present": int(present[i]),
        }
        for i, nm in enumerate(manifest.class_names)
    ]
    warnings = []
    if empty:
        warnings.append(f"{empty} of {labeled_samples} mask(s) have no foreground")
    absent = [c["name"] for c in classes[1:] if c["images_present"] == 0]
    if absent:
        warnings.append(f"classes never present in any mask: {', '.join(absent)}")
    if not binary and any(dio.file_extension(s.label or "") in (".jpg", ".jpeg") for s in manifest.samples):
        warnings.append("label maps are stored as JPEG: lossy compression can change class values at edges")
    fixed = Counter(s.fixed_split for s in manifest.samples if s.fixed_split)
    return {
        "name": manifest.name,
        "format": manifest.format,
        "pairs": len(manifest.samples),
        "cases": len({s.case_id for s in manifest.samples}),
        "groups": len({s.group_id for s in manifest.samples}),
        "in_channels": manifest.in_channels,
        "image_sizes": dict(sizes.most_common()),
        "min_width": min(widths),
        "max_width": max(widths),
        "min_height": min(heights),
        "max_height": max(heights),
        "image_modes": {m: modes.get(m, 0) for m in ("grey", "rgb", "multichannel") if modes.get(m, 0) or m != "multichannel"},
        "mask_mode": manifest.mask_mode,
        "num_classes": k,
        "classes": classes,
        "empty_masks": empty,
        "volumetric": manifest.volumetric,
        "volumes": sum(1 for r in results if manifest.samples[r.indices[0]].slice_index is not None),
        "slices": sum(1 for s in manifest.samples if s.slice_index is not None),
        "fixed_splits": dict(fixed),
        "warnings": warnings,
    }
