"""The New experiment form's data: the API's 422 as messages per field, the seeds box, the dataset's plan as the
form's values and the API's estimate in words."""

from __future__ import annotations

import re
from typing import Any

from ui.formatting import fmt_seconds

#: The spec keys a size choice (the dataset's plan, or a preset) sets.
SIZE_KEYS = ("network", "network_kwargs", "image_size", "epochs", "batch_size", "lr")


def field_errors(body: dict[str, Any] | None, detail: Any = None) -> tuple[dict[str, list[str]], list[str]]:
    """An API error as ``({field: [messages]}, [messages about no one field])``, read from its ``errors``
    (``{loc, msg, type}``, ``loc`` ``["body", "<field>", ...]``); without ``errors``, ``detail`` is one general
    message."""
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    errors = (body or {}).get("errors")
    if not isinstance(errors, list) or not errors:
        text = str((body or {}).get("detail") or detail or "").strip()
        return fields, [text] if text else []
    for e in errors:
        loc = [str(p) for p in (e.get("loc") or [])] if isinstance(e, dict) else []
        msg = str(e.get("msg", "")) if isinstance(e, dict) else str(e)
        if loc[:1] == ["body"] and len(loc) > 1:
            fields.setdefault(loc[1], []).append(msg)
        else:
            general.append(msg)
    return fields, general


def parse_seeds(text: str) -> list[int]:
    """``"0, 1 2"`` -> ``[0, 1, 2]``; raises ValueError naming the bad part."""
    parts = [p for p in re.split(r"[,\s;]+", text.strip()) if p]
    if not parts:
        raise ValueError("give at least one seed, e.g. 0 or 0, 1, 2")
    out = []
    for p in parts:
        try:
            out.append(int(p))
        except ValueError:
            raise ValueError(f"{p!r} is not a whole number; seeds are integers separated by commas") from None
    return out


def plan_choice(plan: dict[str, Any]) -> dict[str, Any]:
    """The size fields of a dataset's plan (GET /datasets/{id}/plan) and a line saying why."""
    spec = plan["spec"]
    reasons = plan.get("reasons") or {}
    why = "; ".join(f"{k.replace('_', ' ')}: {'; '.join(v) if isinstance(v, list) else v}" for k, v in reasons.items())
    fp = plan.get("fingerprint") or {}
    dev = plan.get("device") or {}
    where = (f"{dev.get('name', 'a GPU')} ({dev.get('memory_gib')} GiB)" if dev.get("kind") == "cuda"
             else f"a CPU with {dev.get('cores', '?')} cores")
    head = (f"Planned from {fp.get('name', 'the dataset')} ({fp.get('pairs', '?')} pairs, median "
            f"{'x'.join(str(v) for v in fp.get('median_size', []))} px) for {where}: "
            f"{dev.get('source', 'the device')}")
    return {"values": {k: spec[k] for k in SIZE_KEYS if k in spec}, "description": f"{head}. {why}"}


def estimate_text(est: dict[str, Any]) -> str:
    """The API's estimate (POST /experiments/estimate) in words: the total, its parts, and what it rests on."""
    bases = sorted({s["basis"] for s in est.get("stages", [])})
    stages = len(est.get("plan", []))
    if est.get("seconds") is None:  # a step not measured yet: a worker is timing it
        text = (f"**Estimated run time:** not known yet: {stages} training stages of {est['planned_epochs']} epochs "
                "in all, whose training step has not been measured on the workers yet"
                + (f" ({est['timing']})" if est.get("timing") else "") + "; it is known once a worker has timed it")
        return text + ". Step costs: " + ", ".join(bases) + "."
    text = (f"**Estimated run time:** about {fmt_seconds(est['seconds'])}: {stages} training stages of "
            f"{est['planned_epochs']} epochs in all ({fmt_seconds(est['training_seconds'])}), evaluation "
            f"{fmt_seconds(est['evaluation_seconds'])}")
    if est.get("ahead"):
        text += f", after {est['ahead']} experiment(s) ahead in the queue ({fmt_seconds(est['queue_seconds'])})"
    text += (". Step costs: " + ", ".join(bases) + f" (from {est.get('measured_stages', 0)} finished stage(s)); "
             f"evaluation: {est.get('evaluation_basis', '?')}.")
    return text
