"""The contract of an image batch with its label maps, checked where batches enter (class mean, augmentation)."""

from __future__ import annotations

import torch
from torch import Tensor


def check_batch(images: Tensor, labels: Tensor) -> None:
    """Raise a clear error unless ``images`` is ``B,C,H,W`` floating and ``labels`` ``B,H,W`` integer class
    indices on the same device."""
    if images.ndim != 4:
        raise ValueError(f"images must be B,C,H,W; got shape {tuple(images.shape)}")
    if labels.ndim != 3:
        raise ValueError(f"labels must be B,H,W; got shape {tuple(labels.shape)}")
    b, _, h, w = images.shape
    if labels.shape != (b, h, w):
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match images {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating tensor; got {images.dtype}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor; got {labels.dtype}")
    if labels.device != images.device:
        raise ValueError(f"images are on {images.device} but labels on {labels.device}")
