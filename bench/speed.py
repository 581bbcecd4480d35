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

from sikd_core.classmean import METHODS, class_mean_image, default_method
from sikd_core.methods import MethodTrainer, create_method, parse_method
from sikd_core.methods.sdm import signed_distance_maps
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


TEACHER_MODES = {
    # name: (FrozenTeacher mode, side stream); on CPU every mode is the plain forward, so only "eager" runs.
    "eager": ("eager", False),
    "compile": ("compile", False),
    "compile+stream": ("compile", True),  # the trainer's default on CUDA
}


def bench_steps(args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    widths = tuple(args.widths)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = (torch.rand(args.batch, args.size, args.size, device=device) * args.classes).long()
    cfg = TrainConfig(epochs=1, batch_size=args.batch, device=str(device), amp=not args.no_amp,
                      channels_last=not args.no_channels_last)
    k = args.classes
    torch.manual_seed(0)
    base = Trainer(create_model("unet", 3, k, widths=widths), (x.cpu(), y.cpu()), None, cfg, num_classes=k)
    torch.manual_seed(0)
    teacher = create_model("unet", 3, k, widths=widths, skip_connections=False)
    modes = args.teacher_modes if device.type == "cuda" else ["eager"]
    fns: dict[str, Callable[[], object]] = {"baseline": lambda: base.train_step(x, y)}
    trainers = {}
    for mode in modes:
        teacher_mode, stream = TEACHER_MODES[mode]
        sikd = DistillationTrainer(create_model("unet", 3, k, widths=widths), (x.cpu(), y.cpu()), None, cfg,
                                   num_classes=k, teacher=teacher, alpha=2.0, teacher_mode=teacher_mode,
                                   teacher_side_stream=stream,
                                   teacher_input_fn=lambda i, lab: class_mean_image(i, lab, k, check_labels=False))
        trainers[mode] = sikd
        fns[f"sikd[{mode}]"] = lambda s=sikd: s.train_step(x, y)
    for t in (base, *trainers.values()):
        t._setup()
        t.model.train()
    main = trainers[modes[-1]]

    def teacher_forward() -> None:
        main.frozen_teacher(class_mean_image(x, y, k, check_labels=False))

    fns["teacher_forward"] = teacher_forward
    times = interleaved(fns, device, args.reps, args.steps)
    med = {k2: statistics.median(v) for k2, v in times.items()}
    sikd_modes = {m: {"sikd_s": med[f"sikd[{m}]"], "ratio": med[f"sikd[{m}]"] / med["baseline"]} for m in modes}
    best = min(sikd_modes, key=lambda m: sikd_modes[m]["sikd_s"])
    return {"widths": list(widths), "batch": args.batch, "size": args.size, "amp_bf16": base.use_amp,
            "channels_last": base.channels_last, "baseline_s": med["baseline"], "modes": sikd_modes,
            "default_mode": modes[-1], "best_mode": best, "sikd_s": sikd_modes[modes[-1]]["sikd_s"],
            "teacher_forward_s": med["teacher_forward"], "ratio": sikd_modes[modes[-1]]["ratio"], "raw": times}


SEVEN = ("baseline", "sikd", "sdm", "gin", "gin+sikd", "maxstyle", "maxstyle+sikd")


def bench_methods(args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    """Every method's real training step (its trainer's ``train_step``), interleaved with the baseline's on the
    same batch and model size; plus the SDM targets alone (issue: <= 25% of a step)."""
    widths = tuple(args.method_widths)
    size, k = args.method_size, args.classes
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, size, size, generator=g).to(device)
    y = torch.zeros(args.batch, size, size, dtype=torch.long)
    y[:, size // 4: size // 2, size // 3: 2 * size // 3] = 1  # blob-shaped labels, as real masks
    y = y.to(device)
    cfg = TrainConfig(epochs=1, batch_size=args.batch, device=str(device), amp=not args.no_amp,
                      channels_last=not args.no_channels_last)
    torch.manual_seed(0)
    teacher = create_model("unet", 1, k, widths=widths, skip_connections=False)
    cm = lambda i, lab: class_mean_image(i, lab, k, check_labels=False)  # noqa: E731
    trainers: dict[str, Trainer] = {}
    for name in SEVEN:
        torch.manual_seed(0)
        model = create_model("unet", 1, k, widths=widths)
        data = (x.cpu(), y.cpu())
        base, distilled = parse_method(name)
        if name == "baseline":
            t: Trainer = Trainer(model, data, None, cfg, num_classes=k)
        elif name == "sikd":
            t = DistillationTrainer(model, data, None, cfg, num_classes=k, teacher=teacher, alpha=2.0,
                                    teacher_input_fn=cm)
        else:
            t = MethodTrainer(model, data, None, cfg, num_classes=k,
                              method=create_method(base, model, in_channels=1, num_classes=k),
                              teacher=teacher if distilled else None, alpha=2.0, teacher_input_fn=cm)
        t._setup()
        t.model.train()
        trainers[name] = t
    fns: dict[str, Callable[[], object]] = {n: (lambda t=t: t.train_step(x, y)) for n, t in trainers.items()}
    fns["sdm_targets"] = lambda: signed_distance_maps(y, k)
    times = interleaved(fns, device, args.reps, args.steps, warmup=1)
    med = {n: statistics.median(v) for n, v in times.items()}
    return {"widths": list(widths), "size": size, "batch": args.batch, "classes": k,
            "step_s": {n: med[n] for n in SEVEN}, "ratio": {n: med[n] / med["baseline"] for n in SEVEN},
            "sdm_targets_s": med["sdm_targets"], "sdm_targets_ratio": med["sdm_targets"] / med["baseline"],
            "raw": times}


def bench_classmean(args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 256, 256, generator=g).to(device)
    labels = torch.randint(0, 4, (16, 256, 256), generator=g).to(device)
    fast = class_mean_image(images, labels, 4)
    slow = naive_class_mean(images, labels, 4)
    err = max(float((fast - slow).abs().max()), float((fast - class_loop_mean(images, labels, 4)).abs().max()))
    fns: dict[str, Callable[[], object]] = {"batched": lambda: class_mean_image(images, labels, 4)}
    for method in METHODS[1:]:
        fns[method] = lambda m=method: class_mean_image(images, labels, 4, method=m)
    fns["loop"] = lambda: naive_class_mean(images, labels, 4)
    fns["class_loop"] = lambda: class_loop_mean(images, labels, 4)
    times = interleaved(fns, device, args.reps, 3, warmup=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"shape": [16, 3, 256, 256], "classes": 4, "batched_s": med["batched"], "loop_s": med["loop"],
            "class_loop_s": med["class_loop"], "speedup": med["loop"] / med["batched"],
            "methods_s": {m: med[m] for m in METHODS[1:]},
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
    p.add_argument("--teacher-modes", nargs="+", choices=list(TEACHER_MODES), default=list(TEACHER_MODES),
                   help="SIKD teacher variants to time on CUDA (the last is the reported ratio)")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--methods-only", action="store_true", help="only the training methods' step-time ratios")
    p.add_argument("--method-size", type=int, default=64, help="image size of the methods' comparison")
    p.add_argument("--method-widths", type=int, nargs="+", default=[16, 32, 64, 128],
                   help="U-Net widths of the methods' comparison (the benchmark's small U-Net)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    ms = bench_methods(args, device)
    print(f"\nTraining step of every method, U-Net widths {ms['widths']}, batch {ms['batch']}x1x{ms['size']}^2, "
          f"{ms['classes']} classes, measured side by side (interleaved, median of {args.reps})")
    print("| method | step time (ms) | / baseline |\n|---|---|---|")
    for n in SEVEN:
        print(f"| {n} | {ms['step_s'][n] * 1e3:.1f} | {ms['ratio'][n]:.3f} |")
    print(f"| of which: SDM targets (exact EDT, batched) | {ms['sdm_targets_s'] * 1e3:.1f} | "
          f"{ms['sdm_targets_ratio']:.3f} |")
    print(f"SDM / baseline step-time ratio: {ms['ratio']['sdm']:.3f} (target <= 1.25: "
          f"{'met' if ms['ratio']['sdm'] <= 1.25 else 'NOT met'})")
    if args.methods_only:
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"device": str(device), "device_name": name, "methods": ms}, f, indent=1)
        return 0
    steps = bench_steps(args, device)
    print(f"\nTraining step, paper U-Net widths {steps['widths']}, batch {steps['batch']}x3x{steps['size']}^2, "
          f"bf16 autocast {steps['amp_bf16']}, channels_last {steps['channels_last']}")
    print("| method | step time (ms) | / baseline |\n|---|---|---|")
    print(f"| baseline | {steps['baseline_s'] * 1e3:.1f} | 1.000 |")
    for mode, m in steps["modes"].items():
        print(f"| SIKD, teacher {mode} (teacher fwd + student + MSE) | {m['sikd_s'] * 1e3:.1f} | {m['ratio']:.3f} |")
    print(f"| of which: frozen teacher forward on the class-mean batch ({steps['default_mode']}) | "
          f"{steps['teacher_forward_s'] * 1e3:.1f} | |")
    print(f"SIKD / baseline step-time ratio ({steps['default_mode']}): {steps['ratio']:.3f} (target <= 1.25: "
          f"{'met' if steps['ratio'] <= 1.25 else 'NOT met'})")
    cm = bench_classmean(args, device)
    print("\nClass-mean image, 16x3x256x256, 4 classes")
    print("| implementation | time (ms) |\n|---|---|")
    print(f"| batched (sikd_core, method auto = {default_method(device)}) | {cm['batched_s'] * 1e3:.2f} |")
    for method, sec in cm["methods_s"].items():
        print(f"| batched, method {method} | {sec * 1e3:.2f} |")
    print(f"| Python loop per image, class, channel | {cm['loop_s'] * 1e3:.2f} |")
    print(f"| Python loop per class (vectorised over batch/channels) | {cm['class_loop_s'] * 1e3:.2f} |")
    print(f"speed-up over the per-image/class loop: {cm['speedup']:.1f}x (target >= 20x: "
          f"{'met' if cm['speedup'] >= 20 else 'NOT met'}); over the per-class loop: "
          f"{cm['speedup_vs_class_loop']:.1f}x; max |difference| {cm['max_abs_diff']:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "device_name": name, "steps": steps, "classmean": cm, "methods": ms},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
