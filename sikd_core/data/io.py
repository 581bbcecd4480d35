"""Reading images, masks and NIfTI volumes into numpy arrays, with errors that name the file.

2D files are read with Pillow, volumes with nibabel. Images keep their raw intensities (normalisation
happens in :mod:`sikd_core.data.preprocess`); masks are returned as integer class maps under one of
two conventions (``mask_mode``):

* ``"label"``: pixel values are class indices (0 background, 1, 2, ...).
* ``"binary"``: one foreground class, foreground = value > 127. This is the convention of 0/255 masks
  saved as JPEG (soft edges) and of CVC-ClinicDB, whose masks hold faint "shadow" values 1..127 that are
  background.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sikd_core.errors import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
VOLUME_EXTENSIONS = (".nii.gz", ".nii")
SUPPORTED_EXTENSIONS = IMAGE_EXTENSIONS + VOLUME_EXTENSIONS
BINARY_THRESHOLD = 127
# JPEG stores colour at reduced resolution, so a grey mask saved as RGB JPEG may differ by a few
# levels between channels; lossless formats must match exactly.
_LOSSY_CHANNEL_TOLERANCE = 8
_GREY_MODES = ("L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")


@dataclass
class DecodeLimits:
    """The largest image (pixels) and volume (voxels) this process decodes, checked from the file's header
    before any pixel is decoded, so a small file that claims a huge size costs no memory. The service sets
    them from its settings (:func:`set_decode_limits`); the defaults suit a workstation."""

    max_pixels: int = 64_000_000
    max_voxels: int = 128_000_000


DECODE_LIMITS = DecodeLimits()


def set_decode_limits(*, max_pixels: int | None = None, max_voxels: int | None = None) -> DecodeLimits:
    """Change the process's decode limits; Pillow's own bomb guard is set to the same pixel count."""
    if max_pixels is not None:
        DECODE_LIMITS.max_pixels = int(max_pixels)
    if max_voxels is not None:
        DECODE_LIMITS.max_voxels = int(max_voxels)
    Image.MAX_IMAGE_PIXELS = DECODE_LIMITS.max_pixels
    return DECODE_LIMITS


def _too_large(count: int, limit: int, shape: tuple[int, ...], unit: str) -> str:
    dims = "x".join(str(d) for d in shape)
    return f"{dims} = {count} {unit}, more than the limit of {limit} {unit}"


class UnreadableFileError(DatasetError):
    """A file could not be decoded; ``path`` and ``reason`` let callers rephrase the message."""

    def __init__(self, path: str | os.PathLike[str], reason: str, kind: str = "image"):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(
            f"cannot read {kind} file {self.path}: {reason}", problems=[f"{self.path}: {reason}"], files=[self.path]
        )


def file_extension(path: str | os.PathLike[str]) -> str:
    """Lower-case extension, treating ``.nii.gz`` as one extension."""
    name = os.path.basename(os.fspath(path)).lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return os.path.splitext(name)[1]


def strip_extension(name: str) -> str:
    """File name without its extension (``a.nii.gz`` -> ``a``)."""
    if name.lower().endswith(".nii.gz"):
        return name[: -len(".nii.gz")]
    return os.path.splitext(name)[0]


def is_volume_file(path: str | os.PathLike[str]) -> bool:
    """True for NIfTI files (``.nii`` / ``.nii.gz``)."""
    return file_extension(path) in VOLUME_EXTENSIONS


def is_supported_file(path: str | os.PathLike[str]) -> bool:
    """True for any image or volume extension this module can read."""
    return file_extension(path) in SUPPORTED_EXTENSIONS


def _open_header(path: str | os.PathLike[str], kind: str) -> Image.Image:
    """Open a 2D image lazily (header only) and refuse it if it claims more pixels than the limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:  # Pillow's guard (twice MAX_IMAGE_PIXELS) fired in open()
        m = re.search(r"\((\d+) pixels\)", str(exc))
        claimed = f"{m.group(1)} pixels" if m else "its size"
        raise UnreadableFileError(path, f"the image is too large to decode: {claimed}, more than the limit of "
                                  f"{DECODE_LIMITS.max_pixels} pixels", kind) from None
    w, h = im.size
    if w * h > DECODE_LIMITS.max_pixels:
        im.close()
        raise UnreadableFileError(path, "the image is too large to decode: "
                                  + _too_large(w * h, DECODE_LIMITS.max_pixels, (w, h), "pixels"), kind)
    return im


def _open_2d(path: str | os.PathLike[str], kind: str) -> Image.Image:
    """Open (size checked from the header first) and fully decode the first frame of a 2D image file."""
    try:
        im = _open_header(path, kind)
        im.seek(0)
        im.load()
    except UnreadableFileError:
        raise
    except FileNotFoundError as exc:
        raise UnreadableFileError(path, "file not found", kind) from exc
    except UnidentifiedImageError as exc:
        raise UnreadableFileError(path, "not a recognised image file", kind) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated / corrupt data
        raise UnreadableFileError(path, f"corrupt or truncated image ({exc})", kind) from exc
    return im


def image_pixels(path: str | os.PathLike[str]) -> int:
    """Width x height of a 2D image (its first frame) or a 2D NIfTI file, from the header only: no pixel is
    decoded. Refused like :func:`read_image` (``UnreadableFileError``) when unreadable or over the limit."""
    if is_volume_file(path):
        shape, _ = volume_header(path)
        if len(shape) != 2:
            raise UnreadableFileError(path, f"is a {len(shape)}D volume, not a 2D image")
        return int(shape[0]) * int(shape[1])
    try:
        im = _open_header(path, "image")
    except UnreadableFileError:
        raise
    except FileNotFoundError as exc:
        raise UnreadableFileError(path, "file not found") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableFileError(path, "not a recognised image file") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UnreadableFileError(path, f"corrupt or truncated image ({exc})") from exc
    with im:
        w, h = im.size
    return int(w) * int(h)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 2D image as float32 ``H,W,C`` raw intensities.

    Grey -> C=1, RGB -> C=3; alpha is dropped (RGBA, LA), palette images become RGB, 16-bit and float
    images keep their values. GIF/TIFF: first frame. A 2D NIfTI file is accepted as C=1.
    """
    if is_volume_file(path):
        vol, _ = read_volume(path)
        if vol.ndim != 2:
            raise UnreadableFileError(path, f"is a {vol.ndim}D volume, not a 2D image")
        return vol.astype(np.float32)[:, :, None]
    im = _open_2d(path, "image")
    mode = im.mode
    if mode == "1":
        arr = np.asarray(im.convert("L"))[:, :, None]
    elif mode in _GREY_MODES:
        arr = np.asarray(im)[:, :, None]
    elif mode == "LA":
        arr = np.asarray(im)[:, :, :1]
    elif mode == "RGB":
        arr = np.asarray(im)
    elif mode == "RGBA":
        arr = np.asarray(im)[:, :, :3]
    else:  # P, PA, CMYK, YCbCr, LAB, HSV, RGBX, ...
        arr = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(arr, dtype=np.float32)


def read_mask_values(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 2D mask as its raw integer values ``H,W`` (before a mask mode is applied).

    RGB masks must have identical channels (channel 0 is used); palette masks give their palette
    indices (the usual convention for label maps); 1-bit masks give 0/255.
    """
    if is_volume_file(path):
        vol = read_label_volume(path)
        if vol.ndim != 2:
            raise UnreadableFileError(path, f"is a {vol.ndim}D volume, not a 2D mask", "mask")
        return vol
    im = _open_2d(path, "mask")
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("P", "L", "I", "I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im)
    if mode == "F":
        return _integer_labels(np.asarray(im), path)
    if mode in ("LA", "PA"):
        return np.ascontiguousarray(np.asarray(im)[:, :, 0])
    rgb = np.asarray(im if mode in ("RGB", "RGBA") else im.convert("RGB"))[:, :, :3]
    tol = _LOSSY_CHANNEL_TOLERANCE if file_extension(path) in (".jpg", ".jpeg") else 0
    c0 = rgb[:, :, 0]
    diff = max(_max_abs_diff(rgb[:, :, 1], c0), _max_abs_diff(rgb[:, :, 2], c0))
    if diff > tol:
        raise UnreadableFileError(
            path,
            "colour-coded RGB masks are not supported; store a grey label map "
            f"(its channels differ by up to {diff} levels)",
            "mask",
        )
    return np.ascontiguousarray(c0)


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) if a.size else 0


def _integer_labels(arr: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """Float label data -> int64, refusing values that are not whole numbers."""
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return arr
    if not np.all(np.isfinite(arr)):
        raise UnreadableFileError(path, "label data contains NaN or infinite values", "mask")
    rounded = np.rint(arr)
    if np.abs(arr - rounded).max(initial=0.0) > 1e-3:
        raise UnreadableFileError(path, "label values are not whole numbers", "mask")
    return rounded.astype(np.int64)


def apply_mask_mode(values: np.ndarray, mask_mode: str, path: str | os.PathLike[str] = "<array>") -> np.ndarray:
    """Raw mask values -> int64 class indices under ``mask_mode`` (``"label"`` or ``"binary"``)."""
    if mask_mode == "binary":
        return (values > BINARY_THRESHOLD).astype(np.int64)
    if mask_mode == "label":
        out = values.astype(np.int64, copy=False)
        if out.size and out.min() < 0:
            raise UnreadableFileError(path, f"negative label value {int(out.min())}", "mask")
        return out
    raise ValueError(f"mask_mode must be 'label' or 'binary'; got {mask_mode!r}")


def read_mask(path: str | os.PathLike[str], mask_mode: str) -> np.ndarray:
    """Read a 2D mask as int64 ``H,W`` class indices under ``mask_mode`` (see module docstring)."""
    return apply_mask_mode(read_mask_values(path), mask_mode, path)


def _nifti(path: str | os.PathLike[str]):  # -> nibabel image
    import nibabel as nib

    try:
        return nib.load(os.fspath(path))
    except FileNotFoundError as exc:
        raise UnreadableFileError(path, "file not found", "volume") from exc
    except Exception as exc:  # nibabel raises assorted ImageFileError / OSError / EOFError types
        raise UnreadableFileError(path, f"not a readable NIfTI file ({exc})", "volume") from exc


def _squeezed_shape(shape: tuple[int, ...], path: str | os.PathLike[str]) -> tuple[int, ...]:
    """Drop trailing singleton axes beyond the third; refuse 4D+ data."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise UnreadableFileError(path, f"{len(shape)}D volumes {shape} are not supported (expect 2D or 3D)", "volume")
    if len(shape) < 2:
        raise UnreadableFileError(path, f"expected a 2D or 3D volume, got shape {shape}", "volume")
    return shape


def _checked_shape(img, path: str | os.PathLike[str]) -> tuple[int, ...]:  # noqa: ANN001 - a nibabel image
    """The header's shape, refused if it holds more voxels than the limit (before any data is read)."""
    shape = _squeezed_shape(img.shape, path)
    count = int(np.prod(shape, dtype=object))
    if count > DECODE_LIMITS.max_voxels:
        raise UnreadableFileError(path, "the volume is too large to decode: "
                                  + _too_large(count, DECODE_LIMITS.max_voxels, shape, "voxels"), "volume")
    return shape


def volume_header(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Shape and voxel spacing (mm) of a NIfTI file, from its header only (no voxel data read)."""
    img = _nifti(path)
    shape = _checked_shape(img, path)
    zooms = tuple(float(z) for z in img.header.get_zooms()[: len(shape)])
    return shape, zooms


def _volume_data(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[float, ...]]:
    img = _nifti(path)
    shape = _checked_shape(img, path)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated gzip, short file...
        raise UnreadableFileError(path, f"corrupt NIfTI data ({exc})", "volume") from exc
    zooms = tuple(float(z) for z in img.header.get_zooms()[: len(shape)])
    return np.asarray(data).reshape(shape), zooms


def read_volume(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a NIfTI image as float32 (``X,Y,Z`` or ``X,Y``) plus its voxel spacing in mm.

    Axes are kept in file order (no reorientation); slices are taken along the last axis.
    """
    data, zooms = _volume_data(path)
    return data.astype(np.float32, copy=False), zooms


def read_label_volume(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a NIfTI label volume as integers (float storage is accepted when values are whole)."""
    data, _ = _volume_data(path)
    return _integer_labels(data, path)


def detect_mask_mode(values_per_mask: Mapping[str, np.ndarray | list[int] | set[int]]) -> str:
    """Decide ``"binary"`` or ``"label"`` from the unique values of every mask.

    A mask whose maximum is 128..255 is binary-style (0/255 with soft JPEG edges, or CVC "shadows" that
    are background); one with maximum 1..127, or above 255 (16-bit label data), is a label map; all-zero masks fit both. Mixing the
    first two kinds raises a :class:`DatasetError` that lists examples of each. A dataset with no
    foreground at all is treated as binary (background + one foreground class).
    """
    binary_style: list[tuple[str, int]] = []
    label_style: list[tuple[str, int]] = []
    for name, values in values_per_mask.items():
        arr = np.asarray(list(values) if isinstance(values, set) else values)
        if arr.size == 0:
            continue
        vmax = int(arr.max())
        if vmax > 255:  # beyond 8 bits: never a 0/255 mask, so class indices (checked against the class limit)
            label_style.append((name, vmax))
        elif vmax > BINARY_THRESHOLD:
            binary_style.append((name, vmax))
        elif vmax > 0:
            label_style.append((name, vmax))
    if binary_style and label_style:
        ex_b = [f"{n} (max value {v}: 0/255-style binary mask)" for n, v in sorted(binary_style)[:5]]
        ex_l = [f"{n} (max value {v}: label map of class indices)" for n, v in sorted(label_style)[:5]]
        raise DatasetError(
            f"inconsistent class values: {len(binary_style)} mask(s) look like 0/255 binary masks "
            f"(max > {BINARY_THRESHOLD}) and {len(label_style)} look like label maps (max 1..{BINARY_THRESHOLD}); "
            "store all masks the same way, or choose mask_mode 'binary' or 'label' explicitly",
            problems=ex_b + ex_l,
            files=[n for n, _ in sorted(binary_style)[:5]] + [n for n, _ in sorted(label_style)[:5]],
        )
    if label_style:
        return "label"
    return "binary"


def image_size_of(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) of a 2D image from its header, without decoding pixels."""
    try:
        with _open_header(path, "image") as im:
            w, h = im.size
    except (OSError, UnidentifiedImageError) as exc:
        raise UnreadableFileError(path, "not a recognised image file") from exc
    return h, w


def list_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Files under ``folder`` (recursively), skipping hidden files, ``__MACOSX`` and ``Thumbs.db``."""
    out: list[Path] = []
    base = Path(folder)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not _is_junk(d))
        for f in sorted(filenames):
            if not _is_junk(f):
                out.append(Path(dirpath) / f)
    return out


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX" or name.lower() in ("thumbs.db", "desktop.ini")
