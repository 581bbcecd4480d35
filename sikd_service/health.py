"""Experiment and model health as the API shows it: one function every response reads.

An experiment's findings are its report's once it is evaluated (kept in the row's ``summary``, so lists need
no file read), else those its training stages recorded so far. Which model each finding is about, the
inherited teacher findings of a student included, is :func:`sikd_core.health.model_findings`'s answer; the
experiment list, the experiment, its results, the Models page and the model cards all read
:func:`experiment_health` (or :func:`report_health` for a report), so no two surfaces can disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sikd_core.health import health_section, mark_comparisons, model_findings, model_key
from sikd_core.spec import method_of_stage
from sikd_service.tables import Experiment


def health_view(findings: Sequence[dict[str, Any]], models: Iterable[tuple[str, int]]) -> dict[str, Any]:
    """``{status, findings, models: {"<method>/<seed>": healthy|unhealthy}, by_model: {key: [findings]},
    other: [findings]}``: the report's health section, each model's findings (its teacher's included), and the
    findings about none of the models (shown on their own, so no finding is ever hidden)."""
    models = sorted({(str(m), int(s)) for m, s in models})
    by_model = model_findings(list(findings), models)
    placed = [f for v in by_model.values() for f in v]
    other = [f for f in findings if not any(f is g for g in placed)]
    return {**health_section(list(findings), models), "by_model": by_model, "other": other}


def stored_health(rep: dict[str, Any]) -> dict[str, Any] | None:
    """What the experiment row keeps of a report's health (in its ``summary``): the findings and the evaluated
    models; None for a report made before health checks existed."""
    health = rep.get("health")
    if not isinstance(health, dict):
        return None
    models = sorted({(r["method"], int(r["seed"])) for r in rep.get("rows") or []})
    return {"findings": list(health.get("findings") or []), "models": [list(m) for m in models]}


def report_health(rep: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The results' ``health`` and ``comparisons`` of a report, recomputed by today's rules (a report written
    before students inherited their teacher's findings is read the same way as a new one). The report
    itself is not changed (it is shared between requests)."""
    comparisons = [dict(c) for c in rep.get("comparisons") or []]
    stored = stored_health(rep)
    if stored is None:
        return None, comparisons
    health = health_view(stored["findings"], [tuple(m) for m in stored["models"]])
    mark_comparisons(comparisons, health)
    return health, comparisons


def _stage_models(exp: Experiment) -> list[tuple[str, int]]:
    out = []
    for s in exp.stages:
        method = method_of_stage(s.kind)
        if method is not None and s.seed is not None:
            out.append((method, int(s.seed)))
    return out


def experiment_health(exp: Experiment) -> dict[str, Any]:
    """The experiment's health (see :func:`health_view`): from its report once evaluated, else from what its
    stages recorded while training (every model the experiment trains, finished or not)."""
    stored = (exp.summary or {}).get("health") if isinstance(exp.summary, dict) else None
    if stored:
        return health_view(stored.get("findings") or [], [tuple(m) for m in stored.get("models") or []])
    findings = [f for s in exp.stages for f in (s.health or [])]
    return health_view(findings, _stage_models(exp))


def model_health(exp: Experiment, method: str, seed: int) -> list[dict[str, Any]]:
    """One model's findings (its teacher's included), from :func:`experiment_health`."""
    return experiment_health(exp)["by_model"].get(model_key(method, seed), [])
