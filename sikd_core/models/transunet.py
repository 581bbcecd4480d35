"""A TransUNet-style hybrid: a CNN encoder, a ViT bottleneck, a CNN decoder with switchable skips.

TransUNet (Chen et al. 2021) encodes with a CNN, runs a Vision Transformer on the tokens of the lowest-
resolution feature map and decodes with upsampling blocks that concatenate the CNN's features (its "cascaded
upsampler"). The SIKD paper's teacher for TransUNet drops those skip connections, like its U-Net teacher.

This one is written with the paper U-Net's blocks (conv-BN-ReLU encoder and bilinear decoder) and MONAI's
:class:`~monai.networks.blocks.TransformerBlock`. It differs from the original in two documented ways: the
encoder is the U-Net's plain CNN, not a ResNet-50 (no ImageNet weights here, nothing is downloaded), and the
tokens get their position from a 3x3 depthwise convolution (a conditional position encoding, Chu et al.
2021) instead of a learned table of a fixed grid, so any image size works.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from sikd_core.models.unet import UNet


class ViTBottleneck(nn.Module):
    """``B,C,h,w`` -> ``B,C,h,w``: 1x1 projection to ``hidden_size``, conv position encoding, ``num_layers``
    pre-norm transformer blocks over the ``h*w`` tokens, a final LayerNorm, 1x1 projection back (+ residual)."""

    def __init__(self, channels: int, hidden_size: int, num_layers: int, num_heads: int, mlp_dim: int,
                 dropout: float = 0.0):
        super().__init__()
        from monai.networks.blocks import TransformerBlock

        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1; got {num_layers}")
        self.proj_in = nn.Conv2d(channels, hidden_size, 1)
        self.pos = nn.Conv2d(hidden_size, hidden_size, 3, padding=1, groups=hidden_size)
        self.blocks = nn.ModuleList([TransformerBlock(hidden_size, mlp_dim, num_heads, dropout, qkv_bias=True)
                                     for _ in range(num_layers)])
        for blk in self.blocks:  # built by MONAI even without cross-attention; never run: no dead weights
            blk.norm_cross_attn = nn.Identity()
        self.norm = nn.LayerNorm(hidden_size)
        self.proj_out = nn.Conv2d(hidden_size, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        t = self.proj_in(x)
        t = t + self.pos(t)
        b, c, h, w = t.shape
        tokens = t.flatten(2).transpose(1, 2)  # B, h*w, C
        for blk in self.blocks:
            tokens = blk(tokens)
        t = self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(t)


class TransUNet(UNet):
    """The paper U-Net's encoder and decoder with a ViT on the bottleneck (``widths[-1]`` channels at
    1/``2**(len(widths)-1)`` resolution). ``skip_connections=False`` is the SIKD teacher.

    Shapes: input ``B,in_channels,H,W``; logits ``B,num_classes,H,W``; features ``B,widths[0],H,W``.
    """

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int] = (32, 64, 128, 256, 512),
                 skip_connections: bool = True, hidden_size: int = 384, num_layers: int = 6, num_heads: int = 6,
                 mlp_dim: int = 1536, dropout: float = 0.0):
        super().__init__(in_channels, num_classes, widths, skip_connections)
        self.transformer = ViTBottleneck(self.widths[-1], hidden_size, num_layers, num_heads, mlp_dim, dropout)

    def encode(self, x: Tensor) -> list[Tensor]:
        feats = super().encode(x)
        feats[-1] = self.transformer(feats[-1])
        return feats

