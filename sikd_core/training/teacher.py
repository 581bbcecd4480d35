"""The frozen SIKD teacher at training time: every student step runs its forward pass once more.

That forward is the whole cost of SIKD over the baseline, so it is made as cheap as the numerics allow:

- BatchNorm folded into the convolutions (:func:`~sikd_core.models.base.fold_batchnorm`; exact in eval);
- the paper's U-Net on CUDA (``mode="auto"``) is compiled with ``torch.compile`` (Inductor fuses each
  conv's bias and ReLU and the pooling/upsampling around it; measured 8.3 -> 4.5 ms on an H200, batch 16
  at 256x256, bf16; about 15 s to compile, once per stage) and holds bf16 weights, which is what autocast
  computes its convolutions with anyway. ``mode="compile"`` compiles other networks too (under autocast,
  float32 weights): their bf16 features then differ from the plain forward's by rounding (Inductor keeps
  fused intermediates in float32), and compiling takes long (SwinUNETR: 70 s), so ``auto`` leaves them eager;
- on CUDA, the teacher runs on a side stream, overlapping the student's forward (``side_stream=True``).

Outputs equal ``model.forward_features`` under the same autocast, up to bf16 rounding (tested on CUDA).
If compiling fails (no working compiler, say), the plain forward is used and the reason kept in
:attr:`FrozenTeacher.fallback_reason`. (Capturing the forward as a CUDA graph was measured too: 1.32x the
baseline step against 1.17x compiled, and a failed capture leaves CUDA's random generator unusable.)
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from sikd_core.models.base import fold_batchnorm
from sikd_core.models.unet import UNet

MODES = ("auto", "eager", "compile")


def _conv_only_unet(model: nn.Module) -> bool:
    """The folded paper U-Net: every op autocast would run is a conv (bf16) or dtype-preserving."""
    return isinstance(model, UNet) and not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                               for m in model.modules())


class FrozenTeacher:
    """Run ``model.forward_features`` frozen, as fast as the device allows.

    Args:
        model: the trained teacher; it is not modified (a BN-folded copy is made and moved to ``device``).
        device: where to run.
        autocast: context-manager factory the forward runs under (the trainer's bf16 autocast, or a no-op);
            pass ``bf16=True`` with it when it is a bf16 autocast.
        channels_last: feed NHWC tensors (as the student).
        mode: ``"eager"`` (plain forward), ``"compile"`` (``torch.compile``, CUDA only) or ``"auto"``:
            compile the paper's U-Net on CUDA, else eager.
        side_stream: on CUDA, run the teacher on its own stream; :meth:`submit` returns before it finishes.
        bf16: the autocast is bf16; lets the compiled paper U-Net hold bf16 weights (same numerics).
    """

    def __init__(self, model: nn.Module, device: torch.device, *,
                 autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                 channels_last: bool = False, mode: str = "auto", side_stream: bool = False, bf16: bool = False):
        if mode not in MODES:
            raise ValueError(f"unknown teacher mode {mode!r}; choose one of {', '.join(MODES)}")
        on_cuda = device.type == "cuda"
        self.model = fold_batchnorm(model).to(device)
        if mode == "auto":
            mode = "compile" if _conv_only_unet(self.model) else "eager"
        self.mode = mode if on_cuda else "eager"
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.device = device
        self.autocast = autocast
        self.channels_last = channels_last
        self.stream = torch.cuda.Stream(device) if side_stream and on_cuda else None
        self.fallback_reason: str | None = None
        self._compiled: Callable[[Tensor], Tensor] | None = None
        self._input_dtype: torch.dtype | None = None
        if self.mode == "compile":
            net = self.model
            if bf16 and _conv_only_unet(net):
                net = copy.deepcopy(net).to(torch.bfloat16)
                self._input_dtype = torch.bfloat16
            self._compiled = torch.compile(net.forward_features, dynamic=False)

    def _forward(self, x: Tensor) -> Tensor:
        with torch.no_grad(), self.autocast():
            return self.model.forward_features(x)

    def _run(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.mode == "compile" and self._compiled is not None:
            try:
                with torch.no_grad():
                    if self._input_dtype is not None:
                        return self._compiled(x.to(self._input_dtype))
                    with self.autocast():
                        return self._compiled(x)
            except Exception as e:  # noqa: BLE001 - Inductor raises many types; eager re-raises real errors
                self.mode, self._compiled = "eager", None
                self.fallback_reason = (f"torch.compile failed, the teacher runs its plain forward: "
                                        f"{type(e).__name__}: {e}")
        return self._forward(x)

    def submit(self, x: Tensor) -> Callable[[], Tensor]:
        """Start the forward on ``x``; the returned function gives the features (``B,F,H,W``).

        With a side stream the forward overlaps whatever the caller launches before calling the result;
        calling it makes the current stream wait for the teacher.
        """
        if self.stream is None:
            out = self._run(x)
            return lambda: out
        main = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(main)  # x is ready
        with torch.cuda.stream(self.stream):
            out = self._run(x)
        x.record_stream(self.stream)

        def result() -> Tensor:
            main.wait_stream(self.stream)
            out.record_stream(main)
            return out

        return result

    def __call__(self, x: Tensor) -> Tensor:
        return self.submit(x)()
