"""``reference``: an independent standard recipe in the spirit of nnU-Net, the yardstick of the baseline.

A comparison between training methods is evidence only when its baseline is as strong as the field's standard
recipe makes it. The reference shares nothing with our baseline but the data, the splits, the budget (epochs,
steps, batch) and the scoring: its own network, loss, optimiser and augmentation, each as nnU-Net v2 sets them
for a 2D configuration (Isensee et al., Nature Methods 18:203-211, 2021; ``nnUNetTrainer`` and
``ExperimentPlanner``):

* network: MONAI ``DynUNet`` (nnU-Net's architecture: two 3x3 conv - instance norm - leaky ReLU per level,
  stride-2 downsampling, transposed-conv upsampling), its depth planned from the image size (halve while the
  bottleneck keeps >= 4 px, at most 6 levels). Its widths follow the compared network's (first and largest
  width, number of levels) so that the two differ in recipe, not capacity; nnU-Net's 32-512 for networks
  without a width list. No deep supervision (our evaluation scores the full-resolution output only);
* loss: cross-entropy + soft Dice over the batch, background excluded (nnU-Net's ``DC_and_CE_loss``);
* optimiser: nnU-Net's is SGD with Nesterov momentum 0.99 at learning rate 0.01, built for 250 000 steps. At the
  budgets a CPU or a quick GPU run affords (hundreds to thousands of steps) it left the reference weaker than
  Adam on every dataset measured (``bench/recipe_defaults.py``: best validation Dice Kvasir-SEG 0.554 vs 0.587,
  BUSI 0.501 vs 0.553, SYNTHETIC phantoms 0.65 vs 0.84), so the reference uses Adam at 3e-3 (the best of 1e-3,
  3e-3 and 1e-2 averaged over those datasets, chosen on validation splits only) with nnU-Net's weight decay
  3e-5 and polynomial decay (power 0.9). ``RECIPE["optimizer"] = "sgd"`` restores nnU-Net's;
* augmentation: nnU-Net's ranges (rotation over the full circle, scaling 0.7-1.4, mirroring, brightness/contrast/
  gamma, Gaussian noise, Gaussian blur); noise and blur with nnU-Net's probabilities (0.1, 0.2), the warp and the
  intensity jitter each with probability 0.5 as one combined warp per sample (nnU-Net draws rotation and scaling
  at 0.2 each and the intensity transforms at 0.15-0.3; see :class:`ReferenceAugmenter`).

The reference never distils and is never distilled from; it is scored like every method and compared with the
baseline in the report's ``baseline_strength`` section (:func:`sikd_core.report.baseline_strength`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sikd_core.data.augment import Augmenter
from sikd_core.losses import _check_seg_args
from sikd_core.methods.registry import REFERENCE, REFERENCE_NETWORK
from sikd_core.models import model_info
from sikd_core.models.registry import plan_dynunet_filters
from sikd_core.training.trainer import Trainer

__all__ = ["RECIPE", "REFERENCE", "REFERENCE_NETWORK", "DiceCELossNNUNet", "ReferenceAugmenter", "ReferenceTrainer",
           "reference_filters", "shared_augmenter"]

#: The recipe's optimiser settings: nnU-Net's weight decay, schedule and (for "sgd") momentum; Adam at 3e-3 instead
#: of nnU-Net's SGD at 0.01 by measurement at small budgets (module docstring).
RECIPE: dict[str, Any] = {
    "optimizer": "adam",  # "sgd": nnU-Net's SGD with Nesterov momentum
    "lr": 3e-3,  # nnU-Net's SGD: 0.01
    "momentum": 0.99,  # SGD only
    "weight_decay": 3e-5,
    "poly_power": 0.9,
}


def reference_filters(network: str, network_kwargs: dict[str, Any], image_size: tuple[int, int] | list[int]) -> list[int]:
    """The reference DynUNet's filters for a spec: nnU-Net's depth plan for ``image_size``, with the width
    range and depth of the compared network when it has a width list (``widths``, ``features`` or
    ``channels``; at least three levels, DynUNet's least), else nnU-Net's 32-512."""
    try:
        defaults = model_info(network).defaults
    except Exception:  # noqa: BLE001 - an unknown network: nnU-Net's own widths
        defaults = {}
    widths = None
    for key in ("widths", "channels", "features", "filters"):
        value = network_kwargs.get(key, defaults.get(key))
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
            widths = [int(v) for v in value]
            if key == "features":  # MONAI BasicUNet: five encoder widths and the decoder's last
                widths = widths[:5]
            break
    if widths is None:
        return plan_dynunet_filters(image_size)
    planned = plan_dynunet_filters(image_size, base=widths[0], max_filters=max(widths))
    return planned[: min(len(planned), max(3, len(widths)))]  # DynUNet needs 3 levels (a spec's image >= 16 px has them)


class DiceCELossNNUNet(nn.Module):
    """nnU-Net's ``DC_and_CE_loss``: cross-entropy + (1 - soft Dice), the Dice over the whole batch and the
    foreground classes only. Logits ``B,K,H,W``, targets ``B,H,W`` class indices."""

    def __init__(self, num_classes: int, smooth: float = 1e-5):
        super().__init__()
        self.num_classes = num_classes
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_seg_args(logits, target)
        logits = logits.float()
        target = target.long()
        ce = F.cross_entropy(logits, target)
        probs = logits.softmax(1)[:, 1:]
        onehot = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth).clamp_min(1e-8)
        return ce + (1 - dice.mean())


@dataclass
class ReferenceAugmenter:
    """nnU-Net-like 2D augmentation: one affine warp (full rotation, scale 0.7-1.4, mirroring) with intensity
    jitter (each with probability 0.5), then Gaussian noise (p 0.1, std drawn up to 0.1 of the [0, 1] range:
    nnU-Net's variance 0.1 on z-scored images, scaled to ours) and Gaussian blur (p 0.2, sigma 0.5-1 px).
    Deterministic from the caller's CPU generator."""

    affine: Augmenter = field(default_factory=lambda: Augmenter(
        flip=True, rotate_deg=180.0, scale=(0.7, 1.4), translate=0.0, intensity=0.25, gamma=(0.7, 1.5), p=0.5))
    noise_p: float = 0.1
    noise_std: float = 0.1
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        images, labels = self.affine(images, labels, generator)
        b = images.shape[0]
        if b == 0:
            return images, labels
        u = torch.rand(b, 4, generator=generator, dtype=torch.float64)
        noise = torch.randn(images.shape, generator=generator, dtype=torch.float32)
        out = images.float()
        dev = out.device
        noisy = (u[:, 0] < self.noise_p).to(dev)
        if bool(noisy.any()):
            std = (u[:, 1] * self.noise_std).to(dev, torch.float32).view(b, 1, 1, 1)
            out = torch.where(noisy.view(b, 1, 1, 1), out + noise.to(dev) * std, out)
        blurred = (u[:, 2] < self.blur_p).nonzero().flatten()
        for i in blurred.tolist():  # a few samples per batch: one separable conv each
            sigma = self.blur_sigma[0] + float(u[i, 3]) * (self.blur_sigma[1] - self.blur_sigma[0])
            out[i] = _blur(out[i], sigma)
        return out.clamp(0.0, 1.0).to(images.dtype), labels


def shared_augmenter(augment: bool, augmentation: str = "standard") -> Augmenter | ReferenceAugmenter | None:
    """The augmentation every stage but the reference's trains with (a spec's ``augment`` and ``augmentation``):
    none, ours (:class:`Augmenter`'s defaults) or, for ``nnunet``, the reference recipe's own."""
    if not augment:
        return None
    return ReferenceAugmenter() if augmentation == "nnunet" else Augmenter()


def _blur(img: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of one ``C,H,W`` image (reflect padding)."""
    r = max(1, int(round(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    c = img.shape[0]
    y = F.pad(img.unsqueeze(0), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


class ReferenceTrainer(Trainer):
    """The reference recipe on the shared training loop: its loss and optimiser (the loop, checkpoints,
    validation and health checks are the same as every method's). Pass ``augmenter=ReferenceAugmenter()``."""

    def build_optimizer(self) -> torch.optim.Optimizer:
        if RECIPE["optimizer"] == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=self.config.lr, weight_decay=RECIPE["weight_decay"])
        return torch.optim.SGD(self.model.parameters(), lr=self.config.lr, momentum=RECIPE["momentum"],
                               nesterov=True, weight_decay=RECIPE["weight_decay"])

    def build_loss(self) -> nn.Module:
        return DiceCELossNNUNet(self.num_classes)
