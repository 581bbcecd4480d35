"""Scanning a :class:`Manifest`: every image/mask pair is read once, both to check the dataset (unreadable
files, size mismatches, class values) and to compute the statistics :func:`dataset_stats` returns, so an
upload is validated and described in one pass.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sikd_core.data import io as dio
from sikd_core.data.duplicates import fingerprint, near_duplicate_warning, near_duplicates
from sikd_core.data.loaders import MAX_CLASSES
from sikd_core.data.manifest import Manifest
from sikd_core.errors import DatasetError

log = logging.getLogger(__name__)

_QUICK_SAMPLE_UNITS = 32
_QUICK_SAMPLE_VOLUMES = 4


def _workers(n_tasks: int, cap: int = 8) -> int:
    return max(1, min(cap, os.cpu_count() or 1, n_tasks))


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
    fingerprint: np.ndarray | None = None  # of a 2D image, for near-duplicates (sikd_core.data.duplicates)


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
                if u.channels == 0:
                    u.fingerprint = fingerprint(img)
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


def sampled_stats(manifest: Manifest) -> dict[str, Any]:
    """:func:`dataset_stats` of an evenly spread sample of up to 32 pairs (and 4 volumes): quick, for planning
    (``sikd plan``); ``"sampled"`` says how many units were read. ``manifest.stats`` is left as it was."""
    return _scan(manifest, sample_only=True, stats_of_sample=True)


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


def _scan(manifest: Manifest, *, sample_only: bool, stats_of_sample: bool = False) -> dict[str, Any]:
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
                big = {manifest.rel(manifest.samples[r.indices[0]].label): int(r.values.max(initial=0))  # type: ignore[union-attr]
                       for r in labeled if int(r.values.max(initial=0)) >= MAX_CLASSES}  # type: ignore[union-attr]
                raise DatasetError(
                    f"label value {vmax} is too large: masks are read as label maps of class indices and at most "
                    f"{MAX_CLASSES} classes are supported (a 16-bit mask? store class indices 0..{MAX_CLASSES - 1}, "
                    "or 0/255 for a binary mask)",
                    problems=[f"{f}: values up to {v}" for f, v in list(big.items())[:20]], files=list(big))
            manifest.class_names = ["background"] + [f"class_{i}" for i in range(1, max(vmax, 1) + 1)]
    if manifest.num_classes > MAX_CLASSES:
        raise DatasetError(f"at most {MAX_CLASSES} classes are supported; got {manifest.num_classes}")
    if manifest.in_channels < 1:
        manifest.in_channels = 1
    if sample_only:
        return {**_stats(manifest, results, binary), "sampled": len(results)} if stats_of_sample else {}
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
    flat = [r for r in results if manifest.samples[r.indices[0]].slice_index is None]
    near = near_duplicates([r.fingerprint for r in flat], [manifest.samples[r.indices[0]].group_id for r in flat],
                           [manifest.samples[r.indices[0]].key for r in flat])
    if (w := near_duplicate_warning(near)) is not None:
        warnings.append(w)
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
        "near_duplicates": near,
        "warnings": warnings,
    }
