"""Pictures of an evaluated experiment: contour overlays of chosen cases and penultimate feature maps.

Both read what evaluation wrote (saved predictions, prepared data) and write PNGs plus a JSON index under
the experiment's ``eval/`` folder; :meth:`sikd_core.pipeline.ExperimentRun.evaluate` calls them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sikd_core.data import Manifest, PreparedData, iter_cases
from sikd_core.data.preprocess import load_case
from sikd_core.viz import (
    downscale,
    feature_activation,
    feature_map_image,
    hstack_panels,
    overlay_contours,
    save_png,
    to_rgb_uint8,
)
from sikd_core.workdir import safe_name, write_json

#: ``(split, manifest, sample indices)`` per evaluated dataset, as :func:`sikd_core.evaluation.score_cases` takes.
EvalSets = Sequence[tuple[str, Manifest, list[int]]]
InputFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def choose_overlay_cases(scores: dict[str, dict[str, dict[str, Any]]], per_category: int = 6) -> dict[str, list[str]]:
    """Pick cases worth looking at from ``{case: {method: scores}}`` -> ``{case: [categories]}``.

    Categories: ``worst`` (lowest Dice of SIKD, or of the only method), ``sikd_better`` and
    ``baseline_better`` (largest Dice differences either way, when both methods ran) and ``typical``
    (closest to the median Dice).
    """
    if not scores:
        return {}
    methods = set.intersection(*(set(ms) for ms in scores.values()))
    main = "sikd" if "sikd" in methods else sorted(methods)[0]
    rankings: dict[str, Callable[[dict[str, dict[str, Any]]], float]] = {"worst": lambda ms: ms[main]["dice"]}
    if {"sikd", "baseline"} <= methods:
        rankings["sikd_better"] = lambda ms: ms["baseline"]["dice"] - ms["sikd"]["dice"]
        rankings["baseline_better"] = lambda ms: ms["sikd"]["dice"] - ms["baseline"]["dice"]
    median = float(np.median([ms[main]["dice"] for ms in scores.values()]))
    rankings["typical"] = lambda ms: abs(ms[main]["dice"] - median)
    chosen: dict[str, list[str]] = {}
    for category, key in rankings.items():
        for case in sorted(scores, key=lambda c: (key(scores[c]), c))[:per_category]:
            chosen.setdefault(case, []).append(category)
    return chosen


def render_overlays(eval_dir: Path, cases: list[dict[str, Any]], sets: EvalSets, seed: int, *, in_channels: int,
                per_category: int = 6) -> list[dict[str, Any]]:
    """Contour overlays (image, ground truth, baseline, SIKD) of chosen cases of every dataset, drawn from
    the saved predictions of ``seed``; writes ``overlays/`` and ``overlays.json`` under ``eval_dir``."""
    by_case: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for c in cases:
        if c["seed"] == seed:
            by_case.setdefault((c["dataset"], c["case"]), {})[c["method"]] = c
    index: list[dict[str, Any]] = []
    for split, manifest, indices in sets:
        items = {case: ms for (ds, case), ms in by_case.items() if ds == manifest.name}
        chosen = choose_overlay_cases(items, per_category)
        members_of = dict(iter_cases(manifest, indices))
        folder = eval_dir / "overlays" / safe_name(manifest.name)
        folder.mkdir(parents=True, exist_ok=True)
        for case, categories in chosen.items():
            members = members_of[case]
            images, gt = load_case(manifest, members, in_channels=in_channels)
            z = int(np.argmax((gt > 0).reshape(len(members), -1).sum(1)))  # the slice with most foreground
            key = manifest.samples[members[z]].key
            masks = {"ground_truth": gt[z]}
            for method in ("baseline", "sikd"):
                p = eval_dir / "predictions" / method / safe_name(manifest.name) / f"{safe_name(key)}.png"
                if p.exists():
                    masks[method] = np.asarray(Image.open(p))
            picture = downscale(overlay_contours(images[z], masks), 512)
            fname = f"{safe_name(key)}.png"
            save_png(folder / fname, picture)
            ms = by_case[(manifest.name, case)]
            index.append({"dataset": manifest.name, "split": split, "case": case, "key": key,
                          "file": f"overlays/{safe_name(manifest.name)}/{fname}", "categories": categories,
                          "scores": {m: {"dice": v["dice"], "iou": v["iou"], "hd95": v["hd95"]}
                                     for m, v in ms.items()},
                          "dice_diff": (ms["sikd"]["dice"] - ms["baseline"]["dice"])
                          if {"sikd", "baseline"} <= set(ms) else None})
    write_json(eval_dir / "overlays.json", index)
    return index


@torch.no_grad()
def render_features(eval_dir: Path, sets: EvalSets, nets: Sequence[tuple[str, torch.nn.Module, bool]], *, n: int,
                    data_for: Callable[[Manifest], PreparedData], teacher_input_fn: InputFn | None,
                    device: torch.device) -> list[dict[str, Any]]:
    """Channel-averaged penultimate feature maps of ``nets`` (name, network, is the teacher) side by side, for
    ``n`` evenly spaced cases with foreground of every set; writes ``features/`` and ``features.json``."""
    if n == 0:
        return []
    index = []
    for split, manifest, indices in sets:
        data = data_for(manifest)
        row_of = {m: p for p, m in enumerate(data.indices)}
        # Evenly spaced cases that contain foreground, so the maps show a structure.
        labelled = [i for i in indices if data.labels[row_of[i]].any()] or list(indices)
        picks = [labelled[int(k)] for k in np.linspace(0, len(labelled) - 1, min(n, len(labelled)))]
        folder = eval_dir / "features" / safe_name(manifest.name)
        folder.mkdir(parents=True, exist_ok=True)
        for i in picks:
            x = torch.from_numpy(np.asarray(data.images[row_of[i]], dtype=np.float32))[None].to(device)
            y = torch.from_numpy(np.asarray(data.labels[row_of[i]], dtype=np.int64))[None].to(device)
            panels = [to_rgb_uint8(x[0].permute(1, 2, 0).cpu().numpy())]
            names = ["image"]
            feats = []
            for name, net, is_teacher in nets:
                inp = x
                if is_teacher and teacher_input_fn is not None:
                    inp = teacher_input_fn(x, y)  # what the teacher sees (the class-wise mean image), shown too
                    t = inp[0].permute(1, 2, 0).float().cpu().numpy()
                    lo, hi = float(t.min()), float(t.max())
                    panels.append(to_rgb_uint8((t - lo) / (hi - lo) if hi > lo else np.zeros_like(t)))
                    names.append("teacher_input")
                feats.append((name, net.forward_features(inp)[0].float().cpu().numpy()))
            # one colour scale for all maps, so brighter means a stronger activation in every panel
            acts = [feature_activation(f) for _, f in feats]
            scale = (min(float(a.min()) for a in acts), max(float(a.max()) for a in acts)) if acts else (0.0, 1.0)
            for name, f in feats:
                panels.append(feature_map_image(f, scale))
                names.append(name)
            key = manifest.samples[i].key
            fname = f"{safe_name(key)}.png"
            save_png(folder / fname, hstack_panels(panels))
            index.append({"dataset": manifest.name, "split": split, "key": key, "panels": names,
                          "scale": list(scale), "file": f"features/{safe_name(manifest.name)}/{fname}"})
    write_json(eval_dir / "features.json", index)
    return index
