"""The paper's U-Net, with a switch for its skip connections.

Encoder: conv-BN-ReLU double blocks with max-pooling (widths 64-128-256-512-1024 by default).
Decoder: bilinear upsampling by 2, a 3x3 conv-BN-ReLU that halves the width, concatenation with the
encoder feature of the same scale (only when ``skip_connections`` is on), then a double block.
Head: a 1x1 conv. ``forward_features`` returns the head's input, the penultimate feature map that SIKD
distils. The SIKD teacher is this network with ``skip_connections=False``: without the shortcut the
decoder must carry the shape through the bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sikd_core.models.base import SegmentationModel

#: The deepest U-Net built: 13 levels halve a 4096 px input (the largest ``image_size``) down to 1 px.
MAX_LEVELS = 13


class ConvBlock(nn.Sequential):
    """Two 3x3 conv-BN-ReLU layers."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """Bilinear x2 upsampling + 3x3 conv, optional skip concatenation, then a double conv block."""

    def __init__(self, in_ch: int, out_ch: int, skip: bool):
        super().__init__()
        self.skip = skip
        self.up_conv = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )
        self.block = ConvBlock(out_ch * 2 if skip else out_ch, out_ch)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        # Upsample to the encoder feature's exact size, so odd input sizes work without padding.
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.up_conv(x)
        if self.skip:
            x = torch.cat([skip, x], dim=1)
        return self.block(x)


class UNet(SegmentationModel):
    """The paper's 2D U-Net.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        num_classes: output classes, background included.
        widths: encoder widths from the top level to the bottleneck (at least 2 levels).
        skip_connections: ``False`` builds the SIKD teacher variant without skips.

    Shapes: input ``B,in_channels,H,W`` with ``H, W >= 2 ** (len(widths) - 1)``; output logits
    ``B,num_classes,H,W``; features ``B,widths[0],H,W``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256, 512, 1024),
        skip_connections: bool = True,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"widths must hold at least 2 positive integers; got {widths}")
        if len(widths) > MAX_LEVELS:  # refused before 2 x len(widths) blocks are built (2 000 levels took 24 s)
            raise ValueError(f"widths has {len(widths)} levels; at most {MAX_LEVELS}: each level halves the image, "
                             f"and {MAX_LEVELS} levels already need inputs of {2 ** (MAX_LEVELS - 1)} px")
        if in_channels < 1 or num_classes < 1:
            raise ValueError("in_channels and num_classes must be >= 1")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.widths = widths
        self.skip_connections = skip_connections
        self.encoder = nn.ModuleList(
            [ConvBlock(in_channels, widths[0])]
            + [ConvBlock(widths[i - 1], widths[i]) for i in range(1, len(widths))]
        )
        self.decoder = nn.ModuleList(
            [UpBlock(widths[i], widths[i - 1], skip_connections) for i in range(len(widths) - 1, 0, -1)]
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He (Kaiming) normal initialisation of every conv, head included (fan-in, ReLU gain), zero biases,
        BatchNorm at identity: the initialisation of the SIKD authors' U-Net (``init_weights(model,
        'kaiming')``). PyTorch's default conv initialisation is about 2.4x smaller; on a narrow head (8
        features) the logits then start and stay so small that Adam at 1e-3 needs hundreds of steps to make
        them confident, and plain cross-entropy on imbalanced data can lock the net into all-background.
        Skipped on the ``meta`` device (the API's spec checks and costing build there: no values to set, and
        PyTorch's meta initialisers run as slow Python decompositions: a third of a POST /experiments).
        """
        if self.head.weight.is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def min_size(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def encode(self, x: Tensor) -> list[Tensor]:
        """The encoder's output at every level, finest first (the decoder's skip inputs and its start)."""
        feats = []
        for i, block in enumerate(self.encoder):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            feats.append(x)
        return feats

    def forward_features(self, x: Tensor) -> Tensor:
        """Penultimate feature map (the input of the 1x1 head), ``B,widths[0],H,W``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input B,{self.in_channels},H,W; got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"input {tuple(x.shape[-2:])} is smaller than the minimum {self.min_size}")
        feats = self.encode(x)
        x = feats[-1]
        for j, up in enumerate(self.decoder):
            x = up(x, feats[-2 - j])
        return x

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.forward_features(x)
        return self.head(feats), feats

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))

    def head_module(self) -> nn.Module:
        return self.head
