"""Training steps timed on this process's device: what a plan's or an estimate's run time rests on.

Imports PyTorch and builds the network on a real device: the CLI's ``sikd plan`` calls it on the user's own machine,
and the workers' step-timing task (``worker.tasks.run_step_timing``) on theirs. The API never does (it reads the
timings the workers stored: :mod:`sikd_service.steptimes`).
"""

from __future__ import annotations

import time
from typing import Any

import torch


def measure_steps(network: str, network_kwargs: dict[str, Any], in_channels: int, num_classes: int,
                  image_size: list[int], batch: int, device: str, steps: int = 5) -> dict[str, float]:
    """Seconds per training step of the baseline/teacher and of the SIKD student (teacher forward + feature MSE),
    per no-grad forward of a batch, and the peak GPU memory of a step, measured on ``device``."""
    from sikd_core.losses import FeatureDistillationLoss, build_seg_loss
    from sikd_core.models import create_model

    dev = torch.device(device)
    torch.manual_seed(0)
    model = create_model(network, in_channels, num_classes, **network_kwargs).to(dev)
    teacher = create_model(network, in_channels, num_classes, **network_kwargs).to(dev).eval()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seg, mse = build_seg_loss("dice_ce", num_classes), FeatureDistillationLoss(2.0)
    x = torch.rand(batch, in_channels, *image_size, device=dev)
    y = torch.randint(0, num_classes, (batch, *image_size), device=dev)
    cuda = dev.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def step(distil: bool) -> None:
        with amp:
            logits, feats = model.forward_with_features(x)
            loss = seg(logits.float(), y)
            if distil:
                with torch.no_grad():
                    t_feats = teacher.forward_features(x)
                loss = loss + mse(feats.float(), t_feats.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn: Any) -> float:
        """The median of ``steps`` timed calls after a warm-up: robust to a spike of a shared machine."""
        fn()  # warm-up (allocations, cuDNN autotuning)
        sync()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    out = {"step_s": timed(lambda: step(False))}
    if cuda:
        out["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    out["student_step_s"] = timed(lambda: step(True))
    with torch.no_grad():
        out["forward_s"] = timed(lambda: model(x))
    return out


