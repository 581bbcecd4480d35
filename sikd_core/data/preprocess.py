"""Decode, normalise, resize and cache a dataset as two memory-mapped arrays.

:func:`prepare` reads every file once (a 3D volume once for all its slices), normalises intensities
to [0, 1], resizes to the training size and writes ``images.npy`` (``N,C,H,W`` float16) and
``labels.npy`` (``N,H,W`` uint8) into ``cache_dir/<hash>/``. The hash covers everything that changes
the arrays (file paths, sizes and modification times, size, channels, mask mode, normalisation), so a
second call with the same inputs only memory-maps the cached arrays. Evaluation at the original
resolution uses :func:`load_original` / :func:`iter_cases`, which apply the same normalisation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sikd_core.data import io as dio
from sikd_core.data.manifest import Manifest, Sample
from sikd_core.errors import DatasetError

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
DEFAULT_LOWER = 0.5
DEFAULT_UPPER = 99.5


# --------------------------------------------------------------------------------------------
# per-array operations


def normalize_intensity(x: np.ndarray, lower: float = DEFAULT_LOWER, upper: float = DEFAULT_UPPER) -> np.ndarray:
    """Clip ``x`` to its ``lower``/``upper`` percentiles (all channels jointly), then scale to [0, 1].

    Robust to outliers (hot pixels, burnt-in text, CT air) and independent of the stored bit depth.
    A constant image gives zeros. Returns float32 of the same shape.
    """
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"need 0 <= lower < upper <= 100; got lower={lower}, upper={upper}")
    a = np.asarray(x, dtype=np.float32)
    if a.size == 0:
        return a.copy()
    if not np.all(np.isfinite(a)):
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(v) for v in np.percentile(a, [lower, upper]))
    if not hi > lo:
        return np.zeros_like(a, dtype=np.float32)
    out = np.clip(a, lo, hi)
    out -= lo
    out *= 1.0 / (hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def convert_channels(x: np.ndarray, in_channels: int, source: str = "<array>") -> np.ndarray:
    """Channels-last array with C channels -> ``in_channels`` (grey -> RGB by repetition, RGB -> grey by
    luminance)."""
    c = x.shape[-1]
    if c == in_channels:
        return x
    if c == 1:
        return np.repeat(x, in_channels, axis=-1)
    if c == 3 and in_channels == 1:
        return (x.astype(np.float32, copy=False) @ LUMINANCE)[..., None]
    raise DatasetError(f"{source}: cannot convert {c} channels to {in_channels}", files=[source])


def resize_images(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``B,C,H,W`` float32 -> ``B,C,*size``: bilinear with antialiasing (no aliasing when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    out = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0).numpy()


def resize_labels(y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``...,H,W`` labels -> ``...,*size`` by nearest neighbour at pixel centres (values never mix)."""
    h, w = y.shape[-2:]
    oh, ow = size
    if (h, w) == (oh, ow):
        return y
    rows = np.minimum(((np.arange(oh) + 0.5) * (h / oh)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(ow) + 0.5) * (w / ow)).astype(np.int64), w - 1)
    return y[..., rows[:, None], cols[None, :]]


# --------------------------------------------------------------------------------------------
# decoding one sample / one volume


def _label_or_zeros(manifest: Manifest, s: Sample, shape: tuple[int, ...], volume: bool) -> np.ndarray:
    if s.label is None:
        return np.zeros(shape, dtype=np.int64)
    raw = dio.read_label_volume(s.label) if volume else dio.read_mask_values(s.label)
    lab = dio.apply_mask_mode(raw, manifest.mask_mode, s.label)
    if tuple(lab.shape) != tuple(shape):
        raise DatasetError(
            f"{manifest.rel(s.label)}: mask shape {tuple(lab.shape)} differs from image shape {tuple(shape)}",
            files=[manifest.rel(s.label)],
        )
    if lab.size and int(lab.max()) >= manifest.num_classes:
        raise DatasetError(
            f"{manifest.rel(s.label)}: label value {int(lab.max())} >= number of classes {manifest.num_classes}",
            files=[manifest.rel(s.label)],
        )
    return lab


def _image_channels(manifest: Manifest, s: Sample, in_channels: int, lower: float, upper: float, volume: bool) -> np.ndarray:
    """Read, convert and normalise a sample's image file(s): channels-last float32 in [0, 1].

    One file (grey or RGB) is converted to ``in_channels`` and normalised jointly over its channels;
    several files (one per modality, nnU-Net style) are normalised each on its own, because their
    intensity scales are unrelated.
    """
    parts = []
    for p in s.image:
        try:
            a = dio.read_volume(p)[0][..., None] if volume else dio.read_image(p)
        except dio.UnreadableFileError as exc:
            raise DatasetError(f"cannot read {manifest.rel(p)}: {exc.reason}", files=[manifest.rel(p)]) from exc
        parts.append(a)
    if len({a.shape[:-1] for a in parts}) > 1:
        raise DatasetError(
            f"channel files of case {s.case_id!r} differ in size: "
            + ", ".join(f"{manifest.rel(p)} {a.shape[:-1]}" for p, a in zip(s.image, parts, strict=True)),
            files=[manifest.rel(p) for p in s.image],
        )
    if len(parts) == 1:
        return normalize_intensity(convert_channels(parts[0], in_channels, manifest.rel(s.image[0])), lower, upper)
    img = np.concatenate([normalize_intensity(a, lower, upper) for a in parts], axis=-1)
    return convert_channels(img, in_channels, manifest.rel(s.image[0]))


def _read_2d(manifest: Manifest, s: Sample, in_channels: int, lower: float, upper: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ``H,W,C`` image and ``H,W`` int64 label of a 2D sample at its original size."""
    img = _image_channels(manifest, s, in_channels, lower, upper, volume=False)
    return img, _label_or_zeros(manifest, s, img.shape[:2], volume=False)


def _read_vol(manifest: Manifest, s: Sample, in_channels: int, lower: float, upper: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ``X,Y,Z,C`` volume and ``X,Y,Z`` int64 labels (normalised over the whole volume)."""
    img = _image_channels(manifest, s, in_channels, lower, upper, volume=True)
    if img.ndim != 4:
        raise DatasetError(f"{manifest.rel(s.image[0])}: expected a 3D volume, got shape {img.shape[:-1]}")
    return img, _label_or_zeros(manifest, s, img.shape[:3], volume=True)


# --------------------------------------------------------------------------------------------
# prepare + cache


@dataclass
class PreparedData:
    """Preprocessed samples: ``images`` ``N,C,H,W`` float16 and ``labels`` ``N,H,W`` uint8 (read-only
    memory maps), ``orig_shapes`` (H, W) and ``keys`` per sample, ``indices`` into ``manifest.samples``."""

    images: np.ndarray
    labels: np.ndarray
    orig_shapes: list[tuple[int, int]]
    keys: list[str]
    manifest: Manifest
    indices: list[int]
    spacing: list[tuple[float, float] | None]
    path: Path

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images float32 N,C,H,W, labels int64 N,H,W)`` in memory."""
        return (
            torch.from_numpy(np.asarray(self.images, dtype=np.float32)),
            torch.from_numpy(np.asarray(self.labels, dtype=np.int64)),
        )


def _stamp(path: str, cache: dict[str, list[Any]]) -> list[Any]:
    if path not in cache:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DatasetError(f"cannot read {path}: {exc.strerror}", files=[path]) from exc
        cache[path] = [path, st.st_size, st.st_mtime_ns]
    return cache[path]


def cache_key(
    manifest: Manifest, indices: Sequence[int], image_size: tuple[int, int], in_channels: int,
    lower: float = DEFAULT_LOWER, upper: float = DEFAULT_UPPER,
) -> str:
    """Hash of everything that determines the prepared arrays (files' paths, sizes and mtimes included)."""
    stamps: dict[str, list[Any]] = {}
    samples = []
    for i in indices:
        s = manifest.samples[i]
        samples.append(
            [[_stamp(p, stamps) for p in s.image], _stamp(s.label, stamps) if s.label else None, s.slice_index]
        )
    payload = {
        "version": CACHE_FORMAT_VERSION,
        "image_size": [int(image_size[0]), int(image_size[1])],
        "in_channels": int(in_channels),
        "mask_mode": manifest.mask_mode,
        "normalize": ["percentile", float(lower), float(upper)],
        "samples": samples,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def prepare(
    manifest: Manifest,
    image_size: tuple[int, int],
    cache_dir: str | os.PathLike[str],
    *,
    in_channels: int | None = None,
    indices: Sequence[int] | None = None,
    lower: float = DEFAULT_LOWER,
    upper: float = DEFAULT_UPPER,
    workers: int | None = None,
) -> PreparedData:
    """Preprocess ``manifest.samples[indices]`` (all by default) into a cached :class:`PreparedData`.

    Images: per-image (per-volume for 3D) percentile normalisation, channel conversion to
    ``in_channels`` (default ``manifest.in_channels``), bilinear antialiased resize; labels: nearest
    resize. The cache folder is written under a temporary name and renamed into place, so concurrent
    processes preparing the same data never see a partial cache. Unlabelled samples get all-zero labels.
    """
    if manifest.mask_mode not in ("label", "binary"):
        raise ValueError(f"manifest.mask_mode must be 'label' or 'binary' (load it first); got {manifest.mask_mode!r}")
    if manifest.num_classes > 256:
        raise DatasetError(f"at most 256 classes can be cached; dataset has {manifest.num_classes}")
    size = (int(image_size[0]), int(image_size[1]))
    if min(size) < 1:
        raise ValueError(f"image_size must be positive; got {image_size}")
    channels = int(in_channels or manifest.in_channels)
    if channels < 1:
        raise ValueError(f"in_channels must be >= 1; got {channels}")
    idx = list(range(len(manifest.samples))) if indices is None else [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < len(manifest.samples)]
    if bad:
        raise IndexError(f"sample indices out of range [0, {len(manifest.samples)}): {bad[:10]}")
    if not idx:
        raise DatasetError("nothing to prepare: no sample indices given")

    key = cache_key(manifest, idx, size, channels, lower, upper)
    root = Path(cache_dir)
    final = root / key
    if (final / "meta.json").is_file():
        log.info("using cached preprocessed data %s", final)
        return _open_cached(final, manifest, idx)

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write(manifest, idx, size, channels, lower, upper, tmp, workers)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same cache first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("prepared %d samples at %dx%d into %s", len(idx), size[1], size[0], final)
    return _open_cached(final, manifest, idx)


def _write(
    manifest: Manifest, idx: list[int], size: tuple[int, int], channels: int,
    lower: float, upper: float, out: Path, workers: int | None,
) -> None:
    n = len(idx)
    arrays = {
        "images": np.lib.format.open_memmap(out / "images.npy", mode="w+", dtype=np.float16, shape=(n, channels, *size)),
        "labels": np.lib.format.open_memmap(out / "labels.npy", mode="w+", dtype=np.uint8, shape=(n, *size)),
    }
    orig: list[tuple[int, int] | None] = [None] * n

    # One task per 2D sample, one per volume (all its requested slices); each writes its own rows.
    tasks: dict[tuple[tuple[str, ...], str | None] | int, list[int]] = {}
    for pos, i in enumerate(idx):
        s = manifest.samples[i]
        tasks.setdefault(s.volume_key if s.slice_index is not None else pos, []).append(pos)

    def run(positions: list[int]) -> None:
        s0 = manifest.samples[idx[positions[0]]]
        if s0.slice_index is None:
            img, lab = _read_2d(manifest, s0, channels, lower, upper)
            img_b, lab_b = img.transpose(2, 0, 1)[None], lab[None]
            shape = img.shape[:2]
        else:
            vol, labv = _read_vol(manifest, s0, channels, lower, upper)
            z = [manifest.samples[idx[p]].slice_index for p in positions]
            img_b = vol[:, :, z, :].transpose(2, 3, 0, 1)  # S,C,X,Y
            lab_b = labv[:, :, z].transpose(2, 0, 1)
            shape = vol.shape[:2]
        arrays["images"][positions] = resize_images(np.ascontiguousarray(img_b), size).astype(np.float16)
        arrays["labels"][positions] = resize_labels(lab_b, size).astype(np.uint8)
        for p in positions:
            orig[p] = (int(shape[0]), int(shape[1]))

    groups = list(tasks.values())
    n_vol = sum(1 for g in groups if manifest.samples[idx[g[0]]].slice_index is not None)
    cap = workers or (2 if n_vol > len(groups) // 2 else min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=max(1, min(cap, len(groups))), thread_name_prefix="sikd-prep") as ex:
        for _ in ex.map(run, groups):
            pass
    for arr in arrays.values():
        arr.flush()
    arrays.clear()  # closes the memory maps before the folder is renamed
    meta = {
        "version": CACHE_FORMAT_VERSION,
        "dataset": manifest.name,
        "image_size": list(size),
        "in_channels": channels,
        "mask_mode": manifest.mask_mode,
        "num_classes": manifest.num_classes,
        "normalize": {"method": "percentile", "lower": lower, "upper": upper},
        "indices": idx,
        "keys": [manifest.samples[i].key for i in idx],
        "orig_shapes": [list(o) for o in orig],  # type: ignore[arg-type]
        "spacing": [list(manifest.samples[i].spacing) if manifest.samples[i].spacing else None for i in idx],
    }
    (out / "meta.json").write_text(json.dumps(meta))


def _open_cached(folder: Path, manifest: Manifest, idx: list[int]) -> PreparedData:
    meta = json.loads((folder / "meta.json").read_text())
    images = np.load(folder / "images.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy", mmap_mode="r")
    if images.shape[0] != len(idx) or labels.shape[0] != len(idx) or meta["indices"] != idx:
        raise DatasetError(f"cache {folder} is inconsistent; delete it and prepare again")
    return PreparedData(
        images=images,
        labels=labels,
        orig_shapes=[(int(h), int(w)) for h, w in meta["orig_shapes"]],
        keys=list(meta["keys"]),
        manifest=manifest,
        indices=idx,
        spacing=[tuple(s) if s else None for s in meta["spacing"]],  # type: ignore[misc]
        path=folder,
    )


# --------------------------------------------------------------------------------------------
# original-resolution access for evaluation


def _mtimes(s: Sample) -> tuple[int, ...]:
    return tuple(os.stat(p).st_mtime_ns for p in (*s.image, *([s.label] if s.label else [])))


def load_original(
    manifest: Manifest, index: int, *, in_channels: int | None = None,
    lower: float = DEFAULT_LOWER, upper: float = DEFAULT_UPPER,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``index`` at its original size: normalised ``H,W,C`` float32 image in [0, 1] and ``H,W``
    int64 label (the slice, for volumes; normalised over the whole volume as in :func:`prepare`)."""
    s = manifest.samples[index]
    channels = int(in_channels or manifest.in_channels)
    if s.slice_index is None:
        return _read_2d(manifest, s, channels, lower, upper)
    vol, lab = _volume_for(manifest, s, channels, lower, upper)
    return vol[:, :, s.slice_index, :].copy(), lab[:, :, s.slice_index].copy()


def _volume_for(manifest: Manifest, s: Sample, channels: int, lower: float, upper: float) -> tuple[np.ndarray, np.ndarray]:
    key = Sample(s.image, s.label, s.case_id, s.group_id, s.dataset)  # slice-independent cache key
    return _VolumeCache.get(manifest, key, channels, lower, upper)


class _VolumeCache:
    """Last two decoded volumes (keyed by files, mtimes and settings): slice-by-slice evaluation of
    a volume decodes it once."""

    _entries: list[tuple[tuple[Any, ...], tuple[np.ndarray, np.ndarray]]] = []
    _size = 2
    _lock = threading.Lock()

    @classmethod
    def get(cls, manifest: Manifest, s: Sample, channels: int, lower: float, upper: float) -> tuple[np.ndarray, np.ndarray]:
        k = (s.image, s.label, _mtimes(s), channels, manifest.mask_mode, manifest.num_classes, lower, upper)
        with cls._lock:
            for key, val in cls._entries:
                if key == k:
                    return val
        val = _read_vol(manifest, s, channels, lower, upper)
        with cls._lock:
            cls._entries = ([(k, val)] + [e for e in cls._entries if e[0] != k])[: cls._size]
        return val

    @classmethod
    def clear(cls) -> None:
        with cls._lock:
            cls._entries = []


def iter_cases(manifest: Manifest, indices: Sequence[int] | None = None) -> Iterator[tuple[str, list[int]]]:
    """``(case_id, sample indices)`` per case, cases in order of first appearance, slices in slice order.

    Evaluation of volumes stacks the predictions of one case's slices (e.g. for 3D Dice / HD95).
    """
    idx = range(len(manifest.samples)) if indices is None else indices
    cases: dict[str, list[int]] = {}
    for i in idx:
        cases.setdefault(manifest.samples[int(i)].case_id, []).append(int(i))
    for case, members in cases.items():
        yield case, sorted(members, key=lambda i: (manifest.samples[i].slice_index or 0, i))


def load_case(
    manifest: Manifest, indices: Sequence[int], *, in_channels: int | None = None,
    lower: float = DEFAULT_LOWER, upper: float = DEFAULT_UPPER,
) -> tuple[np.ndarray, np.ndarray]:
    """Stack samples (e.g. one case's slices from :func:`iter_cases`) at original size:
    ``S,H,W,C`` float32 images and ``S,H,W`` int64 labels. All samples must share one size."""
    pairs = [load_original(manifest, i, in_channels=in_channels, lower=lower, upper=upper) for i in indices]
    shapes = {p[0].shape for p in pairs}
    if len(shapes) > 1:
        raise DatasetError(f"samples of different sizes cannot be stacked: {sorted(shapes)}")
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
