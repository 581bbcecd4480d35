"""Training health on every page: banners above the scores, the display status, one-line summaries for tables
(pure functions on the API's JSON; only :func:`health_banner` draws).

Findings come from the API in the shared schema ``{code, severity, stage, seed, method, epoch, message,
values}``. Which model a finding is about (a student carries its teacher's findings) is decided by the API
once: every experiment it returns has a ``health`` object ``{status, findings, models, by_model}``, read by the
experiment page, the Experiments list, the Models page and Compare alike. Any finding code shows (a code this
module has no label for is shown as it is).
"""

from __future__ import annotations

from typing import Any

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
    "reference_not_converged": "reference recipe still improving (not converged)",
}
#: What the list and the pages show for a succeeded experiment with an unhealthy model (the stored status
#: stays ``succeeded``).
WITH_WARNINGS = "succeeded with warnings"


def model_label(key: str) -> str:
    """``sikd/0`` -> ``SIKD student (seed 0)``; ``gin+sikd/1`` -> ``gin+sikd (seed 1)``."""
    method, _, seed = key.rpartition("/")
    return f"{MODEL_LABELS.get(method, method)} (seed {seed})"


def code_label(code: str | None) -> str:
    return CODE_LABELS.get(code or "", code or "finding")


def unhealthy_models(health: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """Findings of each unhealthy model (``<method>/<seed>``), as the API's ``by_model`` gives them (a student
    with its teacher's). The dashboard never works out itself which model a finding is about."""
    by_model = (health or {}).get("by_model") or {}
    return {k: list(v) for k, v in by_model.items() if v}


def other_findings(health: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The findings about none of the experiment's models (the API's ``other``)."""
    return list((health or {}).get("other") or [])


def is_unhealthy(exp: dict[str, Any]) -> bool:
    return bool(unhealthy_models(exp.get("health")) or other_findings(exp.get("health")))


def display_status(exp: dict[str, Any]) -> str:
    """The status to show: the stored one, except ``succeeded with warnings`` for a succeeded experiment with
    an unhealthy model."""
    status = str(exp.get("status"))
    return WITH_WARNINGS if status == "succeeded" and is_unhealthy(exp) else status


def model_findings(exp: dict[str, Any] | None, method: str, seed: int | None) -> list[dict[str, Any]]:
    """One model's findings from its experiment's health (its teacher's included)."""
    return unhealthy_models((exp or {}).get("health")).get(f"{method}/{seed}", [])


def health_summary(findings: list[dict[str, Any]]) -> str:
    """A table cell: ``healthy``, or ``⚠ unhealthy: <first finding> (+N more)``."""
    if not findings:
        return "healthy"
    first = findings[0]
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    return f"⚠ unhealthy: {code_label(first.get('code'))} ({first.get('stage')}){more}"


def experiment_health_summary(exp: dict[str, Any]) -> str:
    """A table cell for an experiment: ``healthy``, ``–`` (nothing checked yet) or the unhealthy models."""
    bad = unhealthy_models(exp.get("health"))
    other = other_findings(exp.get("health"))
    if bad or other:
        return "⚠ " + ", ".join([*(model_label(k) for k in sorted(bad)),
                                 *([f"{len(other)} other finding{'s' if len(other) > 1 else ''}"] if other else [])])
    return "healthy" if exp.get("status") == "succeeded" or (exp.get("health") or {}).get("models") else "–"


def finding_line(f: dict[str, Any]) -> str:
    where = f"{f.get('stage')}" + (f", epoch {f['epoch']}" if f.get("epoch") else "")
    return f"- **{code_label(f.get('code'))}** ({where}): {f.get('message', '')}"


def health_banner(health: dict[str, Any] | None) -> None:
    """One st.error (a finding of severity error) or st.warning banner per unhealthy model."""
    import streamlit as st

    for key, findings in sorted(unhealthy_models(health).items()):
        severe = any(f.get("severity") == "error" for f in findings)
        text = (f"**{model_label(key)} is unhealthy**: its scores, and every comparison that uses it, do not measure "
                "what they seem to.\n\n" + "\n".join(finding_line(f) for f in findings))
        (st.error if severe else st.warning)(text, icon=":material/health_and_safety:")
    other = other_findings(health)
    if other:
        severe = any(f.get("severity") == "error" for f in other)
        (st.error if severe else st.warning)("**Training-health findings about no single model:**\n\n"
                                             + "\n".join(finding_line(f) for f in other),
                                             icon=":material/health_and_safety:")


def card_health_markdown(card: dict[str, Any]) -> str:
    """A model card's health in words (the card's ``health`` object and its training warnings)."""
    health = card.get("health") if isinstance(card.get("health"), dict) else {}
    findings = [f for f in health.get("findings") or [] if isinstance(f, dict)]
    said = {str(f.get("message")) for f in findings}
    warnings = [str(w) for w in card.get("warnings") or [] if str(w) not in said]
    if findings:
        lines = [f"**Health: unhealthy** ({len(findings)} finding{'s' if len(findings) != 1 else ''}; its scores do "
                 "not measure what they seem to)", *(finding_line(f) for f in findings)]
    elif health.get("status") == "healthy":
        lines = ["**Health:** healthy (no finding about this model or its teacher)"]
    else:
        lines = ["**Health:** not checked (trained before health checks existed)"]
    if warnings:
        lines += ["", "Other training warnings:", *(f"- {w}" for w in warnings)]
    return "\n".join(lines)
