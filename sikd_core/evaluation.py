"""Scoring trained models on datasets: predict at the training size, resize to the original, score per case.

Used by :meth:`sikd_core.pipeline.ExperimentRun.evaluate` and by ``sikd eval MODEL.pt DATASET...``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sikd_core.data import Manifest, PreparedData, iter_cases, prepare
from sikd_core.data.preprocess import load_case
from sikd_core.inference import LoadedModel, logits_to_masks
from sikd_core.metrics import case_metrics
from sikd_core.training import Callback

PredictionFn = Callable[[str, int, Manifest, list[int], list[np.ndarray]], None]


@torch.no_grad()
def score_cases(
    models: dict[tuple[str, int], LoadedModel],
    sets: Sequence[tuple[str, Manifest, list[int]]],
    *,
    image_size: tuple[int, int],
    in_channels: int,
    num_classes: int,
    cache_dir: str | Path,
    device: torch.device,
    prepared: dict[str, PreparedData] | None = None,
    on_prediction: PredictionFn | None = None,
    callbacks: Sequence[Callback] = (),
    batch_size: int = 16,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Score models ``{(method, seed): model}`` on ``(split, manifest, sample indices)`` sets.

    Each image is predicted at the training size, its logits are resized to the original size, and the
    case (an image, or a whole volume of stacked slices) is scored against the original labels. Returns
    one record per (model, case) and the distance unit per dataset ("mm" when every case has a spacing).
    A record also holds ``gt_fraction`` (per foreground class, its share of the case's pixels) and
    ``pred_digest`` (a hash of the predicted mask: identical predictions of two models are visible).
    Progress goes to ``callbacks`` (:meth:`Callback.on_eval_progress`), the same list training reports to.
    """
    cases: list[dict[str, Any]] = []
    units: dict[str, str] = {}
    total = sum(len(idx) for _, _, idx in sets)
    done = 0
    for split, manifest, indices in sets:
        data = (prepared or {}).get(manifest.name) or prepare(manifest, image_size, cache_dir, in_channels=in_channels)
        row_of = {m: p for p, m in enumerate(data.indices)}
        case_list = list(iter_cases(manifest, indices))
        units[manifest.name] = dataset_unit(manifest, indices)
        has_mm = units[manifest.name] == "mm"
        for chunk in _chunks(case_list, max_items=32):
            flat = [i for _, members in chunk for i in members]
            x = torch.from_numpy(np.ascontiguousarray(data.images[[row_of[i] for i in flat]])).to(device)
            sizes = [data.orig_shapes[row_of[i]] for i in flat]
            preds: dict[tuple[str, int], list[np.ndarray]] = {}
            for key, lm in models.items():
                logits = torch.cat([lm.model(x[s:s + batch_size].float()) for s in range(0, len(flat), batch_size)])
                preds[key] = logits_to_masks(logits, sizes)
            pos = 0
            for case_id, members in chunk:
                n = len(members)
                _, gt = load_case(manifest, members, in_channels=in_channels)
                s0 = manifest.samples[members[0]]
                volumetric = s0.slice_index is not None
                spacing = None
                if has_mm:
                    spacing = (s0.slice_spacing or 1.0, *s0.spacing) if volumetric else tuple(s0.spacing)
                target = gt if volumetric else gt[0]
                # per foreground class, the fraction of the case's pixels (trivial-predictor Dice, health checks)
                gt_fraction = (np.bincount(np.asarray(target).ravel().astype(np.int64), minlength=num_classes)
                               [1:num_classes] / max(1, np.asarray(target).size)).tolist()
                for (method, seed), masks in preds.items():
                    pred = np.stack(masks[pos:pos + n]) if volumetric else masks[pos]
                    cm = case_metrics(pred, target, num_classes, spacing)
                    cases.append({"method": method, "seed": seed, "dataset": manifest.name, "split": split,
                                  "case": case_id, "keys": [manifest.samples[i].key for i in members],
                                  **cm.as_dict(), "gt_fraction": gt_fraction,
                                  "pred_digest": hashlib.blake2b(np.ascontiguousarray(pred, dtype=np.uint8).tobytes(),
                                                                 digest_size=8).hexdigest()})
                    if on_prediction is not None:
                        on_prediction(method, seed, manifest, members, masks[pos:pos + n])
                pos += n
            done += len(flat)
            for cb in callbacks:
                cb.on_eval_progress(done / total, f"evaluated {done}/{total} images")
    return cases, units


def dataset_unit(manifest: Manifest, indices: Sequence[int]) -> str:
    """The distance unit of a set's scores: "mm" when every sample has a spacing, else "px"."""
    return "mm" if all(manifest.samples[int(i)].spacing is not None for i in indices) else "px"


def _chunks(cases: list[tuple[str, list[int]]], max_items: int) -> list[list[tuple[str, list[int]]]]:
    """Group whole cases into chunks of at most ``max_items`` samples (a larger case gets its own chunk)."""
    out: list[list[tuple[str, list[int]]]] = []
    cur: list[tuple[str, list[int]]] = []
    size = 0
    for case in cases:
        if cur and size + len(case[1]) > max_items:
            out.append(cur)
            cur, size = [], 0
        cur.append(case)
        size += len(case[1])
    if cur:
        out.append(cur)
    return out
