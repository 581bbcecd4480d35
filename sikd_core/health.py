"""Experiment health: the findings that need more than one stage, and the report's ``health`` section.

Per-stage findings (collapsed predictions, zero validation Dice, non-finite or exploding loss, an unlearned
teacher) come from :class:`~sikd_core.training.health.HealthMonitor` while a stage trains and are kept in its
``done.json``. At evaluation time :func:`evaluation_findings` adds what only the per-case scores show:

* ``student_equals_baseline``: the student's predictions (or every per-case score) are identical to its
  baseline's on every evaluated case: distillation changed nothing, or both collapsed the same way;
* ``student_below_baseline``: the student ends more than :data:`BELOW_BASELINE_DICE` below its baseline
  (intra-dataset test Dice, or best validation Dice);
* ``baseline_below_reference``: the baseline's intra-dataset test Dice trails the independent reference recipe's
  clearly (:data:`BELOW_REFERENCE_DICE`, paired, averaged over seeds, CI excluding 0): every
  comparison against this baseline, on every dataset, may measure the baseline's deficit, not the method. One
  finding per baseline seed (each model is flagged), all carrying the seed-averaged figures;
* ``reference_not_converged``: the reference recipe's validation Dice was still rising when its budget ended
  (the mean over its last quarter of epochs more than :data:`REFERENCE_STILL_RISING` above the mean over the
  quarter before): an unconverged reference bounds the baseline from below only, so "not below the reference"
  then shows that the baseline is not under-trained relative to a standard recipe at the same budget, not that
  it is as strong as a converged one;
* ``cross_at_chance``: a model's mean Dice on a cross dataset is no better (within :data:`CHANCE_MARGIN`)
  than a trivial predictor's on the same cases: every pixel one foreground class (per class, the best such
  predictor) or every pixel background. Both are computed from the labels alone.

:func:`health_section` turns all findings into ``report.json``'s ``health`` object and
:func:`mark_comparisons` adds ``unhealthy_models`` to every paired comparison. Which findings a model carries is
decided in one place, :func:`model_findings`: its own (``method``/``seed``), and for a distilled model (``sikd``,
``X+sikd``) also its teacher's (stage ``teacher``, same seed): a student distilled from an unlearned teacher is
not healthy. The report, the API (experiment lists, results, model cards) and the dashboard all read it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sikd_core.methods.registry import REFERENCE
from sikd_core.training.health import make_finding

#: A student more than this much Dice below its baseline (intra test, or best validation) is flagged.
BELOW_BASELINE_DICE = 0.1
#: A cross-dataset Dice at most this much above the trivial predictor's counts as chance.
CHANCE_MARGIN = 0.01
#: The baseline "trails the reference clearly" when its intra-dataset Dice is more than this below the
#: reference recipe's (paired, averaged over seeds) and the 95% CI of the difference excludes 0.
BELOW_REFERENCE_DICE = 0.02
#: The reference "was still rising" when the mean validation Dice of its last quarter of epochs exceeds the
#: quarter's before by more than this (means over a quarter, not single epochs: validation Dice is noisy).
REFERENCE_STILL_RISING = 0.01
#: Which training stage produced the model a method names (for findings on evaluated models).
METHOD_STAGE = {"baseline": "baseline", "sikd": "student"}


def _mean(values: Iterable[float]) -> float:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def trivial_dice(gt_fraction: Sequence[float]) -> tuple[float, float]:
    """Mean foreground Dice of the two trivial predictors on one case, from its per-class pixel fractions.

    Predicting class ``c`` everywhere scores ``2 f / (f + 1)`` for a class covering a fraction ``f`` (0 when
    absent: the metric convention for a class predicted but absent); predicting background everywhere scores 1
    for absent classes and 0 for present ones. Returns ``(all_foreground, all_background)``.
    """
    f = np.asarray(gt_fraction, dtype=np.float64)
    if f.size == 0:
        return float("nan"), float("nan")
    fg = np.where(f > 0, 2 * f / (f + 1), 0.0)
    bg = (f <= 0).astype(np.float64)
    return float(fg.mean()), float(bg.mean())


def _by_model(cases: Iterable[dict[str, Any]]) -> dict[tuple[str, int], dict[tuple[str, str, str], dict[str, Any]]]:
    out: dict[tuple[str, int], dict[tuple[str, str, str], dict[str, Any]]] = defaultdict(dict)
    for c in cases:
        out[(c["method"], int(c["seed"]))][(c["dataset"], c["split"], str(c["case"]))] = c
    return out


def _same_scores(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def vec(c: dict[str, Any]) -> list[Any]:
        pc = c.get("per_class") or {}
        return [c.get("dice"), c.get("hd95"), *(pc.get("dice") or []), *(pc.get("hd95") or [])]

    va, vb = vec(a), vec(b)
    return len(va) == len(vb) and all(
        (x is None and y is None) or (x is not None and y is not None
                                      and (x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))))
        for x, y in zip(va, vb, strict=True))


def evaluation_findings(cases: Sequence[dict[str, Any]], records: dict[tuple[str, int], dict[str, Any]]
                        ) -> list[dict[str, Any]]:
    """Cross-stage findings from per-case scores (``cases.json``) and stage records (``done.json`` by
    ``(stage, seed)``)."""
    models = _by_model(cases)
    out: list[dict[str, Any]] = []
    seeds = sorted({s for _, s in models})
    for seed in seeds:
        base, stud = models.get(("baseline", seed)), models.get(("sikd", seed))
        if not base or not stud:
            continue
        ctx = dict(stage="student", seed=seed, method="sikd", epoch=None)
        common = sorted(set(base) & set(stud))
        if common:
            digests = [(base[k].get("pred_digest"), stud[k].get("pred_digest")) for k in common]
            same_pred = all(a is not None and a == b for a, b in digests)
            same_scores = all(_same_scores(base[k], stud[k]) for k in common)
            if same_pred or same_scores:
                basis = "predictions" if same_pred else "scores"
                out.append(make_finding(
                    "student_equals_baseline", f"sikd (seed {seed}): the student's {basis} are identical to the "
                    f"baseline's on all {len(common)} evaluated cases: distillation changed nothing, or both "
                    "collapsed the same way", values={"cases": len(common), "basis": basis}, **ctx))
        intra_b = _mean(c["dice"] for k, c in base.items() if k[1] == "intra")
        intra_s = _mean(c["dice"] for k, c in stud.items() if k[1] == "intra")
        val_b = (records.get(("baseline", seed)) or {}).get("best_val_dice")
        val_s = (records.get(("student", seed)) or {}).get("best_val_dice")
        for basis, b, s in (("intra test Dice", intra_b, intra_s), ("best validation Dice", val_b, val_s)):
            if b is None or s is None or not (math.isfinite(b) and math.isfinite(s)):
                continue
            if s < b - BELOW_BASELINE_DICE:
                out.append(make_finding(
                    "student_below_baseline", f"sikd (seed {seed}): the student's {basis} {s:.3f} is "
                    f"{b - s:.3f} below the baseline's {b:.3f} (more than {BELOW_BASELINE_DICE:g})",
                    values={"basis": basis, "student_dice": s, "baseline_dice": b, "gap": b - s,
                            "threshold": BELOW_BASELINE_DICE}, **ctx))
                break
    for (method, seed), items in sorted(models.items()):
        per_dataset: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (dataset, split, _), c in items.items():
            if split == "cross" and c.get("gt_fraction") is not None:
                per_dataset[dataset].append(c)
        for dataset, cs in sorted(per_dataset.items()):
            dice = _mean(c["dice"] for c in cs)
            triv = [trivial_dice(c["gt_fraction"]) for c in cs]
            all_fg, all_bg = _mean(t[0] for t in triv), _mean(t[1] for t in triv)
            chance = max(v for v in (all_fg, all_bg, 0.0) if math.isfinite(v))
            if math.isfinite(dice) and dice <= chance + CHANCE_MARGIN:
                out.append(make_finding(
                    "cross_at_chance", f"{method} (seed {seed}) on {dataset} (cross): mean Dice {dice:.3f} is no "
                    f"better than a trivial predictor's {chance:.3f} (every pixel foreground {all_fg:.3f}, every "
                    f"pixel background {all_bg:.3f})", stage=METHOD_STAGE.get(method, method), seed=seed,
                    method=method, epoch=None,
                    values={"dataset": dataset, "dice": dice, "chance_dice": chance, "all_foreground_dice": all_fg,
                            "all_background_dice": all_bg, "cases": len(cs), "margin": CHANCE_MARGIN}))
    return out


def reference_findings(strength: Sequence[dict[str, Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """``baseline_below_reference`` findings from :func:`sikd_core.report.baseline_strength` (intra rows)."""
    out = []
    for e in strength:
        if e["split"] != "intra" or not e.get("below_reference"):
            continue
        d = e["dice"]
        for seed in seeds:
            out.append(make_finding(
                "baseline_below_reference",
                f"baseline on {e['dataset']} (intra): its test Dice trails the reference recipe's by "
                f"{-d['mean_diff']:.3f} [95% CI {-d['ci_high']:.3f}, {-d['ci_low']:.3f}] over {e['n_cases']} cases "
                f"(seeds averaged): it is weaker than the field's standard recipe makes it, so a gain over it is "
                "not evidence. Use the default recipe (loss dice_ce), train longer, or check the learning rate.",
                stage="baseline", seed=seed, method="baseline", epoch=None,
                # "intra_dataset", not "dataset": a weak baseline weakens its comparisons on every dataset
            values={"intra_dataset": e["dataset"], "split": "intra", "mean_diff": d["mean_diff"],
                    "ci_low": d["ci_low"], "ci_high": d["ci_high"], "p_value": d["p_value"],
                    "cases": e["n_cases"], "threshold": BELOW_REFERENCE_DICE}))
    return out


def still_rising(history: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """The validation Dice trend at the end of a training history: ``{"last": mean of the last quarter of
    epochs, "before": mean of the quarter before, "gain": last - before}``, or None when fewer than 4 epochs
    were validated."""
    vals = [float(h["val_dice"]) for h in history if h.get("val_dice") is not None and math.isfinite(h["val_dice"])]
    q = len(vals) // 4
    if q < 1:
        return None
    last, before = float(np.mean(vals[-q:])), float(np.mean(vals[-2 * q:-q]))
    return {"last": last, "before": before, "gain": last - before, "epochs": q}


def reference_convergence(records: dict[tuple[str, int], dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per reference seed: its :func:`still_rising` trend and whether it counts as converged."""
    out = {}
    for (stage, seed), rec in sorted(records.items()):
        trend = still_rising(rec.get("history") or []) if stage == REFERENCE else None
        if trend is not None:
            out[seed] = dict(trend, converged=trend["gain"] <= REFERENCE_STILL_RISING)
    return out


def convergence_findings(trends: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """``reference_not_converged`` for each reference seed whose validation Dice was still rising."""
    out = []
    for seed, t in sorted(trends.items()):
        if t["converged"]:
            continue
        out.append(make_finding(
            "reference_not_converged",
            f"reference (seed {seed}): its validation Dice was still rising when its budget ended ({t['before']:.3f} "
            f"-> {t['last']:.3f} over its last {2 * t['epochs']} epochs, more than {REFERENCE_STILL_RISING:g}): an "
            "unconverged reference bounds the baseline from below only; a baseline 'not below' it is not shown to "
            "be as strong as the standard recipe makes it. Train longer (more epochs) to make it the upper bar.",
            stage=REFERENCE, seed=seed, method=REFERENCE, epoch=None,
            values={"last_quarter_val_dice": t["last"], "previous_quarter_val_dice": t["before"],
                    "gain": t["gain"], "threshold": REFERENCE_STILL_RISING}))
    return out


def model_key(method: str | None, seed: int | None) -> str:
    return f"{method}/{seed}"


def parse_model_key(key: str) -> tuple[str, int | None]:
    """``"gin+sikd/0"`` -> ``("gin+sikd", 0)`` (the seed None when it is not a number)."""
    method, _, seed = str(key).rpartition("/")
    return method, (int(seed) if seed.lstrip("-").isdigit() else None)


def is_distilled(method: str | None) -> bool:
    """Whether ``method``'s model is a student distilled from the seed's teacher (``sikd``, ``X+sikd``); an
    unknown name is not."""
    from sikd_core.errors import SpecError
    from sikd_core.methods import parse_method

    try:
        return bool(method) and parse_method(str(method))[1]
    except SpecError:
        return False


def applies_to(finding: dict[str, Any], method: str, seed: int | None) -> bool:
    """Whether ``finding`` is about the model ``method``/``seed``: its own finding, or (for a distilled model)
    a finding about the teacher it was distilled from (stage ``teacher``, same seed)."""
    if finding.get("seed") is not None and seed is not None and int(finding["seed"]) != int(seed):
        return False
    if finding.get("stage") == "teacher":
        return is_distilled(method)
    return finding.get("method") == method


def model_findings(findings: Sequence[dict[str, Any]], models: Iterable[tuple[str, int]]
                   ) -> dict[str, list[dict[str, Any]]]:
    """Each model's findings (``"<method>/<seed>"`` -> findings, in their order), inherited ones included (see
    :func:`applies_to`). Every model of ``models`` has an entry, an empty list when it is healthy."""
    return {model_key(m, s): [f for f in findings if applies_to(f, m, s)] for m, s in models}


def health_section(findings: Sequence[dict[str, Any]], models: Iterable[tuple[str, int]]) -> dict[str, Any]:
    """``report.json``'s ``health``: overall status, every finding, and each evaluated model's status (a model
    is unhealthy when :func:`model_findings` gives it a finding, its teacher's included)."""
    mine = model_findings(findings, models)
    status = {k: ("unhealthy" if v else "healthy") for k, v in mine.items()}
    return {"status": "unhealthy" if findings else "healthy", "findings": list(findings), "models": status}


def mark_comparisons(comparisons: list[dict[str, Any]], health: dict[str, Any]) -> None:
    """Add ``unhealthy_models`` to each comparison: the compared models (``a``/``b`` of any seed) with a
    finding that applies to the compared dataset (findings about one dataset apply to that one only; a
    student's teacher's findings apply to the student, see :func:`applies_to`)."""
    findings = list(health.get("findings", []))
    seeds = sorted({f.get("seed") for f in findings if f.get("seed") is not None})
    for comp in comparisons:
        methods = [m for m in (comp.get("a"), comp.get("b"), comp.get("method"), comp.get("reference")) if m]
        hit = set()
        for f in findings:
            ds = (f.get("values") or {}).get("dataset")
            if ds is not None and ds != comp.get("dataset"):
                continue
            for m in dict.fromkeys(methods):
                for s in ([f.get("seed")] if f.get("seed") is not None else seeds):
                    if applies_to(f, m, s):
                        hit.add(model_key(m, s))
        comp["unhealthy_models"] = sorted(hit)


def health_markdown(health: dict[str, Any] | None) -> list[str]:
    """The report's "Training health" section (placed before the score tables)."""
    if not health:
        return []
    lines = ["## Training health", ""]
    findings = health.get("findings") or []
    if not findings:
        return lines + ["All checks passed: no collapsed predictions, zero validation Dice, non-finite or exploding "
                        "loss, unlearned teacher, student identical to or far below its baseline, or cross-dataset "
                        "score at chance.", ""]
    bad = sorted(k for k, v in (health.get("models") or {}).items() if v == "unhealthy")
    lines += [f"**UNHEALTHY** ({len(findings)} finding{'s' if len(findings) != 1 else ''}"
              + (f"; models {', '.join(bad)}" if bad else "") + "): scores of these models, and comparisons "
              "involving them (marked ⚠), do not measure what they seem to.", ""]
    for f in findings:
        where = f"{f.get('stage')}, seed {f.get('seed')}" + (f", epoch {f['epoch']}" if f.get("epoch") else "")
        lines.append(f"- **{f['severity']}** `{f['code']}` ({where}): {f['message']}")
    return lines + [""]
