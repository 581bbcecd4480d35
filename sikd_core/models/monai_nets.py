"""More of MONAI's 2D segmentation networks, adapted by a hook on their final conv (``HookedSegmenter``).

SegResNet, BasicUNetPlusPlus, FlexibleUNet (MONAI's own ResNet and EfficientNet encoders, never
torchvision, never downloaded: ``pretrained_path`` loads a local state_dict) and UNETR. All of them keep
their skip connections in the SIKD teacher (the paper drops them only for U-Net and TransUNet);
``teacher_note`` says so in ``sikd models``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sikd_core.errors import SpecError
from sikd_core.models.base import HookedSegmenter, SegmentationModel
from sikd_core.models.registry import KEEPS_SKIPS, register_model

WEIGHT_FORMATS = (".pt", ".pth", ".safetensors")


class FirstOutput(nn.Module):
    """A network that returns a list of outputs (MONAI's deep-supervision nets), reduced to the first one."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[0]


class ResizedInput(nn.Module):
    """A fixed-grid network (a ViT's position embedding): the input is resampled to ``img_size`` and the
    output back to the input's size. Bilinear resampling is linear, so the hooked features still map to the
    logits through the 1x1 head exactly (the features are resampled by :class:`HookedSegmenter`'s caller)."""

    def __init__(self, net: nn.Module, img_size: tuple[int, int]):
        super().__init__()
        self.net = net
        self.img_size = img_size

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) == self.img_size:
            return self.net(x)
        y = self.net(F.interpolate(x, size=self.img_size, mode="bilinear", align_corners=False))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ResizedSegmenter(HookedSegmenter):
    """:class:`HookedSegmenter` for :class:`ResizedInput`: the captured features are on the network's grid
    and are resampled to the input's size like the logits."""

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input B,{self.in_channels},H,W; got {tuple(x.shape)}")
        self._captured = None
        logits = self.net(x)
        feats, self._captured = self._captured, None
        if feats is None:
            raise RuntimeError("the feature hook on the final conv did not fire")
        if feats.shape[-2:] != x.shape[-2:]:
            feats = F.interpolate(feats, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, feats


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """A state_dict from a local file: ``.pt``/``.pth`` (``torch.load``, weights only) or ``.safetensors``
    (needs the ``safetensors`` package). Nothing is ever downloaded."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpecError(f"pretrained_path {str(p)!r} is not a file (weights are only read from a local file)")
    if p.suffix not in WEIGHT_FORMATS:
        raise SpecError(f"pretrained_path {p.name!r}: unsupported format; use one of {', '.join(WEIGHT_FORMATS)}")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise SpecError("pretrained_path is a .safetensors file but the safetensors package is not installed; "
                            "pip install safetensors, or save the weights with torch.save as .pt") from None
        return load_file(str(p))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt or non-weights file
        raise SpecError(f"pretrained_path {p.name!r} cannot be read as a PyTorch state_dict: {e}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise SpecError(f"pretrained_path {p.name!r} does not hold a state_dict (a dict of tensors)")
    return obj


def load_encoder_weights(encoder: nn.Module, path: str | Path, unused: tuple[str, ...] = ()) -> None:
    """Load a local state_dict into ``encoder`` strictly; mismatched keys or shapes fail with what differs.
    Keys under the ``unused`` prefixes (a classifier the segmenter does not run) are dropped from the file."""
    state = {k: v for k, v in load_state_dict_file(path).items() if not k.startswith(unused)}
    own = encoder.state_dict()  # on the meta device (a spec check) too: keys and shapes are compared
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs encoder {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def few(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")
        parts = [f"missing {len(missing)}: {few(missing)}" if missing else "",
                 f"unexpected {len(unexpected)}: {few(unexpected)}" if unexpected else "",
                 f"wrong shape {len(shapes)}: {few(shapes)}" if shapes else ""]
        raise SpecError(f"pretrained_path {Path(path).name!r} does not match the encoder: "
                        + "; ".join(p for p in parts if p))
    if not next(encoder.parameters()).is_meta:  # a spec check builds on meta: nothing to copy into
        encoder.load_state_dict(state)


@register_model("segresnet", "MONAI SegResNet (2D): residual GroupNorm encoder, additive skips, 1x1 head",
                teacher_note=KEEPS_SKIPS)
def _segresnet(
    in_channels: int,
    num_classes: int,
    init_filters: int = 16,
    blocks_down: tuple[int, ...] | list[int] = (1, 2, 2, 4),
    blocks_up: tuple[int, ...] | list[int] = (1, 1, 1),
    dropout: float = 0.0,
) -> SegmentationModel:
    from monai.networks.nets import SegResNet

    if init_filters < 8 or init_filters % 8:
        raise SpecError(f"segresnet init_filters must be a positive multiple of 8 (GroupNorm of 8 groups); "
                        f"got {init_filters}")
    if len(blocks_up) != len(blocks_down) - 1:
        raise SpecError(f"segresnet needs len(blocks_up) == len(blocks_down) - 1; got {list(blocks_down)}, "
                        f"{list(blocks_up)}")
    net = SegResNet(spatial_dims=2, init_filters=init_filters, in_channels=in_channels, out_channels=num_classes,
                    dropout_prob=dropout or None, blocks_down=tuple(blocks_down), blocks_up=tuple(blocks_up))
    return HookedSegmenter(net, net.conv_final[-1], in_channels, num_classes,
                           size_multiple=2 ** (len(blocks_down) - 1))


@register_model("basic_unet_pp", "MONAI BasicUNetPlusPlus (2D UNet++: nested dense skips)",
                teacher_note=KEEPS_SKIPS)
def _basic_unet_pp(
    in_channels: int,
    num_classes: int,
    features: tuple[int, ...] | list[int] = (32, 32, 64, 128, 256, 32),
    dropout: float = 0.0,
) -> SegmentationModel:
    from monai.networks.nets import BasicUNetPlusPlus

    if len(features) != 6:
        raise SpecError(f"basic_unet_pp features must be 6 widths; got {list(features)}")
    net = BasicUNetPlusPlus(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                            features=tuple(features), dropout=dropout, deep_supervision=False)
    # Without deep supervision only final_conv_0_4 reaches the output: the three others would be weights
    # without gradients (and dead parameters in the export), so they are replaced by identities.
    for i in (1, 2, 3):
        setattr(net, f"final_conv_0_{i}", nn.Identity())
    return HookedSegmenter(FirstOutput(net), net.final_conv_0_4, in_channels, num_classes, size_multiple=16)


def _flexible_unet(family: str, backbone: str, in_channels: int, num_classes: int, decoder_channels: Any,
                   pretrained_path: str, drop_connect_rate: float | None = None) -> SegmentationModel:
    from monai.networks.nets import FlexibleUNet
    from monai.networks.nets.efficientnet import EfficientNetEncoder
    from monai.networks.nets.resnet import ResNetEncoder

    names = (ResNetEncoder if family == "resnet" else EfficientNetEncoder).backbone_names
    if backbone not in names:
        raise SpecError(f"flexible_unet_{family} backbone {backbone!r} is not one of {', '.join(names)}")
    decoder_channels = tuple(int(c) for c in decoder_channels)
    if len(decoder_channels) != 5 or min(decoder_channels) < 1:
        raise SpecError(f"flexible_unet decoder_channels must be 5 positive widths; got {list(decoder_channels)}")
    net = FlexibleUNet(in_channels, num_classes, backbone=backbone, pretrained=False,
                       decoder_channels=decoder_channels, spatial_dims=2)
    if family == "efficientnet":
        net.encoder.set_swish(memory_efficient=False)  # plain x*sigmoid(x): exportable to ONNX
        if drop_connect_rate is not None:  # stochastic depth: EfficientNet's rate (0.2 for b0) scaled per block
            from monai.networks.nets.efficientnet import efficientnet_params

            if not 0 <= drop_connect_rate < 1:
                raise SpecError(f"drop_connect_rate must be in [0, 1); got {drop_connect_rate}")
            own = efficientnet_params[backbone][4]
            for stack in net.encoder._blocks:
                for block in stack:
                    block.drop_connect_rate = (block.drop_connect_rate or 0.0) * drop_connect_rate / own
    # MONAI's head is a 3x3 conv; a 1x1 conv makes it the pixel-wise head every other network has, so the
    # penultimate map is the features each pixel's logits are read from.
    net.segmentation_head[0] = nn.Conv2d(decoder_channels[-1], num_classes, 1)
    unused: tuple[str, ...] = ()
    if family == "efficientnet":  # the classifier's last conv, norm and fc never run in the features encoder
        unused = ("_conv_head.", "_bn1.", "_fc.")
        for m in ("_conv_head", "_bn1", "_fc"):
            setattr(net.encoder, m, nn.Identity())
    if pretrained_path:
        load_encoder_weights(net.encoder, pretrained_path, unused)
    return HookedSegmenter(net, net.segmentation_head[0], in_channels, num_classes, size_multiple=32, min_size=64)


@register_model("flexible_unet_resnet", "MONAI FlexibleUNet with MONAI's ResNet encoder (resnet10-200, 2D; "
                "pretrained_path: a local .pt/.pth/.safetensors state_dict for the encoder, nothing is downloaded)",
                teacher_note=KEEPS_SKIPS)
def _flexible_unet_resnet(
    in_channels: int,
    num_classes: int,
    backbone: str = "resnet18",
    decoder_channels: tuple[int, ...] | list[int] = (256, 128, 64, 32, 16),
    pretrained_path: str = "",
) -> SegmentationModel:
    return _flexible_unet("resnet", backbone, in_channels, num_classes, decoder_channels, pretrained_path)


@register_model("flexible_unet_efficientnet", "MONAI FlexibleUNet with MONAI's EfficientNet encoder (b0-b8, l2; "
                "pretrained_path: a local .pt/.pth/.safetensors state_dict for the encoder, nothing is downloaded)",
                teacher_note=KEEPS_SKIPS)
def _flexible_unet_efficientnet(
    in_channels: int,
    num_classes: int,
    backbone: str = "efficientnet-b0",
    decoder_channels: tuple[int, ...] | list[int] = (256, 128, 64, 32, 16),
    pretrained_path: str = "",
    drop_connect_rate: float | None = None,
) -> SegmentationModel:
    """``drop_connect_rate``: EfficientNet's stochastic depth of the deepest block (None: the backbone's own,
    0.2 for b0; 0 turns it off)."""
    return _flexible_unet("efficientnet", backbone, in_channels, num_classes, decoder_channels, pretrained_path,
                          drop_connect_rate)


@register_model("unetr", "MONAI UNETR (2D): a 12-layer ViT encoder on 16x16 patches, CNN decoder; the input is "
                "resampled to img_size (the ViT's fixed grid; set it to the spec's image_size)",
                teacher_note=KEEPS_SKIPS)
def _unetr(
    in_channels: int,
    num_classes: int,
    img_size: tuple[int, int] | list[int] = (224, 224),
    feature_size: int = 16,
    hidden_size: int = 768,
    mlp_dim: int = 3072,
    num_heads: int = 12,
    dropout: float = 0.0,
) -> SegmentationModel:
    from monai.networks.nets import UNETR

    size = tuple(int(s) for s in img_size)
    if len(size) != 2 or min(size) < 16 or any(s % 16 for s in size):
        raise SpecError(f"unetr img_size must be two multiples of 16 (its patch size); got {list(img_size)}")
    if hidden_size % num_heads:
        raise SpecError(f"unetr hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
    net = UNETR(in_channels, num_classes, img_size=size, feature_size=feature_size, hidden_size=hidden_size,
                mlp_dim=mlp_dim, num_heads=num_heads, dropout_rate=dropout, spatial_dims=2)
    for blk in net.vit.blocks:  # built by MONAI even without cross-attention; never run: no dead weights
        blk.norm_cross_attn = nn.Identity()
    return ResizedSegmenter(ResizedInput(net, size), net.out.conv.conv, in_channels, num_classes, size_multiple=1)
