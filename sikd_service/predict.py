"""Prediction on received images with a trained model (CPU, in the API's thread pool).

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
from typing import Protocol

import numpy as np
from PIL import Image

from sikd_core.data import normalize_intensity, read_image
from sikd_core.errors import DatasetError
from sikd_core.inference import LoadedModel, load_bundle, predict_images
from sikd_core.viz import overlay_contours, overlay_fill, to_rgb_uint8
from sikd_service.errors import ServiceError


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


def predict_files(loaded: LoadedModel, files: Sequence[ImageFile]) -> list[Prediction]:
    images, problems = [], []
    for f in files:
        try:
            images.append(read_image(f.path))
        except DatasetError as e:
            problems.append((f.filename, getattr(e, "reason", e.message)))
        except Exception as e:  # noqa: BLE001 - e.g. PIL's decompression-bomb guard
            problems.append((f.filename, f"{type(e).__name__}: {e}"))
    if problems:
        raise ServiceError(422, "cannot read image(s): " + "; ".join(f"{n}: {r}" for n, r in problems),
                       files=[n for n, _ in problems])
    masks = predict_images(loaded, images)
    binary = loaded.num_classes == 2
    out = []
    for f, img, mask in zip(files, images, masks, strict=True):
        shown = to_rgb_uint8(normalize_intensity(img))
        overlay = overlay_contours(overlay_fill(shown, mask), {"prediction": mask})
        fractions = {name: float((mask == k).mean()) for k, name in enumerate(loaded.class_names)}
        out.append(Prediction(
            filename=f.filename, width=int(mask.shape[1]), height=int(mask.shape[0]), class_fractions=fractions,
            mask_values="0/255" if binary else "class index",
            mask_png=_png((mask * 255).astype(np.uint8) if binary else mask), overlay_png=_png(overlay)))
    return out
