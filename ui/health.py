"""Training-health banners: one per unhealthy model, above the scores (never folded away in an expander).

Findings come from the API in the shared schema ``{code, severity, stage, seed, method, epoch, message,
values}``: the report's ``health`` object once the experiment is evaluated, the stages' ``health`` lists
while it trains.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import streamlit as st

MODEL_LABELS = {"baseline": "Baseline", "sikd": "SIKD student"}
CODE_LABELS = {
    "collapsed_prediction": "collapsed predictions",
    "val_dice_zero": "validation Dice stuck at 0",
    "nonfinite_loss": "non-finite loss",
    "exploding_loss": "exploding loss",
    "teacher_not_learned": "teacher did not learn",
    "student_equals_baseline": "student identical to the baseline",
    "cross_at_chance": "cross-dataset score at chance",
    "student_below_baseline": "student far below the baseline",
    "baseline_below_reference": "baseline below the reference recipe",
}


def model_label(key: str) -> str:
    """``sikd/0`` -> ``SIKD student (seed 0)``."""
    method, _, seed = key.partition("/")
    return f"{MODEL_LABELS.get(method, method)} (seed {seed})"


def unhealthy_models(health: dict[str, Any] | None, stages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Findings grouped by model (``<method>/<seed>``), from the report's health or else from the stages."""
    findings = list((health or {}).get("findings") or [])
    if not health:
        for s in stages:
            findings += s.get("health") or []
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in findings:
        by_model[f"{f.get('method') or f.get('stage')}/{f.get('seed')}"].append(f)
    return dict(by_model)


def _line(f: dict[str, Any]) -> str:
    where = f"{f.get('stage')}" + (f", epoch {f['epoch']}" if f.get("epoch") else "")
    return f"- **{CODE_LABELS.get(f.get('code', ''), f.get('code'))}** ({where}): {f.get('message', '')}"


def health_banner(health: dict[str, Any] | None, stages: list[dict[str, Any]]) -> None:
    """One st.error (a finding of severity error) or st.warning banner per unhealthy model."""
    for key, findings in sorted(unhealthy_models(health, stages).items()):
        severe = any(f.get("severity") == "error" for f in findings)
        text = (f"**{model_label(key)} is unhealthy**: its scores, and every comparison that uses it, do not measure "
                "what they seem to.\n\n" + "\n".join(_line(f) for f in findings))
        (st.error if severe else st.warning)(text, icon=":material/health_and_safety:")
