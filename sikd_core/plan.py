"""``sikd plan``: a spec planned from the dataset's fingerprint and the device, the way nnU-Net plans.

nnU-Net reads a dataset fingerprint (image sizes, spacing, intensities) and plans its configuration from it and
the GPU's memory: the patch size from the median image shape, the network topology from the patch size (down-
sample while the bottleneck keeps at least 4 pixels), the batch size from the memory the network needs, capped at
5% of the dataset. This does the same for SIKD Studio's 2D experiments:

- fingerprint: number of pairs, median image size and aspect, channels, classes, foreground fraction of every
  class (from an evenly spread sample of up to 32 pairs, :func:`sikd_core.data.scan.sampled_stats`);
- image size: the median aspect, the longer side capped by the device (a CPU trains at 128-192 px, a GPU at
  256-512 px by memory) and never above the median image; one step larger when a class covers under 1% of
  the pixels (small structures need the resolution); rounded to a multiple of 32;
- network: the paper's U-Net, one level per halving while the bottleneck keeps >= 8 pixels (at most five),
  base width 16 on a CPU, 32 on a GPU under 16 GiB, the paper's 64 above;
- batch: on a GPU from the measured peak memory of a training step (half the memory for activations), on a
  CPU 8; capped at 5% of the training images (nnU-Net's cap), at least 2;
- epochs: enough for ``target_steps`` optimiser steps per stage, reduced to fit ``budget_minutes``;
- estimated run time: *measured* here: a few training steps of the proposed network at the proposed batch and
  size (forward, Dice+CE, backward, Adam; and the student's step with the teacher's forward and the feature
  MSE), plus the validation and evaluation passes and the time to read the images, for every seed and stage.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from sikd_core.errors import SIKDError

ROUND = 32


def fingerprint(dataset: str | os.PathLike[str], mask_mode: str = "auto") -> dict[str, Any]:
    """What the plan needs to know about a dataset, from a sample of its pairs (seconds, not minutes)."""
    from sikd_core.data.formats import load_dataset

    t0 = time.monotonic()
    manifest = load_dataset(dataset, mask_mode=mask_mode, scan=False)
    fp = fingerprint_of(manifest)
    fp["dataset"], fp["load_seconds"] = str(dataset), round(time.monotonic() - t0, 2)
    return fp


def fingerprint_of(manifest: Any, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fingerprint of a loaded :class:`~sikd_core.data.Manifest`: an evenly spread sample of its pairs is
    read (and timed: the cost of reading one pair); ``stats`` (the full scan of an uploaded dataset), when
    given, supplies the sizes and class fractions instead of the sample's."""
    from sikd_core.data.scan import sampled_stats

    t1 = time.monotonic()
    sample = sampled_stats(manifest)
    read_s = (time.monotonic() - t1) / max(1, sample["sampled"])  # one pair read and checked
    stats = stats or sample
    sizes: list[tuple[int, int, int]] = []  # (h, w, count)
    for key, n in stats["image_sizes"].items():
        w, h = (int(v) for v in key.split("x"))
        sizes.append((h, w, int(n)))
    med_h, med_w = _weighted_median([(h, n) for h, _, n in sizes]), _weighted_median([(w, n) for _, w, n in sizes])
    fg = [c["pixel_fraction"] for c in stats["classes"][1:]]
    return {
        "dataset": manifest.name,
        "name": manifest.name,
        "pairs": len(manifest.samples),
        "groups": stats["groups"],
        "median_size": [med_h, med_w],
        "aspect": round(med_w / med_h, 3),
        "min_size": [stats["min_height"], stats["min_width"]],
        "max_size": [stats["max_height"], stats["max_width"]],
        "in_channels": manifest.in_channels,
        "num_classes": manifest.num_classes,
        "class_names": list(manifest.class_names),
        "foreground_fraction": round(float(sum(fg)), 4),
        "class_fractions": {c["name"]: round(c["pixel_fraction"], 4) for c in stats["classes"]},
        "sampled": stats.get("sampled", len(manifest.samples)),
        "read_seconds_per_pair": round(read_s, 4),
    }


def _weighted_median(values: list[tuple[int, int]]) -> int:
    values = sorted(values)
    total, acc = sum(n for _, n in values), 0
    for v, n in values:
        acc += n
        if 2 * acc >= total:
            return v
    return values[-1][0]


def device_info(device: str = "auto") -> dict[str, Any]:
    """The device the plan is for: a CUDA GPU's name and memory, else the CPU's cores (torch's threads)."""
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise SIKDError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")
    if device != "cpu" and torch.cuda.is_available():
        dev = torch.device(device if device.startswith("cuda") else "cuda")
        props = torch.cuda.get_device_properties(dev)
        return {"kind": "cuda", "device": str(dev), "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1)}
    if device.startswith("cuda"):
        raise SIKDError(f"device {device!r} asked for but CUDA is not available here")
    return {"kind": "cpu", "device": "cpu", "cores": os.cpu_count() or 1, "threads": torch.get_num_threads()}


def _round(x: float, multiple: int = ROUND, lo: int = ROUND) -> int:
    return max(lo, int(x / multiple + 0.5) * multiple)  # half up: 4.5 multiples are 5


def plan_image_size(fp: dict[str, Any], dev: dict[str, Any]) -> tuple[list[int], list[str]]:
    med_h, med_w = fp["median_size"]
    if dev["kind"] == "cpu":
        cap = 128 if dev["cores"] <= 4 else 192
    else:
        cap = 256 if dev["memory_gib"] < 16 else 384 if dev["memory_gib"] < 40 else 512
    why = [f"longer side capped at {cap} px for {dev['kind']}"]
    fractions = [v for k, v in fp["class_fractions"].items() if k != fp["class_names"][0]]
    if fractions and min(fractions) < 0.01:
        cap = _round(cap * 1.5)
        why.append(f"a class covers {min(fractions):.2%} of the pixels (< 1%): one step larger, {cap} px")
    longer = min(cap, max(med_h, med_w))
    if longer < cap:
        why.append(f"not above the median image ({med_h}x{med_w})")
    scale = longer / max(med_h, med_w)
    size = [_round(med_h * scale), _round(med_w * scale)]
    why.append(f"median aspect {fp['aspect']} kept, sides rounded to multiples of {ROUND}")
    return size, why


def plan_widths(image_size: list[int], dev: dict[str, Any]) -> tuple[list[int], str]:
    side = min(image_size)
    levels = 2
    while levels < 5 and side // 2 ** levels >= 8:
        levels += 1
    base = 16 if dev["kind"] == "cpu" else 32 if dev["memory_gib"] < 16 else 64
    widths = [min(base * 2**i, 1024) for i in range(levels)]
    return widths, f"{levels} levels (bottleneck {side // 2 ** (levels - 1)} px), base width {base} for {dev['kind']}"


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


def plan(dataset: str | os.PathLike[str] | int, *, eval_datasets: list[Any] | None = None, device: str = "auto",
         seeds: list[int] | None = None, budget_minutes: float | None = None, target_steps: int = 3000,
         name: str | None = None, measure: bool = True, fp: dict[str, Any] | None = None,
         eval_pairs: int | None = None) -> dict[str, Any]:
    """The proposed spec (``plan["spec"]``, accepted by ``sikd run``), the fingerprint, the device and the
    estimate. ``measure=False`` skips the step-time measurement (no estimate). The service passes ``fp`` (the
    fingerprint of a stored dataset), ``dataset`` and ``eval_datasets`` as ids and ``eval_pairs``."""
    if target_steps < 1:
        raise SIKDError(f"target_steps must be >= 1; got {target_steps}")
    if budget_minutes is not None and budget_minutes <= 0:
        raise SIKDError(f"budget_minutes must be > 0; got {budget_minutes}")
    fp = fp or fingerprint(dataset)  # type: ignore[arg-type]
    dev = device_info(device)
    seeds = list(seeds or [0])
    budget = budget_minutes if budget_minutes is not None else (30.0 if dev["kind"] == "cpu" else 240.0)
    image_size, why_size = plan_image_size(fp, dev)
    widths, why_net = plan_widths(image_size, dev)
    kwargs = {"widths": widths}
    n_train = max(1, round(fp["pairs"] * 0.7))  # the spec's default split: 70% train, 10% val, 20% test
    n_val, n_test = round(fp["pairs"] * 0.1), round(fp["pairs"] * 0.2)
    cap = max(2, math.floor(0.05 * n_train))
    reasons = {"image_size": why_size, "network": why_net}
    if dev["kind"] == "cuda" and measure:
        probe = measure_steps("unet", kwargs, fp["in_channels"], fp["num_classes"], image_size, 2, dev["device"], 1)
        per_sample = probe["peak_gib"] / 2
        batch = max(2, min(cap, 64, int(0.5 * dev["memory_gib"] / per_sample)))
        reasons["batch"] = f"{per_sample:.2f} GiB per image measured; half the GPU, at most 5% of the training set"
    else:
        batch = max(2, min(8, cap))
        reasons["batch"] = "8 on a CPU, at most 5% of the training set (nnU-Net's cap), at least 2"
    steps_per_epoch = math.ceil(n_train / batch)
    epochs = max(5, min(300, math.ceil(target_steps / steps_per_epoch)))
    spec: dict[str, Any] = {
        "name": name or f"{fp['name']}-planned",
        "train_dataset": dataset if isinstance(dataset, int) else str(dataset),
        "eval_datasets": [d if isinstance(d, int) else str(d) for d in eval_datasets or []],
        "network": "unet",
        "network_kwargs": kwargs,
        "image_size": image_size,
        "epochs": epochs,
        "batch_size": batch,
        "lr": 1e-3,
        "seeds": seeds,
        "methods": ["baseline", "sikd"],
        "device": dev["device"] if dev["kind"] == "cuda" else "cpu",
    }
    out: dict[str, Any] = {"spec": spec, "fingerprint": fp, "device": dev, "reasons": reasons, "estimate": None}
    if not measure:
        return out
    t = measure_steps("unet", kwargs, fp["in_channels"], fp["num_classes"], image_size, batch,
                      dev["device"] if dev["kind"] == "cuda" else "cpu")
    n_eval = n_test + (eval_pairs if eval_pairs is not None else sum(_pairs(d) for d in eval_datasets or []))

    def stages(ep: int) -> dict[str, float]:
        val = math.ceil(n_val / batch) * t["forward_s"]  # validation pass after every epoch
        per_stage = ep * (steps_per_epoch * t["step_s"] + val)
        return {"baseline": per_stage, "teacher": per_stage, "student": ep * (steps_per_epoch * t["student_step_s"] + val)}

    def total(ep: int) -> float:
        evaluation = 2 * math.ceil(n_eval / batch) * t["forward_s"]  # baseline and student on every test image
        return len(seeds) * (sum(stages(ep).values()) + evaluation)

    read = (fp["pairs"] + n_eval - n_test) * fp["read_seconds_per_pair"]  # images read and resized once
    if total(epochs) + read > budget * 60:  # fit the budget, keeping at least 5 epochs
        fitted = max(5, int(epochs * (budget * 60 - read) / max(total(epochs), 1e-9)))
        reasons["epochs"] = (f"{target_steps} steps would take {(total(epochs) + read) / 60:.1f} min: cut to "
                             f"{fitted} epochs for the {budget:g} min budget")
        epochs = min(epochs, fitted)
        spec["epochs"] = epochs
    else:
        reasons["epochs"] = f"{target_steps} optimiser steps per stage ({steps_per_epoch} per epoch), 5 to 300 epochs"
    seconds = total(epochs) + read
    out["estimate"] = {"seconds": round(seconds, 1), "minutes": round(seconds / 60, 1),
                       "step_seconds": round(t["step_s"], 4), "student_step_seconds": round(t["student_step_s"], 4),
                       "forward_seconds": round(t["forward_s"], 4), "steps_per_epoch": steps_per_epoch,
                       "stages": 3 * len(seeds), "budget_minutes": budget,
                       "stage_seconds": {k: round(v, 1) for k, v in stages(epochs).items()}}
    return out


def _pairs(dataset: str) -> int:
    from sikd_core.data.formats import load_dataset

    return len(load_dataset(dataset, scan=False).samples)


def plan_yaml(result: dict[str, Any]) -> str:
    """The spec as YAML for ``sikd run``, with the fingerprint, device and estimate as comments."""
    import yaml

    fp, dev, est = result["fingerprint"], result["device"], result["estimate"]
    where = (f"{dev['name']}, {dev['memory_gib']} GiB" if dev["kind"] == "cuda"
             else f"CPU, {dev['cores']} cores ({dev['threads']} torch threads)")
    lines = [f"# sikd plan for {fp['name']}: {fp['pairs']} pairs, median {fp['median_size'][0]}x"
             f"{fp['median_size'][1]} (h x w), {fp['in_channels']} channel(s), {fp['num_classes']} classes, "
             f"foreground {fp['foreground_fraction']:.1%} (sampled {fp['sampled']} pairs)",
             f"# device: {where}"]
    for key, why in result["reasons"].items():
        lines.append(f"# {key}: {'; '.join(why) if isinstance(why, list) else why}")
    if est:
        lines.append(f"# estimated run time: {est['minutes']} min for {est['stages']} stages (measured here: "
                     f"{est['step_seconds']} s per step, {est['student_step_seconds']} s per student step, "
                     f"{est['steps_per_epoch']} steps per epoch)")
    return "\n".join(lines) + "\n" + yaml.safe_dump(result["spec"], sort_keys=False)


def write_plan(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.write_text(plan_yaml(result))
    return p
