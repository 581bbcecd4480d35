"""Deployable models: ONNX / TorchScript export bundles with their preprocessing recipe, model cards and
optional MLflow tracking. Needs the ``export`` extra (onnx, onnxruntime, onnxscript) for ONNX."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sikd_core.lazy import lazy_attributes

if TYPE_CHECKING:
    from sikd_core.export.bundle import make_recipe, write_bundle, write_card, zip_bundle
    from sikd_core.export.card import (
        build_card,
        card_for_bundle,
        content_hash,
        dataset_facts,
        render_card_markdown,
    )
    from sikd_core.export.exporters import FORMATS, ONNX_OPSET

#: Imported on first use (:mod:`sikd_core.lazy`): the bundles need PyTorch, the model card does not.
_WHERE = {"make_recipe": "bundle", "write_bundle": "bundle", "write_card": "bundle", "zip_bundle": "bundle",
          "build_card": "card", "card_for_bundle": "card", "content_hash": "card", "dataset_facts": "card",
          "render_card_markdown": "card", "FORMATS": "exporters", "ONNX_OPSET": "exporters"}
__getattr__ = lazy_attributes(__name__, _WHERE, globals())

__all__ = ["FORMATS", "ONNX_OPSET", "build_card", "card_for_bundle", "content_hash", "dataset_facts",
           "make_recipe", "render_card_markdown", "write_bundle", "write_card", "zip_bundle"]
