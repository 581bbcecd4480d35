"""The three dataset readers (folder, nnU-Net v2 raw, MONAI datalist) and what they share: class names,
group files, per-case samples. Each returns an unchecked :class:`Manifest`; :mod:`sikd_core.data.formats`
picks the reader and :mod:`sikd_core.data.scan` checks the result. NIfTI volumes are sliced along their
last axis into 2D samples.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

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


def _read_json(path: Path, root: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except RecursionError:
        rel = _rel(path, root)
        raise DatasetError(f"cannot parse {rel}: nested too deeply", problems=[f"{rel}: nested too deeply"],
                           files=[rel]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        rel = _rel(path, root)
        raise DatasetError(f"cannot parse {rel}: {exc}", problems=[f"{rel}: {exc}"], files=[rel]) from exc


def _rel(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    return relative_to(path, root)


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
