"""Shaping experiments for the Experiments list and the experiment page's Stages section: progress per stage
kind, ETAs (measured epoch times, smoothed, queue waits), what runs now, the list's rows with their headline
scores, the stage table, the timeline and the training curves. Pure functions on the API's JSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from ui.formatting import (
    ACTIVE,
    STAGE_KINDS,
    diff,
    finite,
    fmt,
    fmt_seconds,
    method_label,
    parse_time,
    stage_label,
    stage_status,
)
from ui.health import display_status, experiment_health_summary


def kind_progress(stages: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Progress (0..1) of each stage kind, averaged over seeds; None when the experiment has no such stage."""
    out: dict[str, float | None] = {}
    for kind in STAGE_KINDS:
        mine = [s for s in stages if s["kind"] == kind]
        out[kind] = (sum(1.0 if s["status"] == "succeeded" else min(max(s.get("progress") or 0.0, 0.0), 1.0)
                         for s in mine) / len(mine)) if mine else None
    return out


def _stage_rate(s: dict[str, Any]) -> float | None:
    """Seconds per epoch of a finished (not resumed) training stage."""
    start, end = parse_time(s.get("started_at")), parse_time(s.get("finished_at"))
    if s["kind"] == "evaluation" or s["status"] != "succeeded" or not start or not end or not s.get("epochs"):
        return None
    return (end - start).total_seconds() / s["epochs"]


def experiment_eta(exp: dict[str, Any]) -> float | None:
    """Seconds until the experiment is done: the running stages' ETAs plus the stages still waiting, each at
    the measured seconds per epoch of this experiment's finished stages of its kind (else of any finished
    stage, else of the running ones). None when unknown (nothing has run long enough)."""
    if exp["status"] not in ACTIVE:
        return None
    stages = exp["stages"]
    running = [s for s in stages if s["status"] == "running"]
    waiting = [s for s in stages if s["status"] in ("pending", "queued") and s["kind"] != "evaluation"]
    if not running and not waiting:
        return None
    done_rates: dict[str, list[float]] = {}
    for s in stages:
        r = _stage_rate(s)
        if r is not None:
            done_rates.setdefault(s["kind"], []).append(r)
    eta, run_rates = 0.0, []
    for s in running:
        e = finite(s.get("eta_seconds"))
        left = (s.get("epochs") or 0) - (s.get("epoch") or 0)
        if e is None:  # just started: the finished stages of its kind tell, else no estimate yet
            known = done_rates.get(s["kind"])
            if s["kind"] == "evaluation" or not known:
                return None
            e = sum(known) / len(known) * max(left, 0)
        eta += e
        if s["kind"] != "evaluation" and left > 0:
            run_rates.append(e / left)
    every = [r for v in done_rates.values() for r in v]
    for s in waiting:
        rates = done_rates.get(s["kind"]) or every or run_rates
        if not rates:
            return None
        eta += sum(rates) / len(rates) * max(s.get("epochs") or 0, 1)
    return eta


def split_sizes(n_pairs: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """About how many images go to train / validation / test (the real split is by case or group, so a
    dataset of few large cases can differ)."""
    test = max(1, round(n_pairs * test_fraction)) if n_pairs else 0
    val = max(1, round(n_pairs * val_fraction)) if n_pairs and val_fraction > 0 else 0
    return {"train": max(n_pairs - test - val, 0), "val": val, "test": test}


def planned_epochs(plan: Sequence[dict[str, Any]]) -> int:
    """Epochs of all training stages of a stage plan (the API's ``plan``: one teacher per seed, shared by every
    distilled method)."""
    return sum(int(p.get("epochs") or 0) for p in plan)


def smooth_eta(prev: tuple[float, float] | None, value: float | None, now: float,
               weight: float = 0.3) -> tuple[float, float] | None:
    """An ETA that does not jump: ``prev`` = (seconds left, when), counted down by the time since, then
    moved ``weight`` of the way to the new estimate (an exponential moving average). Returns the new
    (seconds, now); None when there is no estimate at all."""
    if value is None:
        if prev is None:
            return None
        return (max(prev[0] - (now - prev[1]), 0.0), now)
    if prev is None:
        return (value, now)
    predicted = max(prev[0] - (now - prev[1]), 0.0)
    return (predicted + weight * (value - predicted), now)


def queue_wait(exp: dict[str, Any], exps: Sequence[dict[str, Any]], workers: int = 1) -> float | None:
    """Seconds before a queued experiment can start: the time left of the active experiments submitted
    before it, shared among the workers. None when one of them has no estimate yet."""
    ahead = [e for e in exps if e["status"] in ACTIVE and e["id"] < exp["id"]]
    total = 0.0
    for e in ahead:
        eta = experiment_eta(e)
        if eta is None:
            return None
        total += eta
    return total / max(workers, 1)


def current_activity(exp: dict[str, Any]) -> str:
    """What the experiment is doing now, in a few words."""
    running = [s for s in exp["stages"] if stage_status(s, exp["status"]) == "running"]
    if running:
        parts = []
        for s in running:
            if s["kind"] == "evaluation":
                parts.append(f"evaluation {round(100 * (s.get('progress') or 0))}%"
                             + (f" ({s['message']})" if s.get("message") else ""))
            else:
                parts.append(f"{stage_label(s)}: epoch {s.get('epoch') or 0}/{s.get('epochs') or '?'}")
        return "; ".join(parts)
    status = exp["status"]
    if status == "queued":
        return "waiting for a worker"
    if status == "running":
        return "between stages"
    if status == "failed":
        return (exp.get("error") or "failed")[:120]
    if status == "cancelled":
        return exp.get("error") or "cancelled"
    return "done"


def experiments_frame(exps: Sequence[dict[str, Any]], etas: dict[int, float | None] | None = None) -> pd.DataFrame:
    """One row per experiment for the list (stages and the succeeded ones' ``summary`` come with the list, so a
    page of the list is one request); progress in percent, overall and per stage kind (None: the experiment has
    no such stage); the headline Dice; and ``Open``, the experiment's own URL."""
    rows = []
    for e in exps:
        prog = kind_progress(e["stages"])
        spec = e.get("spec") or {}
        created = parse_time(e.get("created_at"))
        rows.append({
            "ID": e["id"], "Name": e["name"], "Tags": list(e.get("tags") or []),
            "Status": display_status(e), "Health": experiment_health_summary(e),
            "Progress": 100 * (e.get("progress") or 0.0),
            **{k.capitalize(): None if prog[k] is None else 100 * prog[k] for k in STAGE_KINDS},
            "Now": current_activity(e), "ETA": (fmt_seconds(etas[e["id"]] if etas is not None and e["id"] in etas else experiment_eta(e))
                    if e["status"] in ACTIVE else ""),
            "Network": spec.get("network", ""), "Epochs": spec.get("epochs"),
            "Created": created.strftime("%Y-%m-%d %H:%M") if created else "",
            **headline_scores(e.get("summary"), e.get("plan") or []),
            "Open": f"experiment?id={e['id']}",
        })
    cols = ["ID", "Name", "Tags", "Status", "Health", "Progress", "Headline model", "Dice intra", "Dice cross", "Δ intra",
            "Δ cross", "Baseline", "Teacher", "Student", "Evaluation", "Now", "ETA", "Network", "Epochs", "Created",
            "Open"]
    return pd.DataFrame(rows, columns=cols)


def model_name(method: str, plan: Sequence[dict[str, Any]]) -> str:
    """What a method's trained model is called on the pages: ``SIKD student``, ``GIN+SIKD student`` (a student
    in the experiment's stage ``plan``), ``Baseline``."""
    label = method_label(method)
    student = any(p.get("method") == method and p.get("role") == "student" for p in plan)
    return f"{label} student" if student else label


def headline_scores(summary: dict[str, Any] | None, plan: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """From an experiment's stored ``summary`` (``{dice: {method: {intra, cross}}}``): which model the headline
    is (``Headline model``: the SIKD student, else the first non-baseline method, else the only one), its Dice
    on the intra test split(s) and averaged over the cross datasets, and its difference to the baseline."""
    out: dict[str, Any] = {"Headline model": None, "Dice intra": None, "Dice cross": None, "Δ intra": None,
                           "Δ cross": None}
    dice = (summary or {}).get("dice") or {}
    methods = list(dice)
    if not methods:
        return out
    main = "sikd" if "sikd" in methods else next((m for m in methods if m != "baseline"), methods[0])
    out["Headline model"] = model_name(main, plan)
    out["Dice intra"], out["Dice cross"] = finite(dice[main].get("intra")), finite(dice[main].get("cross"))
    if main != "baseline" and "baseline" in methods:
        out["Δ intra"] = diff(out["Dice intra"], finite(dice["baseline"].get("intra")))
        out["Δ cross"] = diff(out["Dice cross"], finite(dice["baseline"].get("cross")))
    return out


def stages_frame(stages: Sequence[dict[str, Any]], experiment_status: str | None = None) -> pd.DataFrame:
    """One row per stage; with ``experiment_status``, a stage of a stopped experiment that is still running shows
    as ``stopping``, without an ETA."""
    rows = []
    for s in stages:
        status = stage_status(s, experiment_status)
        start, end = parse_time(s.get("started_at")), parse_time(s.get("finished_at"))
        took = (end - start).total_seconds() if start and end else None
        trains = s["kind"] != "evaluation"  # epochs, loss and Dice belong to training stages
        rows.append({
            "Stage": stage_label(s), "Status": status,
            "Progress": 100.0 if s["status"] == "succeeded" else 100 * (s.get("progress") or 0.0),
            "Epoch": f"{s.get('epoch') or 0}/{s.get('epochs')}" if trains else "",
            "Loss": fmt(s.get("loss"), 4) if trains else "",
            "Val Dice": fmt(s.get("val_dice")) if trains else "",
            "Best val Dice": fmt(s.get("best_val_dice")) if trains else "",
            "ETA": fmt_seconds(s.get("eta_seconds")) if status == "running" else "",
            "Took": fmt_seconds(took) if took is not None else "",
            "Attempts": s.get("attempts") or 0,
            "Note": "; ".join(x for x in [s.get("message") or "",
                                          f"resumed from epoch {s['resumed_from_epoch']}"
                                          if s.get("resumed_from_epoch") else "",
                                          *(s.get("warnings") or [])] if x),
        })
    return pd.DataFrame(rows)


def timeline_frame(stages: Sequence[dict[str, Any]], now: datetime | None = None) -> pd.DataFrame:
    """Start and end of every stage that has started (running ones end now), for a Gantt chart."""
    now = now or datetime.now(timezone.utc)
    rows = []
    for s in stages:
        start = parse_time(s.get("started_at"))
        if start is None:
            continue
        end = parse_time(s.get("finished_at")) or now
        if end <= start:  # a stage that took no measurable time still gets a visible bar
            end = start + pd.Timedelta(milliseconds=100)
        rows.append({"Stage": stage_label(s), "Kind": s["kind"], "Status": s["status"], "Start": start, "End": end})
    return pd.DataFrame(rows, columns=["Stage", "Kind", "Status", "Start", "End"])


def metrics_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """The per-epoch curves of every training stage in long form."""
    rows = []
    for st in metrics.get("data", []):
        label = stage_label(st)
        for m in st["epochs"]:
            rows.append({"Stage": label, "Kind": st["kind"], "Seed": st.get("seed"), "Epoch": m["epoch"],
                         "Loss": finite(m.get("loss")), "Segmentation loss": finite(m.get("seg_loss")),
                         "Distillation loss": finite(m.get("kd_loss")), "Val Dice": finite(m.get("val_dice"))})
    return pd.DataFrame(rows, columns=["Stage", "Kind", "Seed", "Epoch", "Loss", "Segmentation loss",
                                       "Distillation loss", "Val Dice"])
