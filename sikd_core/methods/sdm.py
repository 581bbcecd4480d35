"""``sdm``: the paper's "U-Net w/ SDM" row, after Xue et al., "Shape-aware organ segmentation by
predicting signed distance maps", AAAI 2020 (arXiv:1912.03849).

An auxiliary head (a 1x1 conv on the penultimate features, then tanh, as Xue et al.'s SDM output) regresses
the normalised signed distance map of every foreground class, trained with the segmentation loss:
``L = L_seg + lambda * (L1(sdm, sdm*) + L_product(sdm, sdm*))`` with Xue et al.'s product loss
``-(p g) / (p g + p^2 + g^2)`` and ``lambda = 1``. Inference uses the segmentation head only.

Targets follow the normalisation of the widely used public SDF code of Ma et al. (SegWithDistMap,
``compute_sdf``; Xue et al. released none): negative inside, positive outside,
``sdf = d_out / max(d_out) - d_in / max(d_in)`` per image and class, 0 on the object's inner boundary,
so values lie in [-1, 1]. Deviation: a class absent from an image gets +1 everywhere (all "outside";
Ma's code leaves 0, which would read as "boundary everywhere"), a class covering the whole image -1.
Distances are exact Euclidean distance transforms, computed batched on tensors (two separable passes
of a squared-distance lower envelope, Felzenszwalb & Huttenlocher's decomposition done by brute-force
minimum), so targets cost little next to a training step (``bench/speed.py`` measures it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sikd_core.methods.base import MethodTrainer, StepOutput, TrainingMethod
from sikd_core.methods.registry import register_method

#: Upper bound on the elements of one brute-force pass (memory per chunk ~ 4 bytes x this).
_CHUNK_ELEMENTS = 1 << 24


def _min_plus_pass(f: Tensor) -> Tensor:
    """``out[n, i, j] = min_k (j - k)^2 + f[n, i, k]`` along the last axis (``f`` ``N,H,W``, inf = no site)."""
    n, h, w = f.shape
    idx = torch.arange(w, device=f.device, dtype=f.dtype)
    cost = (idx[:, None] - idx[None, :]) ** 2  # W(j), W(k)
    rows = max(1, _CHUNK_ELEMENTS // (w * w))
    flat = f.reshape(n * h, w)
    out = torch.empty_like(flat)
    for s in range(0, flat.shape[0], rows):
        out[s:s + rows] = (flat[s:s + rows, None, :] + cost[None]).amin(-1)
    return out.view(n, h, w)


def squared_distance_to(sites: Tensor) -> Tensor:
    """Exact squared Euclidean distance from every pixel to the nearest ``True`` pixel of ``sites``
    (``N,H,W`` bool) -> ``N,H,W`` float32; ``inf`` where an image has no site."""
    if sites.ndim != 3:
        raise ValueError(f"sites must be N,H,W; got {tuple(sites.shape)}")
    f = torch.where(sites, 0.0, float("inf")).float()
    g = _min_plus_pass(f)  # along W
    return _min_plus_pass(g.transpose(1, 2).contiguous()).transpose(1, 2)  # along H


def signed_distance_maps(labels: Tensor, num_classes: int) -> Tensor:
    """Normalised signed distance maps of the foreground classes.

    Args:
        labels: ``B,H,W`` integer label maps in ``[0, num_classes)``.
    Returns:
        ``B,K-1,H,W`` float32 in [-1, 1]: negative inside class k, positive outside, 0 on its inner boundary.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be B,H,W; got {tuple(labels.shape)}")
    if num_classes < 2:
        raise ValueError("signed distance maps need at least one foreground class (num_classes >= 2)")
    b, h, w = labels.shape
    fg = torch.arange(1, num_classes, device=labels.device)
    mask = (labels[:, None] == fg[:, None, None]).reshape(-1, h, w)  # B*(K-1), H, W
    d_in = squared_distance_to(~mask).sqrt()  # inside pixels: distance to the nearest outside pixel
    d_out = squared_distance_to(mask).sqrt()  # outside pixels: distance to the nearest inside pixel
    d_in = torch.where(mask, d_in, 0.0)
    d_out = torch.where(mask, 0.0, d_out)
    has_in, has_out = mask.flatten(1).any(1), (~mask).flatten(1).any(1)
    d_in = torch.nan_to_num(d_in, posinf=0.0)  # a full mask has no outside: fixed below
    d_out = torch.nan_to_num(d_out, posinf=0.0)
    max_in = d_in.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]
    max_out = d_out.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]
    sdf = d_out / max_out - d_in / max_in
    sdf = torch.where(mask & (d_in <= 1.0), 0.0, sdf)  # inner boundary (4-adjacent to the outside)
    sdf = torch.where((~has_in)[:, None, None], 1.0, sdf)
    sdf = torch.where((~has_out)[:, None, None], -1.0, sdf)
    return sdf.view(b, num_classes - 1, h, w)


def product_loss(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Xue et al.'s product loss ``mean(-(p g) / (p g + p^2 + g^2))``: rewards the right sign."""
    pg = pred * target
    return (-pg / (pg + pred.square() + target.square() + eps)).mean()


@register_method(
    "sdm", "U-Net w/ SDM: an auxiliary tanh head regresses each class's normalised signed distance map "
    "(L1 + product loss) next to the segmentation loss.",
    "Xue et al., Shape-aware organ segmentation by predicting signed distance maps, AAAI 2020")
class SDMMethod(TrainingMethod):
    """The signed-distance-map auxiliary head; ``weight`` = lambda of the SDM loss (Xue et al.: 1)."""

    name = "sdm"

    def __init__(self, model: nn.Module, *, in_channels: int, num_classes: int, weight: float = 1.0):
        super().__init__()
        if num_classes < 2:
            raise ValueError("sdm needs at least one foreground class")
        width = _feature_width(model, in_channels)
        self.head = nn.Conv2d(width, num_classes - 1, 1)
        self.num_classes = num_classes
        self.weight = weight

    def step(self, trainer: MethodTrainer, images: Tensor, labels: Tensor) -> StepOutput:
        logits, feats = trainer.model.forward_with_features(trainer.model_input(images, labels))
        seg = trainer.loss_fn(logits, labels)
        pred = torch.tanh(self.head(feats).float())
        with torch.no_grad():
            target = signed_distance_maps(labels, self.num_classes)
        sdm = F.l1_loss(pred, target) + product_loss(pred, target)
        return StepOutput(seg + self.weight * sdm, feats, {"seg_loss": seg, "sdm_loss": sdm})


def _feature_width(model: nn.Module, in_channels: int) -> int:
    """Channels of the penultimate feature map (probed once on a small input, no gradients)."""
    size = max(32, int(getattr(model, "min_size", 1)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        p = next(model.parameters())
        feats = model.forward_features(torch.zeros(1, in_channels, size, size, device=p.device, dtype=p.dtype))
    model.train(was_training)
    return int(feats.shape[1])
