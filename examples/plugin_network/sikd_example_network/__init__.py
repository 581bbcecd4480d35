"""A lab's own network, offered to SIKD Studio through the ``sikd.networks`` entry point.

It is a plain ``torch.nn.Module`` (it does not import SIKD Studio): the builder declares the name of its
final 1x1 conv (``sikd_head``), which SIKD hooks for the penultimate feature map, and its skip switch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(1, cout), nn.ReLU(inplace=True))


class LabUNet(nn.Module):
    """Two-level U-Net; ``skip_connections=False`` drops the encoder-decoder shortcut (the SIKD teacher)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, skip_connections: bool = True):
        super().__init__()
        self.skip_connections = skip_connections
        self.enc1 = block(in_channels, width)
        self.enc2 = block(width, 2 * width)
        self.up = block(2 * width, width)
        self.dec = block(2 * width if skip_connections else width, width)
        self.head = nn.Conv2d(width, num_classes, 1)  # the final 1x1 conv: its input is what SIKD distils

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        d = self.up(F.interpolate(e2, size=e1.shape[-2:], mode="bilinear", align_corners=False))
        if self.skip_connections:
            d = torch.cat([e1, d], dim=1)
        return self.head(self.dec(d))


def build(in_channels: int, num_classes: int, width: int = 16, skip_connections: bool = True) -> nn.Module:
    """Lab U-Net (example plug-in): two levels, GroupNorm, one skip connection"""
    if width < 1:
        raise ValueError(f"width must be >= 1; got {width}")
    return LabUNet(in_channels, num_classes, width=width, skip_connections=skip_connections)


build.sikd_head = "head"  # dotted name of the final 1x1 conv in the returned module
build.sikd_size_multiple = 2  # one max-pool: inputs are zero-padded to even sizes
build.sikd_skip_switch = True  # the SIKD teacher is built with skip_connections=False, as for the paper's U-Net
build.sikd_teacher_note = "drops its skip connection (skip_connections=False)"
