"""Two experiments' models compared on the images both scored (the Compare page's paired test).

The per-case scores are the ones each evaluation wrote (``eval/cases.json``); a dataset is shared when both
experiments scored the same stored dataset (the same id: two datasets that only share a name are not
compared). The statistics are :func:`sikd_core.paired.compare_models`, i.e. the report's own paired machinery.
Each side carries its experiment's health and the compared model's findings, as every other page shows them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from sikd_core.paired import compare_models
from sikd_service import crud
from sikd_service import experiments as svc
from sikd_service.config import Settings
from sikd_service.errors import ServiceError
from sikd_service.health import experiment_health
from sikd_service.tables import Experiment


def _dataset_ids(session: Session, exp: Experiment) -> dict[str, int]:
    """The experiment's dataset names (as its report names them) -> their ids; a name two of its datasets
    share is left out (its cases cannot be told apart)."""
    rows = crud.get_datasets_by_id(session, ids=[lk.dataset_id for lk in exp.dataset_links])
    names = [d.name for d in rows.values()]
    return {d.name: d.id for d in rows.values() if names.count(d.name) == 1}


def _side(exp: Experiment, method: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    health = experiment_health(exp)
    findings = [f for key, v in health["by_model"].items() if key.rpartition("/")[0] == method for f in v]
    return {"experiment_id": exp.id, "experiment_name": exp.name, "method": method,
            "seeds": sorted({int(c["seed"]) for c in cases}), "experiment_health": health["status"],
            "model_health": "unhealthy" if findings else "healthy", "findings": findings}


def _model_cases(settings: Settings, exp: Experiment, method: str, which: str) -> list[dict[str, Any]]:
    every = svc.cases(settings, exp, dataset=None, method=None, split=None)
    mine = [c for c in every if c["method"] == method]
    if not mine:
        known = ", ".join(dict.fromkeys(c["method"] for c in every)) or "none"
        raise ServiceError(422, f"experiment {exp.id} ({exp.name!r}) has no model {method!r} ({which}); its models: "
                           f"{known}", methods=list(dict.fromkeys(c["method"] for c in every)))
    return mine


def headline_method(methods: list[str]) -> str | None:
    """The model an experiment is about: SIKD's student if trained, else its first method other than the
    baseline, else the baseline (None: no model)."""
    if "sikd" in methods:
        return "sikd"
    return next((m for m in methods if m != "baseline"), methods[0] if methods else None)


def _methods(settings: Settings, exp: Experiment) -> list[str]:
    return list(dict.fromkeys(c["method"] for c in svc.cases(settings, exp, dataset=None, method=None, split=None)))


def compare(session: Session, settings: Settings, *, exp_a: Experiment, method_a: str | None, exp_b: Experiment,
            method_b: str | None) -> dict[str, Any]:
    """``method_a`` of ``exp_a`` minus ``method_b`` of ``exp_b`` on their shared (dataset, case) pairs. Without
    ``method_a``: ``exp_a``'s headline model; without ``method_b``: the same method if ``exp_b`` trained it (and
    is another experiment), else ``exp_b``'s headline model (another one than ``method_a`` within one experiment)."""
    if method_a is None:
        method_a = headline_method(_methods(settings, exp_a)) or "sikd"
    if method_b is None:
        known = _methods(settings, exp_b)
        if exp_b.id == exp_a.id:
            known = [m for m in known if m != method_a]
        method_b = method_a if method_a in known else headline_method(known) or method_a
    if exp_a.id == exp_b.id and method_a == method_b:
        raise ServiceError(422, f"that compares {method_a!r} of experiment {exp_a.id} with itself: choose another "
                           "model or another experiment")
    cases_a = _model_cases(settings, exp_a, method_a, "method")
    cases_b = _model_cases(settings, exp_b, method_b, "other_method")
    ids_a, ids_b = _dataset_ids(session, exp_a), _dataset_ids(session, exp_b)
    same = {name for name in ids_a.keys() & ids_b.keys() if ids_a[name] == ids_b[name]}
    label_a, label_b = f"#{exp_a.id} {method_a}", f"#{exp_b.id} {method_b}"
    out = compare_models([c for c in cases_a if c["dataset"] in same], [c for c in cases_b if c["dataset"] in same],
                         a=label_a, b=label_b)
    a, b = _side(exp_a, method_a, cases_a), _side(exp_b, method_b, cases_b)
    for c in out["comparisons"]:
        c["unhealthy_models"] = [label for label, side in ((label_a, a), (label_b, b))
                                 if side["model_health"] == "unhealthy"]
    units = svc.report(settings, exp_a).get("dataset_units") or {}
    return {**out, "a": a, "b": b, "datasets": [{"name": n, "id": ids_a[n]} for n in sorted(same)],
            "units": {n: units.get(n, "px") for n in sorted(same)}}
