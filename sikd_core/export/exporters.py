"""Network -> ONNX / TorchScript file, with a numerical check against PyTorch.

ONNX uses PyTorch's ``torch.export``-based exporter (``dynamo=True``, the supported one since 2.9) at
opset :data:`ONNX_OPSET`: the input is ``input`` ``B,C,h,w`` float32 with a dynamic batch size, the output
``logits`` ``B,K,h,w``; height and width are fixed to the training size, because the recipe resizes every
image to it. The graph is one self-contained file (no external weight file).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sikd_core.errors import SIKDError

log = logging.getLogger(__name__)

ONNX_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FORMATS = ("onnx", "torchscript")


def _example(in_channels: int, image_size: tuple[int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, in_channels, *image_size, generator=g)


def export_onnx(model: torch.nn.Module, path: str | Path, in_channels: int, image_size: tuple[int, int],
                opset: int = ONNX_OPSET) -> Path:
    """Write ``model`` (eval mode, CPU) as ONNX with a dynamic batch axis; raises SIKDError if it cannot."""
    try:
        import onnx
    except ImportError:
        raise SIKDError("ONNX export needs the export extra: pip install 'sikd-studio[export]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    x = _example(in_channels, image_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    sink = io.StringIO()
    noisy = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        # The exporter reports its progress on stdout; a library keeps it off the user's terminal.
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True,
                              external_data=False, verbose=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; the user needs the reason
        raise SIKDError(f"ONNX export of {type(model).__name__} failed: {type(e).__name__}: {e}") from None
    finally:
        noisy.setLevel(level)
        if sink.getvalue().strip():
            log.debug("torch.onnx: %s", sink.getvalue().strip())
    onnx.checker.check_model(str(path))
    return path


def export_torchscript(model: torch.nn.Module, path: str | Path, in_channels: int,
                       image_size: tuple[int, int]) -> Path:
    """Write ``model`` as a traced TorchScript module (any batch size; the training height and width)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, _example(in_channels, image_size), check_trace=False)
    traced.save(str(path))
    return path


def run_exported(path: str | Path, fmt: str, batch: np.ndarray) -> np.ndarray:
    """Logits of an exported file for ``B,C,h,w`` float32 inputs (onnxruntime CPU or torch.jit)."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    with torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(torch.from_numpy(batch)).numpy()


def check_exported(model: torch.nn.Module, path: str | Path, fmt: str, in_channels: int,
                   image_size: tuple[int, int], batch: int = 3) -> dict[str, Any]:
    """Max absolute logit difference between the exported file and PyTorch on a random batch whose size
    differs from the export example's (so a batch axis baked in as a constant would fail here)."""
    x = _example(in_channels, image_size, batch=batch, seed=1)
    with torch.no_grad():
        ref = model.cpu().eval()(x).numpy()
    out = run_exported(path, fmt, x.numpy())
    if out.shape != ref.shape:
        raise SIKDError(f"exported model returns shape {out.shape}; PyTorch {ref.shape}")
    return {"batch": batch, "max_abs_logit_diff": float(np.abs(out - ref).max())}
