"""Shaping the Models page's table: one row per trained model with its experiment, scores and health."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ui.health import health_summary, model_findings

METHOD_NAMES = {"sikd": "SIKD student", "baseline": "baseline"}


def model_scores(results: dict[str, Any] | None, method: str, seed: int) -> tuple[float | None, float | None]:
    """(intra Dice, cross Dice averaged over the unseen datasets) of one model from an experiment's results."""
    if not results:
        return None, None
    rows = [r for r in results.get("data", []) if r.get("method") == method and r.get("seed") == seed]
    intra = [r["dice"] for r in rows if r.get("split") == "intra" and r.get("dice") is not None]
    cross = [r["dice"] for r in rows if r.get("split") == "cross" and r.get("dice") is not None]
    return (float(np.mean(intra)) if intra else None), (float(np.mean(cross)) if cross else None)


def model_health(experiment: dict[str, Any] | None, method: str, seed: int) -> str:
    """``healthy`` or ``⚠ unhealthy: ...``, from the experiment's health (the same object the experiment page's
    banners read; a student carries its teacher's findings)."""
    return health_summary(model_findings(experiment, method, seed))


def models_frame(models: Sequence[dict[str, Any]], experiments: dict[int, dict[str, Any]],
                 results: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """The Models table, indexed by model id (newest first as the API lists them)."""
    rows = []
    for m in models:
        exp = experiments.get(m["experiment_id"])
        intra, cross = model_scores(results.get(m["experiment_id"]), m["method"], m["seed"])
        rows.append({
            "id": m["id"], "model": m["name"],
            "experiment": f"experiment?id={m['experiment_id']}",
            "experiment name": f"#{m['experiment_id']} {exp['name']}" if exp else f"#{m['experiment_id']}",
            "method": METHOD_NAMES.get(m["method"], m["method"]), "seed": m["seed"],
            "network": m["architecture"], "intra Dice": intra, "cross Dice": cross,
            "health": model_health(exp, m["method"], m["seed"]),
        })
    cols = ["model", "experiment", "experiment name", "method", "seed", "network", "intra Dice", "cross Dice",
            "health"]
    return pd.DataFrame(rows, columns=["id", *cols]).set_index("id")


def seg_summary(data: bytes, slices: int) -> str:
    """One line on a returned DICOM SEG: its segments (labels), frames and the series it references."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    labels = [str(s.SegmentLabel) for s in getattr(ds, "SegmentSequence", [])]
    series = [str(r.SeriesInstanceUID) for r in getattr(ds, "ReferencedSeriesSequence", [])]
    frames = int(getattr(ds, "NumberOfFrames", 0) or 0)
    return (f"DICOM SEG ready ({len(data) / 1024:.0f} KiB): {slices} slices, {frames} frames, segments "
            f"{', '.join(labels) or 'none'}; it references series {', '.join(s[-12:] for s in series) or '(none)'}")
