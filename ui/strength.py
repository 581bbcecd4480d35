"""Baseline strength: is the baseline as strong as the field's standard recipe makes it?

The API's results carry ``baseline_strength``: baseline minus the ``reference`` recipe (an independent
nnU-Net-like recipe trained on the same splits and budget) per dataset and split, with a paired 95% CI and
``below_reference`` where the baseline trails clearly. ``[]`` means the experiment trained no reference, so
nothing measured the baseline; ``null``, a report made before the reference existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

ICON = ":material/fitness_center:"
REFERENCE = "reference"
#: Why the form selects the reference method by default.
REFERENCE_WHY = ("**Reference** (selected by default) trains an independent nnU-Net-like recipe on the same splits "
                 "and budget: a comparison is evidence only when its baseline is as strong as the field's standard "
                 "recipe makes it, and the results then say whether it is (baseline − reference, with a CI). It "
                 "costs one more training stage per seed.")


def _diff(d: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "–" if v is None else f"{float(v):+.3f}"

    return f"{f(d.get('mean_diff'))} [{f(d.get('ci_low'))}, {f(d.get('ci_high'))}]"


def strength_state(results: Mapping[str, Any] | None) -> str:
    """``weak`` (trails the reference clearly somewhere), ``ok``, ``unmeasured`` (no reference trained while a
    baseline is compared) or ``none`` (nothing to say: no baseline, or no results yet)."""
    if not results or "baseline" not in (results.get("methods") or []):
        return "none"
    rows = results.get("baseline_strength")
    if not rows:
        return "unmeasured"
    return "weak" if any(r.get("below_reference") for r in rows) else "ok"


def strength_banner(results: Mapping[str, Any] | None) -> None:
    """The experiment page's banner: a warning when the baseline trails the reference (every comparison
    against it is suspect), a note when nothing measured it, a short confirmation otherwise."""
    state = strength_state(results)
    if state == "none" or results is None:
        return
    rows = results.get("baseline_strength") or []
    if state == "weak":
        weak = [r for r in rows if r.get("below_reference")]
        st.warning("**The baseline trails the reference recipe**: baseline − reference Dice "
                   + "; ".join(f"{r['dataset']} ({r['split']}) {_diff(r['dice'])}" for r in weak)
                   + ". A gain over this baseline may be a gain over an under-trained baseline, not evidence for "
                   "the method: use the standard recipe, train longer, or check the learning rate.", icon=ICON)
    elif state == "unmeasured":
        st.info("**Baseline strength not measured**: this experiment trained no `reference` recipe, so nothing "
                "shows whether its baseline is as strong as the field's standard recipe makes it. Add the "
                "reference method to measure it.", icon=ICON)
    elif not reference_converged(results):
        st.info("**Baseline not below the reference recipe, but the reference had not converged**: baseline − "
                "reference Dice " + "; ".join(f"{r['dataset']} ({r['split']}) {_diff(r['dice'])}" for r in rows)
                + ". The reference's validation Dice was still rising when its budget ended, so it bounds the "
                "baseline from below only: this shows the baseline is not under-trained relative to a standard "
                "recipe at the same budget, not that it is as strong as a converged one. Train longer to make "
                "the reference the upper bar.", icon=ICON)
    else:
        st.success("**Baseline as strong as the reference recipe**: baseline − reference Dice "
                   + "; ".join(f"{r['dataset']} ({r['split']}) {_diff(r['dice'])}" for r in rows)
                   + " (none trails by more than 0.02 with its CI below 0).", icon=ICON)


def reference_converged(results: Mapping[str, Any] | None) -> bool:
    """False when the results say the reference recipe was still improving at the end of its budget (its
    ``reference_not_converged`` finding); True otherwise, also for results from before the check."""
    rows = (results or {}).get("baseline_strength") or []
    return not any(r.get("reference_converged") is False for r in rows)


def strength_frame(results: Mapping[int, Mapping[str, Any]], names: Mapping[int, str]) -> pd.DataFrame:
    """One row per experiment and dataset: baseline − reference ΔDice with its CI and the verdict (the Compare
    page); experiments without a reference get one row saying so."""
    rows = []
    for i, res in results.items():
        state = strength_state(res)
        if state == "none":
            continue
        label = f"#{i} {names.get(i, '')}".strip()
        if state == "unmeasured":
            rows.append({"Experiment": label, "Dataset": "–", "Baseline − reference ΔDice [95% CI]": "–",
                         "Verdict": "not measured (no reference trained)"})
            continue
        for r in res.get("baseline_strength") or []:
            rows.append({"Experiment": label, "Dataset": f"{r['dataset']} ({r['split']})",
                         "Baseline − reference ΔDice [95% CI]": _diff(r["dice"]),
                         "Verdict": "⚠ baseline below the reference" if r.get("below_reference") else
                         "not clearly below" + ("" if r.get("reference_converged") is not False else
                                                " (reference not converged: a lower bound only)")})
    return pd.DataFrame(rows, columns=["Experiment", "Dataset", "Baseline − reference ΔDice [95% CI]", "Verdict"])
