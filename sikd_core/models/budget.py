"""What a spec will cost before it runs: parameters, training memory and optimiser steps.

The network is built and run once on PyTorch's ``meta`` device (shapes only: no weights, no pixels), so the
estimate is exact in sizes and takes milliseconds even for specs no machine could run. A service refuses
specs over its limits before queueing them (see ``sikd_service.experiments``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sikd_core.errors import SpecError
from sikd_core.spec import ExperimentSpec

#: Bytes per parameter while training with Adam in float32: weight, gradient and two moments.
BYTES_PER_PARAMETER = 16
#: Activations are kept for the backward pass (float32); the gradient flowing back is about as large again.
BYTES_PER_ACTIVATION = 8

log = logging.getLogger("sikd.models.budget")


@dataclass(frozen=True)
class Cost:
    """The size of one experiment: network parameters, peak training memory of one step, total steps."""

    parameters: int
    activation_elements: int | None  # None: the network cannot run on the meta device (only parameters counted)
    memory_bytes: int
    steps_per_epoch: int
    total_steps: int

    def as_dict(self) -> dict[str, Any]:
        return {"parameters": self.parameters, "memory_bytes": self.memory_bytes,
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps}


def _activation_elements(model: nn.Module, x: torch.Tensor) -> int:
    """Elements of every leaf module's output in one forward pass (what autograd keeps for backward)."""
    total = 0

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        nonlocal total
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total += t.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


@functools.lru_cache(maxsize=256)
def _network_size(model_name: str, kwargs_json: str, in_channels: int, num_classes: int, batch_size: int,
                  image_size: tuple[int, ...]) -> tuple[int, int | None]:
    """Parameters and activation elements of one network and input shape, measured on the meta device once
    per process (a sweep's experiments share their network: the forward on meta is most of a POST's time)."""
    from sikd_core.models.registry import create_model

    with torch.device("meta"):
        model = create_model(model_name, in_channels, num_classes, **json.loads(kwargs_json))
        params = sum(p.numel() for p in model.parameters())
        min_size = getattr(model, "min_size", 1)
        if min(image_size) < min_size:
            raise ValueError(f"the network needs inputs of at least {min_size} px (each of its levels halves the "
                             "image): use fewer widths or a larger image_size")
        x = torch.empty(batch_size, in_channels, *image_size)
        try:
            acts: int | None = _activation_elements(model, x)
        except (RuntimeError, NotImplementedError) as e:  # e.g. a data-dependent .item() in the forward
            log.info("no activation estimate for %s on the meta device: %s", model_name, e)
            acts = None
    return params, acts


def estimate_cost(spec: ExperimentSpec, *, in_channels: int, num_classes: int, num_pairs: int) -> Cost:
    """Parameters, memory of one training step and optimiser steps of ``spec`` on ``num_pairs`` images.

    The teacher, when SIKD runs, is the same network (without skips), so one network's memory is the peak
    of a training stage; the student additionally runs the frozen teacher forward (its activations are not
    kept), which the estimate ignores.
    """
    try:
        params, acts = _network_size(spec.network, json.dumps(spec.network_kwargs, sort_keys=True), in_channels,
                                     num_classes, spec.batch_size, tuple(spec.image_size))
    except (ValueError, RuntimeError) as e:  # e.g. an input smaller than the network's depth allows
        raise SpecError(f"network {spec.network!r} with network_kwargs {json.dumps(spec.network_kwargs)[:200]} cannot run on images of "
                        f"{spec.image_size[0]}x{spec.image_size[1]} px: {e}") from None
    train_fraction = max(0.0, 1.0 - spec.val_fraction - spec.test_fraction)
    n_train = max(1, int(num_pairs * train_fraction))
    steps = spec.steps_per_epoch or math.ceil(n_train / spec.batch_size)
    stage_epochs = 0
    for kind, _seed in spec.stages():
        stage_epochs += spec.effective_teacher_epochs if kind == "teacher" else spec.epochs
    return Cost(parameters=params, activation_elements=acts,
                memory_bytes=params * BYTES_PER_PARAMETER + (acts or 0) * BYTES_PER_ACTIVATION,
                steps_per_epoch=steps, total_steps=steps * stage_epochs)
