"""Class-wise averaged images (Eq. 1 of the SIKD paper).

For every image ``f`` with ground truth ``y``, each pixel of class ``k`` is replaced by the mean of ``f``
over all pixels of class ``k`` in that image, separately for every channel. The result keeps the shape
(the label layout) and the class intensities but no texture; it is the teacher's input.
"""

from __future__ import annotations

import torch
from torch import Tensor


def class_mean_image(images: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Return the class-wise averaged image of every image in a batch, in one pass (scatter-add + gather).

    Args:
        images: ``B,C,H,W`` floating tensor (any device).
        labels: ``B,H,W`` integer tensor of class indices in ``[0, num_classes)`` (same device).
        num_classes: number of classes ``K`` (background included).

    Returns:
        ``B,C,H,W`` tensor of ``images``' dtype where each pixel holds the mean of its image's
        pixels of the same class, per channel. Classes absent from an image do not occur in it, so
        they need no value. Sums are accumulated in float32 (float64 for float64 inputs).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be B,C,H,W; got shape {tuple(images.shape)}")
    if labels.ndim != 3:
        raise ValueError(f"labels must be B,H,W; got shape {tuple(labels.shape)}")
    b, c, h, w = images.shape
    if labels.shape != (b, h, w):
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match images {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating tensor; got {images.dtype}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor; got {labels.dtype}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}")
    if labels.device != images.device:
        raise ValueError(f"images are on {images.device} but labels on {labels.device}")
    lab = labels.reshape(b, h * w).long()
    if lab.numel():
        lo, hi = (int(v) for v in torch.aminmax(lab))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"label values must lie in [0, {num_classes}); found range [{lo}, {hi}]")

    acc = torch.float64 if images.dtype == torch.float64 else torch.float32
    # Per image: scatter-add every pixel into its class's bin (per channel), divide by the class's pixel
    # count, then gather the means back at every pixel. No copies of the image beyond the dtype cast.
    index = lab.unsqueeze(1).expand(b, c, h * w)  # B,C,HW (a view)
    pixels = images.to(acc).reshape(b, c, h * w)
    sums = torch.zeros(b, c, num_classes, dtype=acc, device=images.device).scatter_add_(2, index, pixels)
    ones = torch.ones(1, 1, 1, dtype=acc, device=images.device).expand(b, 1, h * w)
    counts = torch.zeros(b, 1, num_classes, dtype=acc, device=images.device).scatter_add_(2, lab.unsqueeze(1), ones)
    means = sums / counts.clamp_min(1)
    out = means.gather(2, index).reshape(b, c, h, w)
    return out.to(images.dtype).contiguous()


def label_map_image(labels: Tensor, num_classes: int, channels: int) -> Tensor:
    """The paper's "label map" teacher-input ablation: class index scaled to [0, 1], repeated over channels.

    Args:
        labels: ``B,H,W`` integer class indices.
        num_classes: ``K``; values are divided by ``K - 1`` (binary tasks give 0/1).
        channels: number of image channels the network expects.

    Returns:
        ``B,channels,H,W`` float32 tensor.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be B,H,W; got shape {tuple(labels.shape)}")
    scale = float(max(num_classes - 1, 1))
    return (labels.float() / scale).unsqueeze(1).expand(-1, channels, -1, -1).contiguous()
