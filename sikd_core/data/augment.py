"""Batched, deterministic data augmentation on tensors (any device).

One affine warp per batch (rotation, scale, translation and flips folded into one matrix per sample,
a single ``affine_grid`` + ``grid_sample``) and brightness/contrast/gamma jitter on images only. All
random numbers come from the caller's CPU ``torch.Generator``, a fixed number per sample and call, so a
resumed run that restores the generator state reproduces the same augmentations on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sikd_core.batch import check_batch

_DRAWS = 11  # random numbers per sample and call, whatever the settings


@dataclass
class Augmenter:
    """Random affine + intensity augmentation of ``B,C,H,W`` images and ``B,H,W`` labels.

    Args:
        flip: random horizontal and vertical flips (each with probability 0.5).
        rotate_deg: rotation drawn uniformly in ``[-rotate_deg, rotate_deg]`` degrees.
        scale: zoom factor range, drawn log-uniformly (> 1 enlarges the content).
        translate: shift drawn uniformly in ``[-translate, translate]`` of the image size, per axis.
        intensity: contrast factor in ``1 +- intensity`` and brightness offset in ``+- intensity``.
        gamma: gamma range, drawn log-uniformly (applied after clamping to [0, 1]).
        p: probability that a sample gets the affine warp, and (independently) the intensity jitter.
        enabled: ``False`` returns inputs unchanged.
    """

    flip: bool = True
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    translate: float = 0.1
    intensity: float = 0.1
    gamma: tuple[float, float] = (0.8, 1.25)
    p: float = 0.8
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1]; got {self.p}")
        if self.rotate_deg < 0 or self.translate < 0 or self.intensity < 0:
            raise ValueError("rotate_deg, translate and intensity must be >= 0")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high; got {self.scale}")
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError(f"gamma must be (low, high) with 0 < low <= high; got {self.gamma}")
        self.scale = (float(self.scale[0]), float(self.scale[1]))
        self.gamma = (float(self.gamma[0]), float(self.gamma[1]))

    @classmethod
    def none(cls) -> Augmenter:
        """An augmenter that returns its inputs unchanged."""
        return cls(enabled=False)

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Augment a batch: ``images`` ``B,C,H,W`` floating in [0, 1], ``labels`` ``B,H,W`` integer.

        Returns new tensors of the same shapes, dtypes and device; label values are never mixed
        (nearest sampling) and pixels warped in from outside the image are 0 (background).
        """
        if not self.enabled:
            return images, labels
        check_batch(images, labels)
        b, _, h, w = images.shape
        if generator.device.type != "cpu":
            raise ValueError("pass a CPU torch.Generator (parameters are drawn on the CPU, then moved)")
        if b == 0:
            return images, labels
        u = torch.rand(b, _DRAWS, generator=generator, dtype=torch.float64)
        theta, warp = self._affine(u, h, w)
        out_img = images.clone()
        out_lab = labels.clone()
        dev = images.device
        sel = warp.nonzero().flatten()
        if sel.numel():
            sel_d = sel.to(dev)
            work = torch.float32 if images.dtype in (torch.float16, torch.bfloat16) else images.dtype
            grid = F.affine_grid(theta[sel].to(dev, work), [int(sel.numel()), 1, h, w], align_corners=False)
            warped = F.grid_sample(
                images.index_select(0, sel_d).to(work), grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
            lab = labels.index_select(0, sel_d).to(work).unsqueeze(1)
            lab = F.grid_sample(lab, grid, mode="nearest", padding_mode="zeros", align_corners=False)
            out_img[sel_d] = warped.to(images.dtype)
            out_lab[sel_d] = lab.squeeze(1).round().to(labels.dtype)
        jitters = self.intensity > 0 or self.gamma != (1.0, 1.0)
        jit = (u[:, 7] < self.p).nonzero().flatten() if jitters else torch.empty(0, dtype=torch.long)
        if jit.numel():
            out_img[jit.to(dev)] = self._jitter(out_img[jit.to(dev)], u[jit])
        return out_img, out_lab

    def _affine(self, u: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
        """Per-sample ``2x3`` matrices mapping output to input normalised coordinates, and which
        samples are not the identity."""
        b = u.shape[0]
        spatial = u[:, 0] < self.p
        fx = torch.where(self.flip & (u[:, 1] < 0.5), -1.0, 1.0).double()
        fy = torch.where(self.flip & (u[:, 2] < 0.5), -1.0, 1.0).double()
        zero = torch.zeros(b, dtype=torch.float64)
        ang = torch.where(spatial, (2 * u[:, 3] - 1) * math.radians(self.rotate_deg), zero)
        lo, hi = math.log(self.scale[0]), math.log(self.scale[1])
        s = torch.where(spatial, torch.exp(lo + u[:, 4] * (hi - lo)), zero + 1.0)
        tx = torch.where(spatial, (2 * u[:, 5] - 1) * 2 * self.translate, zero)
        ty = torch.where(spatial, (2 * u[:, 6] - 1) * 2 * self.translate, zero)
        c, sn = torch.cos(ang), torch.sin(ang)
        # Rotation in pixel space expressed in normalised coordinates (x spans W, y spans H), so
        # non-square images rotate without shearing; content grows by s, flips act on the output.
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = c * fx / s
        theta[:, 0, 1] = -sn * (h / w) * fy / s
        theta[:, 1, 0] = sn * (w / h) * fx / s
        theta[:, 1, 1] = c * fy / s
        theta[:, 0, 2] = tx
        theta[:, 1, 2] = ty
        identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
        warp = (theta - identity).abs().amax(dim=(1, 2)) > 1e-12
        return theta, warp

    def _jitter(self, x: Tensor, u: Tensor) -> Tensor:
        """Contrast around the image mean, brightness offset, clamp, then gamma."""
        n = x.shape[0]
        shape = (n, 1, 1, 1)
        contrast = (1 + (2 * u[:, 8] - 1) * self.intensity).view(shape)
        bright = ((2 * u[:, 9] - 1) * self.intensity).view(shape)
        glo, ghi = math.log(self.gamma[0]), math.log(self.gamma[1])
        gamma = torch.exp(glo + u[:, 10] * (ghi - glo)).view(shape)
        work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        y = x.to(work)
        dev = y.device
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (y - mean) * contrast.to(dev, work) + mean + bright.to(dev, work)
        y = y.clamp(0.0, 1.0).pow(gamma.to(dev, work))
        return y.clamp(0.0, 1.0).to(x.dtype)
