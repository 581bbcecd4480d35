"""One evaluated case at full resolution, rendered on request: the image with its ground truth and the
chosen models' saved predictions side by side, per-class colours (contours, fills) or an error map.

The evaluation stage keeps the predicted masks of the first seed (``eval/predictions/<method>/<dataset>/
<key>.png``); the image and its ground truth come from the stored dataset. Nothing is rendered upfront.
"""

from __future__ import annotations

import io
import re
from typing import Literal

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from sikd_core.viz import (
    class_contours,
    error_map,
    hstack_panels,
    overlay_contours,
    overlay_fill,
    to_rgb_uint8,
)
from sikd_core.workdir import safe_name
from sikd_service import crud
from sikd_service.config import Settings
from sikd_service.errors import ServiceError
from sikd_service.experiments import require_finished
from sikd_service.ingest import FULL_SIDE, dataset_manifest
from sikd_service.storage import experiment_dir
from sikd_service.tables import Experiment

ViewMode = Literal["contours", "fill", "errors", "overlay"]
#: ``overlay`` mode: the outlines of two predictions over the ground truth's, in one picture (first red, second blue).
PAIR_COLOURS = ((255, 60, 60), (40, 140, 255))
_METHOD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+.-]*")


def render_case(session: Session, settings: Settings, exp: Experiment, *, dataset: str, key: str,
                methods: list[str], mode: ViewMode = "contours") -> bytes:
    """A PNG: the image (contours: with the ground truth's class outlines; fill: filled; errors: the bare
    image), then one panel per method in ``methods`` (contours / fill of its prediction in the class
    colours, or its error map against the ground truth). ``overlay``: one panel, the outlines of the ground
    truth (green) and of up to two methods' predictions (the first red, the second blue) over the image.
    Raises 404 for an unknown dataset, image or method."""
    require_finished(exp, "predictions")
    if mode == "overlay" and len(methods) > len(PAIR_COLOURS):
        raise ServiceError(422, f"mode overlay draws at most {len(PAIR_COLOURS)} methods; got {len(methods)}")
    rows = crud.get_datasets_by_id(session, ids=[lk.dataset_id for lk in exp.dataset_links], with_manifest=True)
    ds = next((d for d in rows.values() if d.name == dataset), None)
    if ds is None:
        known = ", ".join(sorted(d.name for d in rows.values()))
        raise ServiceError(404, f"experiment {exp.id} has no dataset {dataset!r} (its datasets: {known})")
    manifest = dataset_manifest(settings, ds)
    index = next((i for i, s in enumerate(manifest.samples) if s.key == key), None)
    if index is None:
        raise ServiceError(404, f"dataset {dataset!r} has no image {key!r}")
    from sikd_core.data.preprocess import load_original  # PyTorch: not imported at the API's start

    image, gt = load_original(manifest, index)
    k = max(manifest.num_classes, int(gt.max()) + 1, 2)
    folder = experiment_dir(settings, exp.id) / "eval" / "predictions"
    preds = {}
    for m in methods:
        if not _METHOD.fullmatch(m):
            raise ServiceError(422, f"not a method name: {m!r}")
        path = folder / m / safe_name(dataset) / f"{safe_name(key)}.png"
        if not path.is_file():
            raise ServiceError(404, f"no saved prediction of {m!r} for {key!r} in {dataset!r} (the experiment "
                                    "keeps the first seed's predictions when save_predictions is on)")
        preds[m] = np.asarray(Image.open(path)).astype(np.int64)
        if preds[m].shape != gt.shape:
            raise ServiceError(409, f"the saved prediction of {m!r} for {key!r} has shape {preds[m].shape}, "
                                    f"the image {gt.shape}")
    base = to_rgb_uint8(image)
    if mode == "overlay":
        masks = {"ground_truth": gt, **{f"method {i}": p for i, p in enumerate(preds.values())}}
        panels = [overlay_contours(base, masks, colors={f"method {i}": c for i, c in enumerate(PAIR_COLOURS)})]
    elif mode == "errors":
        panels = [base] + [error_map(base, p, gt) for p in preds.values()]
    elif mode == "fill":
        panels = [overlay_fill(base, gt.astype(np.uint8))] + [overlay_fill(base, p.astype(np.uint8))
                                                              for p in preds.values()]
    else:
        panels = [class_contours(base, gt, k)] + [class_contours(base, p, k) for p in preds.values()]
    picture = hstack_panels(panels, gap=max(4, base.shape[1] // 100))
    h, w = picture.shape[:2]
    scale = FULL_SIDE / max(h, w / len(panels))  # a panel at most FULL_SIDE: the usual images whole
    if scale < 1:
        picture = np.asarray(Image.fromarray(picture).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
