"""Speed benchmark: SIKD step time over the baseline's, and class-mean images against a Python loop.

Both sides of each ratio are measured in the same run, interleaved (A B A B ...), on the same model,
batch and device; the ratio uses the median of the repetitions. The training steps are the real ones
(`Trainer.train_step` and `DistillationTrainer.train_step`: autocast, channels_last, optimiser step).

    python bench/speed.py                         # paper's U-Net (64..1024), CPU-friendly size
    python bench/speed.py --device cuda --size 256 --batch 16
    python bench/speed.py --json out.json

Targets (issue 2): SIKD/baseline step-time ratio <= 1.25 on the paper's U-Net; class mean >= 20x
faster than a per-class loop at 16x3x256x256 with 4 classes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from sikd_core.classmean import class_mean_image
from sikd_core.models import create_model
from sikd_core.training import DistillationTrainer, TrainConfig, Trainer, resolve_device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, n: int) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def interleaved(fns: dict[str, Callable[[], object]], device: torch.device, reps: int, n: int,
                warmup: int = 2) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            times[k].append(timed(fn, device, n))
    return times


def naive_class_mean(images: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 1 written as loops: per image, per class, per channel (masked mean), the literal way."""
    out = torch.empty_like(images)
    for b in range(images.shape[0]):
        for c in range(k):
            mask = labels[b] == c
            if mask.any():
                for ch in range(images.shape[1]):
                    out[b, ch][mask] = images[b, ch][mask].mean()
    return out


def class_loop_mean(images: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """A per-class Python loop vectorised over the batch and channels (a stronger reference)."""
    out = torch.zeros_like(images)
    for c in range(k):
        m = (labels == c).unsqueeze(1).to(images.dtype)
        s = (images * m).sum((2, 3), keepdim=True)
        n = m.sum((2, 3), keepdim=True).clamp_min(1)
        out += m * (s / n)
    return out


def bench_steps(args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    widths = tuple(args.widths)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = (torch.rand(args.batch, args.size, args.size, device=device) * args.classes).long()
    cfg = TrainConfig(epochs=1, batch_size=args.batch, device=str(device), amp=not args.no_amp,
                      channels_last=not args.no_channels_last)
    torch.manual_seed(0)
    base = Trainer(create_model("unet", 3, args.classes, widths=widths), (x.cpu(), y.cpu()), None, cfg,
                   num_classes=args.classes)
    torch.manual_seed(0)
    teacher = create_model("unet", 3, args.classes, widths=widths, skip_connections=False)
    k = args.classes
    sikd = DistillationTrainer(create_model("unet", 3, args.classes, widths=widths), (x.cpu(), y.cpu()), None, cfg,
                               num_classes=k, teacher=teacher, alpha=2.0,
                               teacher_input_fn=lambda i, lab: class_mean_image(i, lab, k))
    for t in (base, sikd):
        t._setup()
        t.model.train()
    def teacher_forward() -> None:
        with torch.no_grad(), sikd.autocast():
            sikd.teacher.forward_features(sikd.model_input(class_mean_image(x, y, k), y))

    times = interleaved({"baseline": lambda: base.train_step(x, y), "sikd": lambda: sikd.train_step(x, y),
                         "teacher_forward": teacher_forward}, device, args.reps, args.steps)
    med = {k2: statistics.median(v) for k2, v in times.items()}
    return {"widths": list(widths), "batch": args.batch, "size": args.size, "amp_bf16": base.use_amp,
            "channels_last": base.channels_last, "baseline_s": med["baseline"], "sikd_s": med["sikd"],
            "teacher_forward_s": med["teacher_forward"], "ratio": med["sikd"] / med["baseline"], "raw": times}


def bench_classmean(args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 256, 256, generator=g).to(device)
    labels = torch.randint(0, 4, (16, 256, 256), generator=g).to(device)
    fast = class_mean_image(images, labels, 4)
    slow = naive_class_mean(images, labels, 4)
    err = max(float((fast - slow).abs().max()), float((fast - class_loop_mean(images, labels, 4)).abs().max()))
    times = interleaved({"batched": lambda: class_mean_image(images, labels, 4),
                         "loop": lambda: naive_class_mean(images, labels, 4),
                         "class_loop": lambda: class_loop_mean(images, labels, 4)}, device, args.reps, 3, warmup=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"shape": [16, 3, 256, 256], "classes": 4, "batched_s": med["batched"], "loop_s": med["loop"],
            "class_loop_s": med["class_loop"], "speedup": med["loop"] / med["batched"],
            "speedup_vs_class_loop": med["class_loop"] / med["batched"], "max_abs_diff": err}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--steps", type=int, default=3, help="steps per timed repetition")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median is reported)")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    steps = bench_steps(args, device)
    print(f"\nTraining step, paper U-Net widths {steps['widths']}, batch {steps['batch']}x3x{steps['size']}^2, "
          f"bf16 autocast {steps['amp_bf16']}, channels_last {steps['channels_last']}")
    print("| method | step time (ms) |\n|---|---|")
    print(f"| baseline | {steps['baseline_s'] * 1e3:.1f} |\n| SIKD (teacher fwd + student + MSE) | "
          f"{steps['sikd_s'] * 1e3:.1f} |")
    print(f"| of which: frozen teacher forward on the class-mean batch | {steps['teacher_forward_s'] * 1e3:.1f} |")
    print(f"SIKD / baseline step-time ratio: {steps['ratio']:.3f} (target <= 1.25: "
          f"{'met' if steps['ratio'] <= 1.25 else 'NOT met'})")
    cm = bench_classmean(args, device)
    print("\nClass-mean image, 16x3x256x256, 4 classes")
    print("| implementation | time (ms) |\n|---|---|")
    print(f"| batched (scatter-add + gather, sikd_core) | {cm['batched_s'] * 1e3:.2f} |")
    print(f"| Python loop per image, class, channel | {cm['loop_s'] * 1e3:.2f} |")
    print(f"| Python loop per class (vectorised over batch/channels) | {cm['class_loop_s'] * 1e3:.2f} |")
    print(f"speed-up over the per-image/class loop: {cm['speedup']:.1f}x (target >= 20x: "
          f"{'met' if cm['speedup'] >= 20 else 'NOT met'}); over the per-class loop: "
          f"{cm['speedup_vs_class_loop']:.1f}x; max |difference| {cm['max_abs_diff']:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "device_name": name, "steps": steps, "classmean": cm}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
