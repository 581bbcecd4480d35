"""Turn per-case scores into the experiment report: paper-style tables and paired statistics.

``report.json`` rows are ``{method, seed, dataset, split ("intra"|"cross"), dice, iou, hd95, hd,
per_class: {class_name: {dice, iou, hd95, hd}}, n_cases}``: one row per trained model and evaluated
dataset. Single-number deltas mislead at small scale, so every dataset also gets paired comparisons:
the per-case difference of a method minus its reference (every method against the baseline, every
``X+sikd`` against ``X``), averaged over seeds, a bootstrap 95% confidence interval of its mean, a
Wilcoxon signed-rank p-value and its Holm adjustment across all comparisons of the experiment.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sikd_core.health import BELOW_REFERENCE_DICE, health_markdown
from sikd_core.methods.registry import REFERENCE
from sikd_core.spec import with_current_names

#: The per-class metrics every result carries, in this order (:mod:`sikd_core.metrics` computes them; defined
#: here so results are read and reported without PyTorch).
METRIC_NAMES = ("dice", "iou", "hd95", "hd")


METHOD_LABELS = {"baseline": "Baseline", "sikd": "SIKD", "sdm": "U-Net w/ SDM", "gin": "GIN",
                 "maxstyle": "MaxStyle", "reference": "Reference (nnU-Net-like)"}



def method_label(name: str) -> str:
    """``gin+sikd`` -> ``GIN + SIKD``; unknown names as they are."""
    return " + ".join(METHOD_LABELS.get(part, part) for part in name.split("+"))


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def _std(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def aggregate_rows(cases: Iterable[dict[str, Any]], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per-case records -> one row per (method, seed, dataset, split) with means over cases."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for c in cases:
        groups[(c["method"], c["seed"], c["dataset"], c["split"])].append(c)
    fg = list(class_names[1:])
    rows = []
    for (method, seed, dataset, split), items in groups.items():
        row: dict[str, Any] = {"method": method, "seed": seed, "dataset": dataset, "split": split,
                               "n_cases": len(items)}
        for m in METRIC_NAMES:
            row[m] = _nanmean([it[m] for it in items])
        row["per_class"] = {
            name: {m: _nanmean([it["per_class"][m][ci] for it in items]) for m in METRIC_NAMES}
            for ci, name in enumerate(fg)
        }
        rows.append(row)
    rows.sort(key=lambda r: (r["split"] != "intra", r["dataset"], r["method"], r["seed"]))
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds for every (method, dataset, split), overall and per class."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["dataset"], r["split"])].append(r)
    out = []
    for (method, dataset, split), items in groups.items():
        s: dict[str, Any] = {"method": method, "dataset": dataset, "split": split, "n_seeds": len(items),
                             "seeds": sorted(r["seed"] for r in items)}
        for m in METRIC_NAMES:
            vals = [r[m] for r in items]
            s[f"{m}_mean"], s[f"{m}_std"] = _nanmean(vals), _std(vals)
        classes = list(items[0]["per_class"])
        s["per_class"] = {
            c: {f"{m}_{k}": f([r["per_class"][c][m] for r in items])
                for m in METRIC_NAMES for k, f in (("mean", _nanmean), ("std", _std))}
            for c in classes
        }
        out.append(s)
    out.sort(key=lambda r: (r["split"] != "intra", r["dataset"], r["method"]))
    return out


def bootstrap_ci(diffs: np.ndarray, n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``diffs``, vectorised (chunks of resamples at once)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    if diffs.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // max(diffs.size, 1)))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        idx = rng.integers(0, diffs.size, size=(k, diffs.size))
        means[start:start + k] = diffs[idx].mean(1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero, NaN below 2 pairs."""
    from scipy.stats import wilcoxon

    diffs = np.asarray(diffs, dtype=np.float64)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size < 2:
        return float("nan")
    if not np.any(diffs != 0):
        return 1.0
    return float(wilcoxon(diffs, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_comparisons(cases: Iterable[dict[str, Any]], a: str = "sikd", b: str = "baseline") -> list[dict[str, Any]]:
    """Per dataset: per-case ``a - b`` of Dice and HD95, paired on (seed, case), averaged over seeds."""
    table: dict[tuple, dict[tuple, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for c in cases:
        table[(c["dataset"], c["split"])][(c["seed"], c["case"])][c["method"]] = c
    out = []
    for (dataset, split), pairs in table.items():
        per_case: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        n_pairs = 0
        for (_seed, case), methods in pairs.items():
            if a in methods and b in methods:
                n_pairs += 1
                for m in ("dice", "hd95"):
                    per_case[case][m].append(methods[a][m] - methods[b][m])
        if not n_pairs:
            continue
        entry: dict[str, Any] = {"dataset": dataset, "split": split, "n_cases": len(per_case),
                                 "n_pairs": n_pairs, "a": a, "b": b, "method": a, "reference": b}
        for m in ("dice", "hd95"):
            d = np.array([np.mean(v[m]) for v in per_case.values()], dtype=np.float64)
            d = d[np.isfinite(d)]
            lo, hi = bootstrap_ci(d)
            better = d > 0 if m == "dice" else d < 0
            worse = d < 0 if m == "dice" else d > 0
            entry[m] = {"mean_diff": float(d.mean()) if d.size else float("nan"),
                        "median_diff": float(np.median(d)) if d.size else float("nan"),
                        "ci_low": lo, "ci_high": hi, "p_value": wilcoxon_p(d),
                        "better": int(better.sum()), "worse": int(worse.sum()),
                        "ties": int(d.size - better.sum() - worse.sum())}
        out.append(entry)
    out.sort(key=lambda r: (r["split"] != "intra", r["dataset"]))
    return out


def comparison_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """``(method, reference)`` pairs: every method against ``baseline``, every ``X+sikd`` against ``X``. The
    ``reference`` recipe is not a method under comparison: it measures the baseline (:func:`baseline_strength`)."""
    pairs = []
    if "baseline" in methods:
        pairs += [(m, "baseline") for m in methods if m not in ("baseline", REFERENCE)]
    from sikd_core.methods import parse_method

    for m in methods:
        base, distilled = parse_method(m)
        if distilled and base != "baseline" and base in methods:
            pairs.append((m, base))
    return pairs


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(v) for v in out]


def add_holm(comparisons: Sequence[dict[str, Any]]) -> None:
    """Holm-adjust the p-values of ``comparisons`` (:func:`paired_comparisons` entries) across all of them, per
    metric (``<metric>.p_holm``); the entry's own ``p_holm`` is Dice's."""
    for m in ("dice", "hd95"):
        for entry, ph in zip(comparisons, holm([e[m]["p_value"] for e in comparisons]), strict=True):
            entry[m]["p_holm"] = ph
    for entry in comparisons:
        entry["p_holm"] = entry["dice"]["p_holm"]


def method_comparisons(cases: Iterable[dict[str, Any]], methods: Sequence[str],
                       strength: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Paired comparisons of every pair of :func:`comparison_pairs` on every dataset, with Holm-adjusted
    p-values (``p_holm``, per metric, across all the experiment's comparisons; the entry's own ``p_holm``
    is Dice's). Every comparison against the baseline carries ``baseline_strength`` (baseline minus reference
    on that dataset: ``mean_diff``, ``ci_low``, ``ci_high``, ``p_value``, ``below_reference``) when the
    experiment trains the reference; ``strength`` is :func:`baseline_strength`'s result if already computed."""
    cases = list(cases)
    out: list[dict[str, Any]] = []
    for a, b in comparison_pairs(methods):
        out += paired_comparisons(cases, a=a, b=b)
    add_holm(out)
    by_set = {(e["dataset"], e["split"]): e
              for e in (baseline_strength(cases, methods) if strength is None else strength)}
    for entry in out:
        if entry["b"] == "baseline" and (entry["dataset"], entry["split"]) in by_set:
            e = by_set[(entry["dataset"], entry["split"])]
            entry["baseline_strength"] = {k: e["dice"][k] for k in ("mean_diff", "ci_low", "ci_high", "p_value")}
            entry["baseline_strength"]["below_reference"] = e["below_reference"]
    return out


def baseline_strength(cases: Iterable[dict[str, Any]], methods: Sequence[str],
                      reference_converged: bool | None = None) -> list[dict[str, Any]]:
    """Baseline minus reference per dataset and split (paired per case, averaged over seeds, bootstrap CI,
    Wilcoxon p and its Holm adjustment over the datasets), with ``below_reference`` set where the baseline
    trails the reference clearly: more than :data:`BELOW_REFERENCE_DICE` Dice with the CI's upper end below 0,
    and ``reference_converged`` (every reference seed's validation Dice had stopped rising,
    :func:`sikd_core.health.reference_convergence`; None when unknown). Empty unless the experiment trains both."""
    if "baseline" not in methods or REFERENCE not in methods:
        return []
    out = paired_comparisons(cases, a="baseline", b=REFERENCE)
    for entry, ph in zip(out, holm([e["dice"]["p_value"] for e in out]), strict=True):
        entry["reference_converged"] = reference_converged
        entry["dice"]["p_holm"] = ph
        d = entry["dice"]
        entry["below_reference"] = bool(math.isfinite(d["mean_diff"]) and d["mean_diff"] < -BELOW_REFERENCE_DICE
                                        and math.isfinite(d["ci_high"]) and d["ci_high"] < 0)
    return out


# ------------------------------------------------------------------------------------------- markdown
def _f(v: float, digits: int = 3, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _p(v: float) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _cell(s: dict[str, Any], m: str, digits: int, n_seeds: int) -> str:
    mean, std = s[f"{m}_mean"], s[f"{m}_std"]
    return f"{_f(mean, digits)} ± {_f(std, digits)}" if n_seeds > 1 else _f(mean, digits)


def _score_table(summary: list[dict[str, Any]], datasets: list[tuple[str, str]], methods: list[str],
                 pick: Any, unit: str) -> list[str]:
    header = ["Method"]
    for name, split in datasets:
        header += [f"{name} ({split}) Dice", "IoU", f"HD95 ({unit})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    index = {(s["method"], s["dataset"], s["split"]): s for s in summary}
    for method in methods:
        cells = [method_label(method)]
        for name, split in datasets:
            s = index.get((method, name, split))
            if s is None:
                cells += ["–"] * 3
                continue
            src = pick(s)
            cells += [_cell(src, "dice", 3, s["n_seeds"]), _cell(src, "iou", 3, s["n_seeds"]),
                      _cell(src, "hd95", 2, s["n_seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    if "baseline" in methods and "sikd" in methods:
        cells = ["Δ SIKD − baseline"]
        for name, split in datasets:
            a, b = index.get(("sikd", name, split)), index.get(("baseline", name, split))
            if a is None or b is None:
                cells += ["–"] * 3
                continue
            pa, pb = pick(a), pick(b)
            cells += [_f(pa["dice_mean"] - pb["dice_mean"], 3, True), _f(pa["iou_mean"] - pb["iou_mean"], 3, True),
                      _f(pa["hd95_mean"] - pb["hd95_mean"], 2, True)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _strength_cell(bs: dict[str, Any] | None) -> str:
    if not bs:
        return "–"
    text = f"{_f(bs['mean_diff'], 3, True)} [{_f(bs['ci_low'], 3, True)}, {_f(bs['ci_high'], 3, True)}]"
    return f"⚠ {text}" if bs.get("below_reference") else text


def strength_markdown(report: dict[str, Any]) -> list[str]:
    """The report's "Baseline strength" section: baseline minus the reference recipe per dataset, or the
    statement that nothing in this experiment measures the baseline's strength."""
    if "baseline" not in (report.get("methods") or []):
        return []
    lines = ["## Baseline strength", ""]
    rows = report.get("baseline_strength") or []
    if REFERENCE not in (report.get("methods") or []) or not rows:
        return lines + ["No reference recipe was trained, so nothing in this experiment shows whether the baseline "
                        "is as strong as the field's standard recipe makes it: a gain over a weak baseline is not "
                        "evidence. Add `reference` to `methods` (an independent nnU-Net-like recipe on the same "
                        "splits and budget).", ""]
    weak = [r for r in rows if r.get("below_reference")]
    if any(r.get("reference_converged") is False for r in rows):
        lines += ["**The reference recipe had not converged**: its validation Dice was still rising when its budget "
                  "ended (finding `reference_not_converged`), so it bounds the baseline from below only. \"Not below "
                  "the reference\" then shows that the baseline is not under-trained relative to a standard recipe "
                  "at the same budget, not that it is as strong as a converged one; train longer to make the "
                  "reference the upper bar.", ""]
    lines += [("**The baseline trails the reference recipe** (" + ", ".join(f"{r['dataset']} ({r['split']})"
                                                                       for r in weak)
               + "): every gain over it may be a gain over an under-trained baseline, not evidence for the method."
               if weak else "The baseline is not clearly below the reference recipe on any dataset (trailing "
               f"clearly = more than {BELOW_REFERENCE_DICE:g} Dice with the 95% CI below 0)."), "",
              "Baseline minus reference per case, averaged over seeds; 95% bootstrap CI; Wilcoxon p, Holm-adjusted "
              "over the datasets.", "",
              "| Dataset | Split | Cases | ΔDice baseline − reference [95% CI] | p | p (Holm) | Verdict |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["dice"]
        verdict = "**below the reference**" if r.get("below_reference") else "not clearly below"
        lines.append(f"| {r['dataset']} | {r['split']} | {r['n_cases']} | {_f(d['mean_diff'], 3, True)} "
                     f"[{_f(d['ci_low'], 3, True)}, {_f(d['ci_high'], 3, True)}] | {_p(d['p_value'])} | "
                     f"{_p(d.get('p_holm'))} | {verdict} |")
    return lines + [""]


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: the paper's table layout (intra vs cross, baseline vs SIKD, delta)."""
    spec = with_current_names(report["spec"])  # a report written before the rename names the network "model"
    summary = report["summary"]
    present = {s["method"] for s in summary}
    order = list(report.get("methods") or ["baseline", "sikd"]) + sorted(present)
    methods = list(dict.fromkeys(m for m in order if m in present))
    datasets: list[tuple[str, str]] = []
    for s in summary:
        if (s["dataset"], s["split"]) not in datasets:
            datasets.append((s["dataset"], s["split"]))
    unit = report.get("units", "px")
    n_seeds = len(spec["seeds"])
    lines = [
        f"# SIKD Studio report: {spec['name']}",
        "",
        f"Network `{spec['network']}` {spec.get('network_kwargs') or ''} · image size {spec['image_size'][0]}×"
        f"{spec['image_size'][1]} · {spec['epochs']} epochs (teacher {spec.get('teacher_epochs') or spec['epochs']})"
        f" · batch {spec['batch_size']} · lr {spec['lr']:g} · loss {spec['loss']} · α = {spec['alpha']:g} · "
        f"teacher input `{spec['teacher_input']}` · seeds {spec['seeds']}",
        "",
        f"Trained on **{report['train_dataset']}**; intra = the test split of each training source ({report.get('n_test_cases', '?')} cases); "
        f"cross = datasets never seen in training. Scores are means over foreground classes"
        + (f", mean ± std over {n_seeds} seeds." if n_seeds > 1 else "."),
        "",
        *health_markdown(report.get("health")),
        *strength_markdown(report),
        "## Scores (mean over foreground classes)",
        "",
        *_score_table(summary, datasets, methods, lambda s: s, unit),
    ]
    class_names = report.get("class_names", [])
    if len(class_names) > 2:
        for cname in class_names[1:]:
            lines += ["", f"### {cname}", ""]
            lines += _score_table(summary, datasets, methods, lambda s, c=cname: s["per_class"][c], unit)
    comps = report.get("comparisons") or []
    if comps:
        lines += ["", "## Paired per-case comparisons", "",
                  "Method minus reference per case, averaged over seeds; 95% bootstrap CI of the mean; two-sided "
                  "Wilcoxon signed-rank test, p (Holm) adjusted across all comparisons of this experiment. "
                  "Better/worse count cases (Dice up, HD95 down = better).", "",
                  f"| Comparison | Dataset | Split | Cases | ΔDice [95% CI] | p | p (Holm) | better/worse | "
                  f"ΔHD95 ({unit}) [95% CI] | p (Holm) | Baseline − reference |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in comps:
            d, h = c["dice"], c["hd95"]
            a, b = c.get("method", c.get("a", "sikd")), c.get("reference", c.get("b", "baseline"))
            flag = f"⚠ {c['dataset']} (unhealthy: {', '.join(c['unhealthy_models'])})" if c.get("unhealthy_models") \
                else c["dataset"]
            lines.append(
                f"| {method_label(a)} − {method_label(b)} | {flag} | {c['split']} | {c['n_cases']} | "
                f"{_f(d['mean_diff'], 3, True)} [{_f(d['ci_low'], 3, True)}, {_f(d['ci_high'], 3, True)}] | "
                f"{_p(d['p_value'])} | {_p(d.get('p_holm'))} | {d['better']}/{d['worse']} | "
                f"{_f(h['mean_diff'], 2, True)} [{_f(h['ci_low'], 2, True)}, {_f(h['ci_high'], 2, True)}] | "
                f"{_p(h.get('p_holm'))} | {_strength_cell(c.get('baseline_strength'))} |")
    stages = report.get("stages") or []
    if stages:
        lines += ["", "## Training", "", "| Stage | Seed | Best val Dice | Best epoch | Epochs | Time (s) |",
                  "|---|---|---|---|---|---|"]
        for s in stages:
            lines.append(f"| {s['stage']} | {s['seed']} | {_f(s.get('best_val_dice'))} | {s.get('best_epoch')} | "
                         f"{s.get('epochs')} | {_f(s.get('seconds'), 1)} |")
    warnings = report.get("warnings") or []
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    lines += ["", "Metric conventions: Dice/IoU 1 and HD 0 when a class is absent from both ground truth and "
              "prediction; Dice/IoU 0 and HD = the image diagonal when it is absent from only one. "
              f"Distances in {'millimetres' if unit == 'mm' else 'pixels of the original image'}.", ""]
    return "\n".join(lines)
