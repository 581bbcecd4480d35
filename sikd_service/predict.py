"""Prediction on received images with a trained model (CPU, in the API's thread pool).

The images of a request lie on disk (streamed there by the upload). Every header is read first, so a
request is refused before any pixel is decoded when it holds more than the per-request pixel budget
(``SIKD_MAX_PREDICT_PIXELS``, 413); then the images are decoded, segmented and rendered one at a time,
so the API's memory is bounded by one image, not by the request.

Loaded models are kept in a small LRU (keyed by file and modification time), so repeated requests to
the same model do not reload it.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from sikd_core.data.io import image_pixels, read_image
from sikd_core.errors import DatasetError
from sikd_core.viz import overlay_contours, overlay_fill, to_rgb_uint8
from sikd_service.errors import ServiceError

if TYPE_CHECKING:  # PyTorch: imported on the first prediction, not at the API's start
    from sikd_core.inference import LoadedModel


class ImageFile(Protocol):
    """An image received for prediction: its name as sent and where it lies on disk."""

    filename: str
    path: Path


@dataclass(frozen=True)
class Prediction:
    """One image's segmentation: the mask and an overlay as base64 PNGs, and each class's area fraction."""

    filename: str
    width: int
    height: int
    class_fractions: dict[str, float]
    mask_values: str
    mask_png: str
    overlay_png: str


class ModelCache:
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> LoadedModel:
        key = (str(path), path.stat().st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        from sikd_core.inference import load_bundle

        loaded = load_bundle(path, device="cpu")
        with self._lock:
            self._items[key] = loaded
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return loaded

    def __len__(self) -> int:
        return len(self._items)


def _png(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _problem(e: Exception) -> str:
    if isinstance(e, DatasetError):
        return str(getattr(e, "reason", e.message))
    return f"{type(e).__name__}: {e}"  # e.g. PIL's decompression-bomb guard


def _refuse_unreadable(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise ServiceError(422, "cannot read image(s): " + "; ".join(f"{n}: {r}" for n, r in problems),
                           files=[n for n, _ in problems])


def check_pixel_budget(files: Sequence[ImageFile], max_pixels: int) -> int:
    """The request's pixel count, read from every file's header (nothing decoded): 422 naming the files
    that cannot be read (or exceed the per-image limit), 413 when the sum is over ``max_pixels``."""
    sizes, problems = [], []
    for f in files:
        try:
            sizes.append((f.filename, image_pixels(f.path)))
        except Exception as e:  # noqa: BLE001 - reported per file
            problems.append((f.filename, _problem(e)))
    _refuse_unreadable(problems)
    total = sum(n for _, n in sizes)
    if total > max_pixels:
        largest = ", ".join(f"{name}: {n}" for name, n in sorted(sizes, key=lambda x: -x[1])[:3])
        raise ServiceError(413, f"the {len(sizes)} image(s) hold {total} pixels, more than the per-request budget of "
                                f"{max_pixels} pixels (SIKD_MAX_PREDICT_PIXELS); largest: {largest}. Send fewer or "
                                f"smaller images per request.", files=[name for name, _ in sizes])
    return total


def _render(loaded: LoadedModel, filename: str, img: np.ndarray) -> Prediction:
    from sikd_core.data.preprocess import normalize_intensity
    from sikd_core.inference import predict_images

    mask = predict_images(loaded, [img])[0]
    shown = to_rgb_uint8(normalize_intensity(img))
    del img  # the caller drops its reference too: only uint8 pictures of this image remain
    fractions = {name: float(np.count_nonzero(mask == k)) / max(1, mask.size)
                 for k, name in enumerate(loaded.class_names)}
    overlay = overlay_contours(overlay_fill(shown, mask), {"prediction": mask})
    del shown
    binary = loaded.num_classes == 2
    return Prediction(
        filename=filename, width=int(mask.shape[1]), height=int(mask.shape[0]), class_fractions=fractions,
        mask_values="0/255" if binary else "class index",
        mask_png=_png((mask * 255).astype(np.uint8) if binary else mask), overlay_png=_png(overlay))


def predict_files(loaded: LoadedModel, files: Sequence[ImageFile], *, max_pixels: int) -> list[Prediction]:
    """Segment ``files`` within the pixel budget (see the module docstring), one image at a time."""
    check_pixel_budget(files, max_pixels)
    out, problems = [], []
    for f in files:
        try:
            img = read_image(f.path)
        except Exception as e:  # noqa: BLE001 - a body that fails after a valid header (truncated data)
            problems.append((f.filename, _problem(e)))
            continue
        if not problems:  # once one image is unreadable the request fails: only the others' reading goes on
            out.append(_render(loaded, f.filename, img))
        del img
    _refuse_unreadable(problems)
    return out
