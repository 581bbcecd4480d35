"""Segmentation networks: the paper's U-Net and adapted MONAI networks, built by name."""

from __future__ import annotations

from sikd_core.models import monai_nets  # noqa: F401 - registers SegResNet, UNet++, FlexibleUNet, UNETR
from sikd_core.models.base import HookedSegmenter, SegmentationModel, fold_batchnorm
from sikd_core.models.plugins import GROUP as PLUGIN_GROUP
from sikd_core.models.plugins import load_plugins
from sikd_core.models.registry import (
    MODELS,
    ModelInfo,
    available_models,
    check_model_kwargs,
    create_model,
    model_info,
    register_model,
)
from sikd_core.models.unet import UNet

__all__ = [
    "MODELS",
    "PLUGIN_GROUP",
    "HookedSegmenter",
    "ModelInfo",
    "SegmentationModel",
    "UNet",
    "available_models",
    "check_model_kwargs",
    "create_model",
    "fold_batchnorm",
    "load_plugins",
    "model_info",
    "register_model",
]
