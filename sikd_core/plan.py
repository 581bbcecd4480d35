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
- batch: on a GPU the most images whose training step fits half the GPU's memory by the memory model that
  ``POST /experiments`` checks specs with (:mod:`sikd_core.models.budget`: Adam's 16 bytes per parameter, plus the
  frozen teacher's weights, and 8 bytes per activation element, counted for the U-Net in closed form: no GPU
  needed); the image is made smaller when not even 2 images fit; on a CPU 8; capped at 5% of the training images
  (nnU-Net's cap) and 64, at least 2;
- epochs: enough for ``target_steps`` optimiser steps per stage, reduced to fit ``budget_minutes``;
- estimated run time: from *measured* step times: the proposed network's training step (forward, Dice+CE,
  backward, Adam), the student's step (with the teacher's forward and the feature MSE) and a forward pass, plus the
  validation and evaluation passes and the time to read the images, for every seed and stage. ``sikd plan`` times a
  few steps here (:mod:`sikd_core.steptime`); the service passes the steps its workers timed (``timings``).

The device is this machine's (:func:`device_info`) or a described one (:func:`describe_device`: a GPU's memory or
a CPU's cores), so a plan can be made for another machine. This module imports no PyTorch: the API plans with it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sikd_core.errors import SIKDError

ROUND = 32
#: The memory model of sikd_core.models.budget (a test keeps them equal): Adam's bytes per parameter (weight,
#: gradient, two moments) and per activation element (kept for backward, and the gradient flowing back).
BYTES_PER_PARAMETER = 16
BYTES_PER_ACTIVATION = 8
#: A SIKD student's step also holds its frozen teacher's weights (float32).
TEACHER_BYTES_PER_PARAMETER = 4
#: The share of a GPU's memory the planned step may fill (the rest: allocator slack, cuDNN workspaces, the data).
MEMORY_SHARE = 0.5
MAX_BATCH = 64
#: What a described device may be (a typo such as 8000 GiB is refused, not planned for).
MAX_MEMORY_GIB = 4096.0
MAX_CORES = 4096
#: ``timings(config)``: the step times of a planned configuration, ``{step_s, student_step_s, forward_s, basis}``,
#: or without ``step_s`` (``{basis}``: not measured yet, and why).
Timings = Callable[[dict[str, Any]], dict[str, Any]]


def fingerprint(dataset: str | os.PathLike[str], mask_mode: str = "auto") -> dict[str, Any]:
    """What the plan needs to know about a dataset, from a sample of its pairs (seconds, not minutes)."""
    from sikd_core.data.formats import load_dataset

    t0 = time.monotonic()
    manifest = load_dataset(dataset, mask_mode=mask_mode, scan=False)
    fp = fingerprint_of(manifest)
    fp["dataset"], fp["load_seconds"] = str(dataset), round(time.monotonic() - t0, 2)
    return fp


def fingerprint_of(manifest: Any, stats: dict[str, Any] | None = None,
                   read_seconds: float | None = None) -> dict[str, Any]:
    """The fingerprint of a loaded :class:`~sikd_core.data.Manifest`: an evenly spread sample of its pairs is
    read (and timed: the cost of reading one pair); ``stats`` (the full scan of an uploaded dataset), when
    given, supplies the sizes and class fractions instead of the sample's, and with ``read_seconds`` too (a
    pair's read time measured before) nothing is read."""
    from sikd_core.data.scan import sampled_stats

    if stats is not None and read_seconds is not None:
        read_s = read_seconds
    else:
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
    """This machine's device for the plan: a CUDA GPU's name and memory, else the CPU's cores (torch's threads)."""
    check_device(device)
    import torch

    if device != "cpu" and torch.cuda.is_available():
        dev = torch.device(device if device.startswith("cuda") else "cuda")
        props = torch.cuda.get_device_properties(dev)
        return {"kind": "cuda", "device": str(dev), "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1), "source": "this machine"}
    if device.startswith("cuda"):
        raise SIKDError(f"device {device!r} asked for but CUDA is not available here")
    return {"kind": "cpu", "device": "cpu", "cores": os.cpu_count() or 1, "threads": torch.get_num_threads(),
            "source": "this machine"}


def check_device(device: str) -> str:
    if device not in ("auto", "cpu") and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise SIKDError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")
    return device


def describe_device(*, memory_gib: float | None = None, cores: int | None = None, threads: int | None = None,
                    name: str | None = None, source: str = "described") -> dict[str, Any]:
    """A device to plan for that need not be this machine's: a CUDA GPU with ``memory_gib`` GiB, else a CPU with
    ``cores`` cores (``threads`` training threads, default as many)."""
    if memory_gib is not None:
        if not 0 < memory_gib <= MAX_MEMORY_GIB:
            raise SIKDError(f"a GPU's memory must be between 0 and {MAX_MEMORY_GIB:g} GiB; got {memory_gib:g}")
        return {"kind": "cuda", "device": "cuda", "name": name or "a GPU",
                "memory_gib": round(float(memory_gib), 1), "source": source}
    if cores is None or not 1 <= cores <= MAX_CORES:
        raise SIKDError(f"describe a GPU by its memory (GiB) or a CPU by its cores (1 to {MAX_CORES}); got {cores}")
    return {"kind": "cpu", "device": "cpu", "name": name or "CPU", "cores": int(cores),
            "threads": int(threads or cores), "source": source}


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


def unet_size(widths: list[int], image_size: list[int], in_channels: int, num_classes: int,
              skip_connections: bool = True) -> tuple[int, int, int]:
    """The paper's U-Net (sikd_core.models.unet) in closed form, per image: parameters, activation elements (every
    conv, BatchNorm and ReLU output, as sikd_core.models.budget counts them on the meta device; a test keeps the
    two equal) and multiply-accumulates of its convolutions. No PyTorch: the API plans with it."""
    h, w = image_size
    params = acts = macs = 0
    pixels = []
    for level, width in enumerate(widths):
        if level:
            h, w = h // 2, w // 2  # max-pooling floors
        pixels.append(h * w)
        cin = in_channels if level == 0 else widths[level - 1]
        params += 9 * cin * width + 9 * width * width + 4 * width  # two 3x3 convs (no bias), two BatchNorms
        acts += 6 * width * h * w
        macs += 9 * (cin + width) * width * h * w
    for level in range(len(widths) - 2, -1, -1):  # upsampling conv, then a double block on the (concatenated) map
        width, below, px = widths[level], widths[level + 1], pixels[level]
        cin = 2 * width if skip_connections else width
        params += 9 * below * width + 2 * width + 9 * cin * width + 9 * width * width + 4 * width
        acts += 9 * width * px
        macs += 9 * (below + cin + width) * width * px
    params += widths[0] * num_classes + num_classes  # the 1x1 head
    acts += num_classes * pixels[0]
    macs += widths[0] * num_classes * pixels[0]
    return params, acts, macs


def step_memory_bytes(widths: list[int], image_size: list[int], in_channels: int, num_classes: int,
                      batch: int) -> int:
    """Memory of a SIKD student's training step of the U-Net by the model above (the largest step of a plan)."""
    params, acts, _ = unet_size(widths, image_size, in_channels, num_classes)
    return params * (BYTES_PER_PARAMETER + TEACHER_BYTES_PER_PARAMETER) + batch * acts * BYTES_PER_ACTIVATION


def plan_batch(fp: dict[str, Any], dev: dict[str, Any], image_size: list[int], widths: list[int],
               cap: int) -> tuple[int, list[int], list[str]]:
    """The batch (and the image size, made smaller when not even 2 images fit the GPU) and why."""
    if dev["kind"] == "cpu":
        return max(2, min(8, cap)), image_size, ["8 on a CPU, at most 5% of the training set (nnU-Net's cap), at "
                                                 "least 2"]
    budget = MEMORY_SHARE * dev["memory_gib"] * 2**30
    size, why = list(image_size), []
    while True:
        fixed = step_memory_bytes(widths, size, fp["in_channels"], fp["num_classes"], 0)
        per_image = step_memory_bytes(widths, size, fp["in_channels"], fp["num_classes"], 1) - fixed
        fits = int((budget - fixed) // per_image)
        if fits >= 2:
            break
        longer = max(size)
        if longer <= 2 * ROUND:
            raise SIKDError(f"a GPU with {dev['memory_gib']:g} GiB cannot train the planned U-Net (widths {widths}) "
                            f"on 2 images of {size[0]}x{size[1]} px: it needs "
                            f"{(fixed + 2 * per_image) / 2**30:.2f} GiB in half of its memory")
        size = [_round(s * (longer - ROUND) / longer) for s in size]
    if size != image_size:
        why.append(f"image size cut to {size[0]}x{size[1]} so that 2 images fit")
    batch = max(2, min(cap, MAX_BATCH, fits))
    why.append(f"{per_image / 2**20:.0f} MiB per image and {fixed / 2**20:.0f} MiB of weights and Adam state "
               f"(the memory model POST /experiments checks): {fits} images fit in half of {dev['memory_gib']:g} GiB; "
               f"at most 5% of the training set (nnU-Net's cap) and {MAX_BATCH}, at least 2")
    return batch, size, why


def plan(dataset: str | os.PathLike[str] | int, *, eval_datasets: list[Any] | None = None, device: str = "auto",
         dev: dict[str, Any] | None = None, seeds: list[int] | None = None, budget_minutes: float | None = None,
         target_steps: int = 3000, name: str | None = None, measure: bool = True, fp: dict[str, Any] | None = None,
         eval_pairs: int | None = None, timings: Timings | None = None) -> dict[str, Any]:
    """The proposed spec (``plan["spec"]``, accepted by ``sikd run``), the fingerprint, the device and the
    estimate. ``dev``: a described device (:func:`describe_device`, a worker's profile) instead of this machine's
    ``device``. ``timings``: the step times of the planned configuration (see :data:`Timings`); by default they are
    timed here, which needs the plan to be for this machine (for a described device there is then no estimate).
    ``measure=False``: no estimate. The service passes ``fp`` (the fingerprint of a stored dataset), ``dataset``
    and ``eval_datasets`` as ids and ``eval_pairs``."""
    if target_steps < 1:
        raise SIKDError(f"target_steps must be >= 1; got {target_steps}")
    if budget_minutes is not None and budget_minutes <= 0:
        raise SIKDError(f"budget_minutes must be > 0; got {budget_minutes}")
    here = dev is None
    fp = fp or fingerprint(dataset)  # type: ignore[arg-type]
    dev = dev or device_info(device)
    seeds = list(seeds or [0])
    budget = budget_minutes if budget_minutes is not None else (30.0 if dev["kind"] == "cpu" else 240.0)
    image_size, why_size = plan_image_size(fp, dev)
    widths, why_net = plan_widths(image_size, dev)
    kwargs = {"widths": widths}
    n_train = max(1, round(fp["pairs"] * 0.7))  # the spec's default split: 70% train, 10% val, 20% test
    n_val, n_test = round(fp["pairs"] * 0.1), round(fp["pairs"] * 0.2)
    cap = max(2, math.floor(0.05 * n_train))
    batch, image_size, why_batch = plan_batch(fp, dev, image_size, widths, cap)
    reasons: dict[str, Any] = {"image_size": why_size, "network": why_net, "batch": why_batch}
    steps_per_epoch = math.ceil(n_train / batch)
    epochs = max(5, min(300, math.ceil(target_steps / steps_per_epoch)))
    reasons["epochs"] = f"{target_steps} optimiser steps per stage ({steps_per_epoch} per epoch), 5 to 300 epochs"
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
    config = {"network": "unet", "network_kwargs": kwargs, "in_channels": fp["in_channels"],
              "num_classes": fp["num_classes"], "image_size": image_size, "batch": batch}
    if timings is None:
        timings = _timed_here(dev) if here else _not_here
    t = timings(config)
    if t.get("step_s") is None:
        out["estimate"] = {"seconds": None, "minutes": None, "basis": t.get("basis", "not measured yet")}
        return out
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
        # total() is linear in the epochs: the most that fit, exactly (the evaluation's fixed time included)
        per_epoch, fixed = total(1) - total(0), total(0)
        fitted = max(5, math.floor((budget * 60 - read - fixed) / max(per_epoch, 1e-9)))
        reasons["epochs"] = (f"{target_steps} steps would take {(total(epochs) + read) / 60:.1f} min: cut to "
                             f"{fitted} epochs for the {budget:g} min budget")
        epochs = min(epochs, fitted)
        spec["epochs"] = epochs
        if total(epochs) + read > budget * 60 + 1e-6:  # at the 5-epoch floor: say so, do not promise the budget
            reasons["epochs"] += (f"; even {epochs} epochs (the least planned) take "
                                  f"{(total(epochs) + read) / 60:.1f} min, over the budget: give a larger budget, "
                                  "fewer seeds or a faster device")
    seconds = total(epochs) + read
    out["estimate"] = {"seconds": round(seconds, 1), "minutes": round(seconds / 60, 1), "basis": t["basis"],
                       "step_seconds": round(t["step_s"], 4), "student_step_seconds": round(t["student_step_s"], 4),
                       "forward_seconds": round(t["forward_s"], 4), "steps_per_epoch": steps_per_epoch,
                       "stages": 3 * len(seeds), "budget_minutes": budget,
                       "stage_seconds": {k: round(v, 1) for k, v in stages(epochs).items()}}
    return out


def _timed_here(dev: dict[str, Any]) -> Timings:
    def timed(config: dict[str, Any]) -> dict[str, Any]:
        from sikd_core.steptime import measure_steps

        t = measure_steps(config["network"], config["network_kwargs"], config["in_channels"], config["num_classes"],
                          config["image_size"], config["batch"], dev["device"] if dev["kind"] == "cuda" else "cpu")
        return {**t, "basis": "measured here (training steps timed on this machine)"}

    return timed


def _not_here(config: dict[str, Any]) -> dict[str, Any]:
    return {"basis": "not measured: the plan is for a described device, not this machine"}


def _pairs(dataset: str) -> int:
    from sikd_core.data.formats import load_dataset

    return len(load_dataset(dataset, scan=False).samples)


def plan_yaml(result: dict[str, Any]) -> str:
    """The spec as YAML for ``sikd run``, with the fingerprint, device and estimate as comments."""
    import yaml

    fp, dev, est = result["fingerprint"], result["device"], result["estimate"]
    where = (f"{dev['name']}, {dev['memory_gib']} GiB" if dev["kind"] == "cuda"
             else f"CPU, {dev['cores']} cores ({dev['threads']} torch threads)")
    if dev.get("source"):
        where += f"; {dev['source']}"
    lines = [f"# sikd plan for {fp['name']}: {fp['pairs']} pairs, median {fp['median_size'][0]}x"
             f"{fp['median_size'][1]} (h x w), {fp['in_channels']} channel(s), {fp['num_classes']} classes, "
             f"foreground {fp['foreground_fraction']:.1%} (sampled {fp['sampled']} pairs)",
             f"# device: {where}"]
    for key, why in result["reasons"].items():
        lines.append(f"# {key}: {'; '.join(why) if isinstance(why, list) else why}")
    if est and est["seconds"] is None:
        lines.append(f"# estimated run time: {est['basis']}")
    elif est:
        lines.append(f"# estimated run time: {est['minutes']} min for {est['stages']} stages ({est['basis']}: "
                     f"{est['step_seconds']} s per step, {est['student_step_seconds']} s per student step, "
                     f"{est['steps_per_epoch']} steps per epoch)")
    return "\n".join(lines) + "\n" + yaml.safe_dump(result["spec"], sort_keys=False)


def write_plan(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.write_text(plan_yaml(result))
    return p
