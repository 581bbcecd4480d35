"""Deployable models: ONNX / TorchScript export bundles with their preprocessing recipe, model cards and
optional MLflow tracking. Needs the ``export`` extra (onnx, onnxruntime, onnxscript) for ONNX."""

from __future__ import annotations

from sikd_core.export.bundle import make_recipe, write_bundle, write_card, zip_bundle
from sikd_core.export.card import (
           build_card,
           card_for_bundle,
           content_hash,
           dataset_facts,
           render_card_markdown,
)
from sikd_core.export.exporters import FORMATS, ONNX_OPSET

__all__ = ["FORMATS", "ONNX_OPSET", "build_card", "card_for_bundle", "content_hash", "dataset_facts",
           "make_recipe", "render_card_markdown", "write_bundle", "write_card", "zip_bundle"]
