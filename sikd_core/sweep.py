"""Sweeps: one spec with ``sweep: {setting: [values]}`` stands for one experiment per combination of the values
(the paper's alpha and teacher-input ablations, Fig. 8 and Table 6). What the experiments share (a baseline, a
teacher whose settings are not swept) is trained once: their stage keys match (:mod:`sikd_core.reuse`).

:func:`expand_sweep` turns the spec into the experiments' specs; :func:`sweep_points` reads each one's per-case
scores into the points of the sweep's chart (mean Dice with a bootstrap 95% CI over the cases, per method and
split).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from sikd_core.errors import SpecError

#: Settings a sweep may vary: the distillation's, the teacher's and the recipe's (not the data or the network:
#: experiments on other data or networks are not one ablation).
SWEEPABLE: tuple[str, ...] = ("alpha", "teacher_input", "student_head_init", "teacher_skip_connections", "loss",
                              "lr", "weight_decay", "epochs", "teacher_epochs", "batch_size", "augment",
                              "augmentation", "steps_per_epoch", "recipe")
#: Most experiments one sweep creates.
MAX_SWEEP = 12


def _label(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def expand_sweep(data: dict[str, Any], *, max_size: int = MAX_SWEEP) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(values, spec dict)`` of every combination of a spec's ``sweep`` (in the order given); raises
    :class:`SpecError` naming what is wrong. A swept setting's values replace the spec's own. Each spec is named ``NAME setting=value ...``; the specs are not
    validated here (the caller validates each, as any spec)."""
    if not isinstance(data, dict) or "sweep" not in data:
        raise SpecError("a sweep is a spec with a 'sweep' key: {setting: [values, ...]}")
    sweep = data["sweep"]
    if not isinstance(sweep, dict) or not sweep:
        raise SpecError(f"sweep: give a mapping of settings to lists of values, e.g. {{\"alpha\": [0.5, 1, 2, 5]}}; "
                        f"got {sweep!r}"[:300])
    unknown = [k for k in sweep if k not in SWEEPABLE]
    if unknown:
        raise SpecError(f"sweep: cannot sweep {', '.join(map(repr, unknown))}; settings a sweep may vary: "
                        f"{', '.join(SWEEPABLE)}")
    for k, values in sweep.items():
        if not isinstance(values, list) or len(values) < 1:
            raise SpecError(f"sweep.{k}: give a non-empty list of values; got {values!r}"[:300])
        seen = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(seen)) != len(seen):
            raise SpecError(f"sweep.{k}: duplicate values in {values!r}"[:300])
    size = int(np.prod([len(v) for v in sweep.values()]))
    if size > max_size:
        raise SpecError(f"sweep: {size} combinations ({' x '.join(str(len(v)) for v in sweep.values())}); a sweep "
                        f"creates at most {max_size} experiments")
    base = {k: v for k, v in data.items() if k != "sweep"}
    name = str(base.get("name") or "sweep")
    out = []
    for combo in itertools.product(*sweep.values()):
        values = dict(zip(sweep, combo, strict=True))
        label = " ".join(f"{k}={_label(v)}" for k, v in values.items())
        out.append((values, {**base, **values, "name": f"{name} {label}"[:200]}))
    return out


def _ci(values: np.ndarray, seed: int = 0, n_boot: int = 2000) -> tuple[float | None, float | None]:
    if values.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def sweep_points(cases: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method and split (intra, cross), the mean Dice over an experiment's cases (every seed and dataset of
    the split) with a percentile-bootstrap 95% CI over the cases: ``{method, split, n_cases, dice, ci_low,
    ci_high}``. Cases whose Dice is undefined are left out."""
    groups: dict[tuple[str, str], list[float]] = {}
    for c in cases:
        d = c.get("dice")
        if d is not None and np.isfinite(d):
            groups.setdefault((str(c["method"]), str(c["split"])), []).append(float(d))
    out = []
    for (method, split), vals in groups.items():
        arr = np.asarray(vals)
        lo, hi = _ci(arr)
        out.append({"method": method, "split": split, "n_cases": int(arr.size), "dice": float(arr.mean()),
                    "ci_low": lo, "ci_high": hi})
    out.sort(key=lambda p: (p["split"] != "intra", p["method"]))
    return out
