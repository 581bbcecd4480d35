"""Build networks by name. Every entry returns a :class:`SegmentationModel` with ``forward_features``."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from sikd_core.errors import SpecError, UnknownModelError
from sikd_core.models.base import HookedSegmenter, SegmentationModel
from sikd_core.models.plugins import load_plugins
from sikd_core.models.transunet import TransUNet
from sikd_core.models.unet import MAX_LEVELS, UNet


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., SegmentationModel]
    description: str
    #: The SIKD teacher drops skip connections (``skip_connections=False``) when the model has the switch.
    skip_switch: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    #: What the SIKD teacher keeps or drops, for ``sikd networks`` (empty: nothing to say).
    teacher_note: str = ""
    #: The distribution a plug-in network comes from (``""``: built into SIKD Studio).
    plugin: str = ""
    #: For a builder returning a plain ``nn.Module``: the dotted name of its final 1x1 conv, hooked for the
    #: features, and the multiple the input is padded to.
    head: str = ""
    size_multiple: int = 1


#: Transformer blocks per Swin stage at most (MONAI's default is 2; a deep one is 18).
MAX_SWIN_DEPTH = 32
MODELS: dict[str, ModelInfo] = {}
KEEPS_SKIPS = "keeps its skip connections (the paper drops them only for U-Net and TransUNet)"


def register_model(name: str, description: str, *, skip_switch: bool = False, teacher_note: str = "",
                   plugin: str = "", head: str = "", size_multiple: int = 1, **defaults: Any):
    """Decorator adding a builder ``fn(in_channels, num_classes, **kwargs)`` to the registry."""

    def wrap(fn: Callable[..., SegmentationModel]) -> Callable[..., SegmentationModel]:
        if name in MODELS:
            raise ValueError(f"network {name!r} is already registered")
        # Defaults: the builder's keyword defaults (JSON-friendly: tuples as lists), then explicit ones.
        sig = {p.name: list(p.default) if isinstance(p.default, tuple) else p.default
               for p in inspect.signature(fn).parameters.values()
               if p.default is not inspect.Parameter.empty}
        if not teacher_note and skip_switch:
            note = "drops its skip connections (skip_connections=False), as the paper does"
        else:
            note = teacher_note
        MODELS[name] = ModelInfo(name, fn, description, skip_switch, {**sig, **defaults}, note, plugin, head,
                                 size_multiple)
        return fn

    return wrap


def available_models() -> list[str]:
    """The registered networks, built-in and from installed plug-ins (``sikd.networks`` entry points)."""
    load_plugins()
    return sorted(MODELS)


def model_info(name: str) -> ModelInfo:
    if name not in MODELS:
        load_plugins()
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown network {name!r}; known networks: {', '.join(available_models())}"
        ) from None


def check_model_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raise :class:`SpecError` if ``create_model(name, ..., **kwargs)`` would fail, without allocating
    weights (the network is built on PyTorch's ``meta`` device)."""
    import torch

    try:
        try:
            with torch.device("meta"):
                create_model(name, 3, 2, **kwargs)
        except (RuntimeError, NotImplementedError) as e:
            if "meta" not in str(e):
                raise
            # A constructor that reads values while building (SwinUNETR's stochastic-depth schedule calls
            # .item()) cannot run on "meta": build it for real on the CPU instead.
            create_model(name, 3, 2, **kwargs)
    except (SpecError, UnknownModelError):
        raise
    except Exception as e:  # noqa: BLE001 - any constructor error is a bad network_kwargs
        shown = repr(kwargs) if len(repr(kwargs)) <= 200 else repr(kwargs)[:200] + "...}"
        raise SpecError(f"network {name!r} cannot be built with network_kwargs {shown}: {type(e).__name__}: {e}") from None


def create_model(name: str, in_channels: int, num_classes: int, **kwargs: Any) -> SegmentationModel:
    """Build model ``name``; unknown names and unknown keyword arguments fail with the accepted ones."""
    info = model_info(name)
    params = inspect.signature(info.builder).parameters
    accepted = [p for p in params if p not in ("in_channels", "num_classes")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise SpecError(
            f"network {name!r} does not take {', '.join(map(repr, unknown))}; it accepts: {', '.join(accepted)}"
        )
    check_kwarg_types(name, info.builder, kwargs)
    model = info.builder(in_channels, num_classes, **{**info.defaults, **kwargs})
    if isinstance(model, SegmentationModel):
        return model
    if not isinstance(model, nn.Module) or not info.head:
        raise SpecError(f"network {name!r}{' (plug-in ' + info.plugin + ')' if info.plugin else ''} returned a "
                        f"{type(model).__name__}; a builder must return a SegmentationModel, or an nn.Module with "
                        "the name of its final 1x1 conv declared as `head`")
    try:
        head = model.get_submodule(info.head)
    except AttributeError:
        raise SpecError(f"network {name!r}: its declared head {info.head!r} is not a submodule of the network") from None
    return HookedSegmenter(model, head, in_channels, num_classes, size_multiple=info.size_multiple)


def check_kwarg_types(name: str, builder: Any, kwargs: dict[str, Any]) -> None:
    """Refuse arguments whose type does not match the builder's annotation, strictly (``"maybe"`` is
    not a bool, ``"64"`` not an int), so a typo fails instead of being truthy."""
    from pydantic import TypeAdapter, ValidationError

    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check against
        return
    for key, value in kwargs.items():
        if key not in hints:
            continue
        try:
            adapter = TypeAdapter(hints[key])
        except Exception:  # noqa: BLE001 - a type pydantic cannot express (e.g. nn.Module)
            continue
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            continue  # a Python object from a library caller, not a spec value
        try:  # JSON strict mode: a list may stand for a tuple, but "maybe" is no bool
            adapter.validate_json(text, strict=True)
        except ValidationError as e:
            msg = "; ".join(err["msg"] for err in e.errors()[:3])
            raise SpecError(f"network {name!r} cannot be built: network_kwargs.{key} = {value!r} has the wrong type "
                            f"(expected {hints[key]}): {msg}") from None


@register_model(
    "unet",
    "The paper's U-Net (conv-BN-ReLU, bilinear decoder); skip_connections switch for the SIKD teacher",
    skip_switch=True,
)
def _unet(
    in_channels: int,
    num_classes: int,
    widths: tuple[int, ...] | list[int] = (64, 128, 256, 512, 1024),
    skip_connections: bool = True,
) -> SegmentationModel:
    return UNet(in_channels, num_classes, widths=tuple(widths), skip_connections=skip_connections)


@register_model(
    "transunet",
    "TransUNet-style hybrid: the paper U-Net's CNN encoder, a ViT bottleneck (MONAI transformer blocks, conv "
    "position encoding), CNN decoder; skip_connections switch for the SIKD teacher",
    skip_switch=True,
)
def _transunet(
    in_channels: int,
    num_classes: int,
    widths: tuple[int, ...] | list[int] = (32, 64, 128, 256, 512),
    skip_connections: bool = True,
    hidden_size: int = 384,
    num_layers: int = 6,
    num_heads: int = 6,
    mlp_dim: int = 1536,
    dropout: float = 0.0,
) -> SegmentationModel:
    if hidden_size % num_heads:
        raise SpecError(f"transunet hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
    return TransUNet(in_channels, num_classes, widths=tuple(widths), skip_connections=skip_connections,
                     hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, mlp_dim=mlp_dim,
                     dropout=dropout)


@register_model("basic_unet", "MONAI BasicUNet (2D)", teacher_note=KEEPS_SKIPS)
def _basic_unet(
    in_channels: int,
    num_classes: int,
    features: tuple[int, ...] | list[int] = (32, 32, 64, 128, 256, 32),
    dropout: float = 0.0,
) -> SegmentationModel:
    from monai.networks.nets import BasicUNet

    net = BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                    features=tuple(features), dropout=dropout)
    return HookedSegmenter(net, net.final_conv, in_channels, num_classes, size_multiple=16)


@register_model("attention_unet", "MONAI AttentionUnet (2D)", teacher_note=KEEPS_SKIPS)
def _attention_unet(
    in_channels: int,
    num_classes: int,
    channels: tuple[int, ...] | list[int] = (32, 64, 128, 256, 512),
    dropout: float = 0.0,
) -> SegmentationModel:
    channels = tuple(channels)
    if len(channels) > MAX_LEVELS:
        raise SpecError(f"attention_unet channels has {len(channels)} levels; at most {MAX_LEVELS}")
    from monai.networks.nets import AttentionUnet

    strides = (2,) * (len(channels) - 1)
    net = AttentionUnet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                        channels=channels, strides=strides, dropout=dropout)
    return HookedSegmenter(net, net.model[-1], in_channels, num_classes, size_multiple=2 ** len(strides))


@register_model("swin_unetr", "MONAI SwinUNETR (2D Swin-transformer encoder, CNN decoder)",
                teacher_note=KEEPS_SKIPS)
def _swin_unetr(
    in_channels: int,
    num_classes: int,
    feature_size: int = 24,
    depths: tuple[int, ...] | list[int] = (2, 2, 2, 2),
    num_heads: tuple[int, ...] | list[int] = (3, 6, 12, 24),
    window_size: int = 7,
) -> SegmentationModel:
    if any(d > MAX_SWIN_DEPTH for d in depths):  # refused before thousands of transformer blocks are built
        raise SpecError(f"swin_unetr depths are at most {MAX_SWIN_DEPTH} blocks per stage; got {list(depths)[:8]}")
    from monai.networks.nets import SwinUNETR

    if feature_size % 12:
        raise SpecError(f"swin_unetr feature_size must be a multiple of 12; got {feature_size}")
    net = SwinUNETR(in_channels=in_channels, out_channels=num_classes, spatial_dims=2,
                    feature_size=feature_size, depths=tuple(depths), num_heads=tuple(num_heads),
                    window_size=window_size)
    return HookedSegmenter(net, net.out, in_channels, num_classes, size_multiple=32, min_size=64)


def plan_dynunet_filters(image_size: tuple[int, int] | list[int], *, base: int = 32, max_filters: int = 512,
                         max_levels: int = 6, min_bottleneck: int = 4) -> list[int]:
    """nnU-Net's 2D topology plan for ``image_size``: halve the smaller side with stride-2 convolutions while the
    bottleneck keeps at least ``min_bottleneck`` pixels (nnU-Net stops at 4), at most ``max_levels`` resolution
    levels; filters start at ``base`` and double per level up to ``max_filters`` (nnU-Net 2D: 32 and 512)."""
    side = min(int(s) for s in image_size)
    if base < 1 or max_filters < base:
        raise SpecError(f"dynunet filters need 1 <= base <= max_filters; got base {base}, max {max_filters}")
    levels = 1
    while levels < max_levels and side // 2 ** levels >= min_bottleneck:
        levels += 1
    return [min(base * 2 ** i, max_filters) for i in range(levels)]


@register_model(
    "dynunet",
    "MONAI DynUNet, nnU-Net's architecture: two 3x3 conv-instance norm-leaky ReLU per level, stride-2 "
    "downsampling and transposed-conv upsampling; the reference method plans its filters from the image size",
    teacher_note=KEEPS_SKIPS,
)
def _dynunet(
    in_channels: int,
    num_classes: int,
    filters: tuple[int, ...] | list[int] = (32, 64, 128, 256, 512),
    dropout: float = 0.0,
) -> SegmentationModel:
    from monai.networks.nets import DynUNet

    filters = [int(f) for f in filters]
    if not 3 <= len(filters) <= 8 or min(filters) < 1 or max(filters) > 4096:  # MONAI's DynUNet: 3 levels at least
        raise SpecError(f"dynunet filters must be 3 to 8 widths in [1, 4096]; got {filters}")
    strides = [1] + [2] * (len(filters) - 1)
    net = DynUNet(2, in_channels, num_classes, kernel_size=[3] * len(filters), strides=strides,
                  upsample_kernel_size=strides[1:], filters=filters, dropout=dropout or None,
                  norm_name=("instance", {"affine": True}),
                  act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}), deep_supervision=False)
    return HookedSegmenter(net, net.output_block.conv.conv, in_channels, num_classes,
                           size_multiple=2 ** (len(filters) - 1), min_size=2 ** len(filters))
