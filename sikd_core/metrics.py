"""Dice, IoU, HD95 and HD per class, computed with MONAI's metric functions.

Conventions (identical everywhere in SIKD Studio):

* Metrics are per foreground class (class 0, background, is excluded) and per *case*: one 2D image, or
  one whole 3D volume when a dataset is volumetric. Predictions are brought back to each case's
  original size before scoring.
* Units: HD95/HD are in pixels, or in millimetres when the case's spacing is known.
* Edge cases, for a class in one case:

  ==========================  ======  ======  =====================================
  ground truth / prediction   Dice    IoU     HD95 and HD
  ==========================  ======  ======  =====================================
  both empty                  1.0     1.0     0.0
  GT empty, prediction not    0.0     0.0     the case's diagonal (largest distance)
  GT present, prediction not  0.0     0.0     the case's diagonal (largest distance)
  ==========================  ======  ======  =====================================

  The diagonal (in the same units) is the worst possible distance, so a missed or hallucinated
  structure is penalised instead of silently dropped, and means stay finite.
* Averages over classes are plain means of these per-class values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sikd_core.report import METRIC_NAMES


@dataclass
class CaseMetrics:
    """Per-foreground-class scores of one case (lists of length ``K - 1``)."""

    dice: list[float]
    iou: list[float]
    hd95: list[float]
    hd: list[float]

    def mean(self, name: str) -> float:
        values = getattr(self, name)
        return float(np.mean(values)) if values else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            **{n: self.mean(n) for n in METRIC_NAMES},
            "per_class": {n: list(getattr(self, n)) for n in METRIC_NAMES},
        }


def _one_hot(x: Tensor, num_classes: int) -> Tensor:
    """``*spatial`` int -> ``1,K,*spatial`` float one-hot."""
    oh = F.one_hot(x.long(), num_classes)  # *spatial, K
    return oh.movedim(-1, 0).unsqueeze(0).float()


def case_metrics(
    pred: np.ndarray | Tensor,
    target: np.ndarray | Tensor,
    num_classes: int,
    spacing: Sequence[float] | None = None,
) -> CaseMetrics:
    """Score one case.

    Args:
        pred: predicted class indices, ``H,W`` (or ``D,H,W`` for a volume).
        target: ground-truth class indices, same shape.
        num_classes: ``K`` including background.
        spacing: physical size of a pixel/voxel per axis (mm); ``None`` means pixels.
    """
    from monai.metrics import compute_dice, compute_iou  # see batch_dice

    pred_t = torch.as_tensor(np.asarray(pred) if not isinstance(pred, Tensor) else pred)
    target_t = torch.as_tensor(np.asarray(target) if not isinstance(target, Tensor) else target)
    if pred_t.shape != target_t.shape:
        raise ValueError(f"prediction {tuple(pred_t.shape)} and ground truth {tuple(target_t.shape)} differ")
    if pred_t.ndim not in (2, 3):
        raise ValueError(f"a case must be 2D or 3D; got shape {tuple(pred_t.shape)}")
    if num_classes < 2:
        raise ValueError("num_classes must be >= 2 (background + at least one class)")
    for name, t in (("prediction", pred_t), ("ground truth", target_t)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{name} holds values outside [0, {num_classes})")
    if spacing is not None:
        spacing = [float(s) for s in spacing]
        if len(spacing) != pred_t.ndim:
            raise ValueError(f"spacing {spacing} does not match a {pred_t.ndim}D case")
    unit = spacing if spacing is not None else [1.0] * pred_t.ndim
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(pred_t.shape, unit, strict=True)))

    p, g = _one_hot(pred_t, num_classes), _one_hot(target_t, num_classes)
    dice = compute_dice(p, g, include_background=False, ignore_empty=False)[0].tolist()
    iou = compute_iou(p, g, include_background=False, ignore_empty=False)[0].tolist()
    p_any = p[0, 1:].flatten(1).any(1).tolist()
    g_any = g[0, 1:].flatten(1).any(1).tolist()
    hd95, hd = [], []
    for c in range(num_classes - 1):
        if p_any[c] and g_any[c]:
            h95, h = hausdorff_pair(p[0, c + 1], g[0, c + 1], spacing)
            hd95.append(h95)
            hd.append(h)
        elif not p_any[c] and not g_any[c]:
            hd95.append(0.0)
            hd.append(0.0)
        else:
            hd95.append(diagonal)
            hd.append(diagonal)
    return CaseMetrics(dice=[float(v) for v in dice], iou=[float(v) for v in iou], hd95=hd95, hd=hd)


def hausdorff_pair(pred: Tensor, target: Tensor, spacing: Sequence[float] | None) -> tuple[float, float]:
    """The 95th-percentile and the maximum symmetric Hausdorff distance of two binary masks, from ONE pass over
    their surface distances: MONAI's ``compute_hausdorff_distance`` (``percentile=95``, then without) computes
    the edges and distance transforms twice; the values are the same (its own edge and distance functions,
    its percentile rule: ``torch.quantile``, the larger direction)."""
    from monai.metrics.utils import get_edge_surface_distance, prepare_spacing

    sp = prepare_spacing(spacing=spacing, batch_size=1, img_dim=pred.ndim)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's own deprecation notices
        _, distances, _ = get_edge_surface_distance(pred.float(), target.float(), distance_metric="euclidean",
                                                    spacing=sp, symmetric=True, class_index=0)
    if len(distances) == 0:
        return 0.0, 0.0

    def both(q: float | None) -> float:
        per = [torch.tensor(float("nan")) if d.shape == (0,) else d.max() if q is None
               else torch.quantile(d, q / 100) for d in distances]
        return float(torch.max(torch.stack(per)).item())

    return both(95), both(None)


def batch_dice(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Per-sample, per-foreground-class Dice of a batch at training resolution (for validation).

    Args:
        pred: ``B,H,W`` predicted class indices.
        target: ``B,H,W`` ground-truth class indices.

    Returns:
        ``B,K-1`` tensor, with the conventions above (both empty -> 1).
    """
    from monai.metrics import compute_dice  # monai costs ~2 s to import: only processes that score pay it

    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be B,H,W")
    p = F.one_hot(pred.long(), num_classes).permute(0, 3, 1, 2).float()
    g = F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).float()
    return compute_dice(p, g, include_background=False, ignore_empty=False)
