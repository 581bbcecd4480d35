"""Class-wise averaged images (Eq. 1 of the SIKD paper).

For every image ``f`` with ground truth ``y``, each pixel of class ``k`` is replaced by the mean of ``f``
over all pixels of class ``k`` in that image, separately for every channel. The result keeps the shape
(the label layout) and the class intensities but no texture; it is the teacher's input.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sikd_core.batch import check_batch


def class_mean_image(images: Tensor, labels: Tensor, num_classes: int, *, check_labels: bool = True,
                     method: str = "auto") -> Tensor:
    """Return the class-wise averaged image of every image in a batch, batched on tensors (no Python loops).

    Args:
        images: ``B,C,H,W`` floating tensor (any device).
        labels: ``B,H,W`` integer tensor of class indices in ``[0, num_classes)`` (same device).
        num_classes: number of classes ``K`` (background included).
        check_labels: verify that every label lies in ``[0, num_classes)``. On a GPU this waits for the
            device (one host synchronisation); callers whose labels are already checked (the trainers,
            which check their data once) pass ``False``.
        method: ``"scatter"`` (scatter-add), ``"matmul"`` (one-hot product) or ``"bincount"``; all give the
            same result. ``"auto"`` picks the fastest measured for the device (scatter on CPU, matmul on CUDA).

    Returns:
        ``B,C,H,W`` tensor of ``images``' dtype where each pixel holds the mean of its image's
        pixels of the same class, per channel. Classes absent from an image do not occur in it, so
        they need no value. Sums are accumulated in float32 (float64 for float64 inputs).
    """
    check_batch(images, labels)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}")
    b, c, h, w = images.shape
    lab = labels.reshape(b, h * w).long()
    if check_labels and lab.numel():
        lo, hi = (int(v) for v in torch.aminmax(lab))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"label values must lie in [0, {num_classes}); found range [{lo}, {hi}]")

    acc = torch.float64 if images.dtype == torch.float64 else torch.float32
    impl = _IMPLS[default_method(images.device) if method == "auto" else method]
    out = impl(images.to(acc).reshape(b, c, h * w), lab, num_classes)
    return out.reshape(b, c, h, w).to(images.dtype).contiguous()


def default_method(device: torch.device) -> str:
    # Measured in bench/speed.py: on CPU the scatter-add is fastest; on a GPU every pixel's atomic add
    # into one of K bins per image contends, and the one-hot matrix product is faster.
    return "matmul" if device.type == "cuda" else "scatter"


def _scatter(pixels: Tensor, lab: Tensor, k: int) -> Tensor:
    """Scatter-add every pixel into its class's bin (per channel), divide by the class's pixel count,
    gather the means back at every pixel. No copies of the image beyond the dtype cast."""
    b, c, n = pixels.shape
    index = lab.unsqueeze(1).expand(b, c, n)  # B,C,HW (a view)
    sums = torch.zeros(b, c, k, dtype=pixels.dtype, device=pixels.device).scatter_add_(2, index, pixels)
    ones = torch.ones(1, 1, 1, dtype=pixels.dtype, device=pixels.device).expand(b, 1, n)
    counts = torch.zeros(b, 1, k, dtype=pixels.dtype, device=pixels.device).scatter_add_(2, lab.unsqueeze(1), ones)
    return (sums / counts.clamp_min(1)).gather(2, index)


def _matmul(pixels: Tensor, lab: Tensor, k: int) -> Tensor:
    """Class sums as one batched product with the one-hot label matrix (``B,C,HW @ B,HW,K``), no atomics.
    Exact float32 products: TF32 is switched off for the product whatever the global setting."""
    b, c, n = pixels.shape
    onehot = torch.zeros(b, k, n, dtype=pixels.dtype, device=pixels.device).scatter_(1, lab.unsqueeze(1), 1.0)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        sums = torch.bmm(pixels, onehot.transpose(1, 2))  # B,C,K
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    means = sums / onehot.sum(2).clamp_min(1).unsqueeze(1)
    return means.gather(2, lab.unsqueeze(1).expand(b, c, n))


def _bincount(pixels: Tensor, lab: Tensor, k: int) -> Tensor:
    """Weighted bincount over ``(image, channel, class)`` bins (shared-memory histograms on a GPU)."""
    b, c, n = pixels.shape
    bins = (torch.arange(b * c, device=pixels.device).view(b, c, 1) * k + lab.unsqueeze(1)).reshape(-1)
    sums = torch.bincount(bins, weights=pixels.reshape(-1), minlength=b * c * k).view(b, c, k).to(pixels.dtype)
    counts = torch.bincount((torch.arange(b, device=pixels.device).view(b, 1) * k + lab).reshape(-1),
                            minlength=b * k).view(b, 1, k)
    return (sums / counts.clamp_min(1)).gather(2, lab.unsqueeze(1).expand(b, c, n))


_IMPLS = {"scatter": _scatter, "matmul": _matmul, "bincount": _bincount}
METHODS = ("auto", *_IMPLS)


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
