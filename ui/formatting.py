"""Shaping the API's JSON into what the pages show: tables, ETAs, score tables, spec differences.

Pure functions on dicts and pandas (no Streamlit, no HTTP), so the pages hold UI only and these can be
tested on their own. The shapes are those of the API's responses (``ExperimentPublic``, the results'
``summary`` and ``comparisons`` written by the pipeline's report).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from ui.health import WITH_WARNINGS, display_status, experiment_health_summary

STAGE_KINDS = ("baseline", "teacher", "student", "evaluation")
ACTIVE = ("queued", "running")
METHOD_LABELS = {"baseline": "Baseline", "sikd": "SIKD", "gin": "GIN", "sdm": "SDM", "maxstyle": "MaxStyle"}
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:",
                "succeeded": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:",
                "pending": ":material/more_horiz:", WITH_WARNINGS: ":material/warning:",
                "stopping": ":material/stop_circle:"}
#: Outline colours of the overlays: the ground truth, the first and the second contoured method (the API draws
#: them with sikd_core.viz.CONTOUR_COLORS["ground_truth"] and sikd_service.case_view.PAIR_COLOURS).
CONTOUR_COLORS = {"ground truth": "#00e600", "first": "#ff3c3c", "second": "#288cff"}
#: Class colours of masks and fills (index = class; sikd_core.viz.CLASS_COLORS as hex).
CLASS_COLORS = ("#000000", "#ff5050", "#50c878", "#508cff", "#ffc83c", "#c85aff", "#3cdcdc", "#ff8c28", "#a0a0a0")
BETTER = "#1a7f37"
WORSE = "#cf222e"
TEACHER_INPUT_LABELS = {"class_mean": "class-wise mean image (SIKD)", "image": "the image itself (ablation)",
                        "label_map": "the label map (ablation)"}


def finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def fmt(v: Any, digits: int = 3, sign: bool = False) -> str:
    f = finite(v)
    if f is None:
        return "–"
    return f"{f:+.{digits}f}" if sign else f"{f:.{digits}f}"


def fmt_p(v: Any) -> str:
    """A p-value as the report prints it: ``<0.001`` below a thousandth, else three decimals."""
    f = finite(v)
    if f is None:
        return "–"
    return "<0.001" if f < 0.001 else f"{f:.3f}"


def method_label(method: str) -> str:
    """``sikd`` -> ``SIKD``, ``gin+sikd`` -> ``GIN+SIKD``; unknown names stay as they are."""
    return "+".join(METHOD_LABELS.get(part, part) for part in str(method).split("+"))


def comparison_pair(c: dict[str, Any]) -> tuple[str, str]:
    """``(method, reference)`` of a paired comparison: its ``method``/``reference`` keys, else the older
    ``a``/``b``, else SIKD against the baseline (reports written before methods were named)."""
    return (str(c.get("method") or c.get("a") or "sikd"), str(c.get("reference") or c.get("b") or "baseline"))


def ci_sign(entry: dict[str, Any] | None, higher_better: bool) -> int:
    """+1 where a paired difference is better and its 95% CI excludes 0, -1 where it is worse and the CI
    excludes 0, 0 otherwise (no CI, or a CI that includes 0: not a demonstrated difference)."""
    if not entry:
        return 0
    d, lo, hi = finite(entry.get("mean_diff")), finite(entry.get("ci_low")), finite(entry.get("ci_high"))
    if d is None or lo is None or hi is None or lo <= 0 <= hi:
        return 0
    return 1 if (d > 0) == higher_better else -1


def fmt_seconds(s: float | None) -> str:
    """A duration for people: ``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    if s is None or not math.isfinite(s):
        return "–"
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def parse_time(v: str | None) -> datetime | None:
    if not v:
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def stage_status(stage: dict[str, Any], experiment_status: str | None = None) -> str:
    """A stage's status to show: a stage still ``running`` in an experiment that was cancelled (or failed) is
    ``stopping`` (it stops within one training step, then the worker records it)."""
    if stage.get("status") == "running" and experiment_status is not None and experiment_status not in ACTIVE:
        return "stopping"
    return str(stage.get("status"))


def stage_label(stage: dict[str, Any]) -> str:
    return stage["kind"] if stage.get("seed") is None else f"{stage['kind']} (seed {stage['seed']})"


# ------------------------------------------------------------------------------------------ experiments
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


def preset_for_workers(health: dict[str, Any] | None, presets: Sequence[str]) -> str | None:
    """The size preset that fits the workers: ``paper`` when a worker has a GPU, ``quick`` when every worker
    that says what it runs on is CPU-only; None when unknown (no worker answers, or none says)."""
    devices = list(((health or {}).get("workers") or {}).get("devices", {}).values())
    if not devices:
        return None
    gpu = any(d.get("accelerator") == "cuda" for d in devices)
    want = "paper" if gpu else "quick"
    return want if want in presets else None


def split_sizes(n_pairs: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """About how many images go to train / validation / test (the real split is by case or group, so a
    dataset of few large cases can differ)."""
    test = max(1, round(n_pairs * test_fraction)) if n_pairs else 0
    val = max(1, round(n_pairs * val_fraction)) if n_pairs and val_fraction > 0 else 0
    return {"train": max(n_pairs - test - val, 0), "val": val, "test": test}


def training_epochs(spec: dict[str, Any]) -> int:
    """Epochs of all training stages of a spec: per seed, the baseline (if any), and the teacher and
    student of SIKD (and of every ``X+sikd`` composition); any other method trains once."""
    epochs = int(spec.get("epochs") or 0)
    teacher = int(spec.get("teacher_epochs") or 0) or epochs
    total = 0
    for m in spec.get("methods") or []:
        total += epochs + (teacher if m == "sikd" or str(m).endswith("+sikd") else 0)
    return total * max(len(spec.get("seeds") or [0]), 1)


def train_ids(spec: dict[str, Any]) -> list[str]:
    """The spec's training datasets as a list of ids (``train_dataset`` is one id or a list of them)."""
    v = spec.get("train_dataset")
    if v is None or v == "":
        return []
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def seconds_per_unit(exps: Sequence[dict[str, Any]], n_train: dict[int, int]) -> float | None:
    """Measured cost of training: the median over finished training stages of recent experiments of
    seconds / (epochs x training images x pixels), or None without history. ``n_train``: training images
    per dataset id."""
    rates = []
    for e in exps:
        spec = e.get("spec") or {}
        h, w = (spec.get("image_size") or [0, 0])[:2]
        ids = train_ids(spec)
        n = sum(n_train.get(int(i), 0) for i in ids) if ids and all(str(i).isdigit() for i in ids) else None
        for s in e.get("stages") or []:
            if s["kind"] == "evaluation" or s["status"] != "succeeded" or not n or not h or not w:
                continue
            start, end = parse_time(s.get("started_at")), parse_time(s.get("finished_at"))
            epochs = s.get("epochs") or 0
            if start and end and epochs and (s.get("resumed_from_epoch") in (None, 0)):
                rates.append((end - start).total_seconds() / (epochs * n * h * w))
    if not rates:
        return None
    rates.sort()
    return rates[len(rates) // 2]


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
            "ID": e["id"], "Name": e["name"],
            "Status": display_status(e), "Health": experiment_health_summary(e),
            "Progress": 100 * (e.get("progress") or 0.0),
            **{k.capitalize(): None if prog[k] is None else 100 * prog[k] for k in STAGE_KINDS},
            "Now": current_activity(e), "ETA": (fmt_seconds(etas[e["id"]] if etas is not None and e["id"] in etas else experiment_eta(e))
                    if e["status"] in ACTIVE else ""),
            "Model": spec.get("model", ""), "Epochs": spec.get("epochs"),
            "Created": created.strftime("%Y-%m-%d %H:%M") if created else "",
            **headline_scores(e.get("summary")),
            "Open": f"experiment?id={e['id']}",
        })
    cols = ["ID", "Name", "Status", "Health", "Progress", "Headline model", "Dice intra", "Dice cross", "Δ intra",
            "Δ cross", "Baseline", "Teacher", "Student", "Evaluation", "Now", "ETA", "Model", "Epochs", "Created",
            "Open"]
    return pd.DataFrame(rows, columns=cols)


def model_name(method: str) -> str:
    """What a method's trained model is called on the pages: ``SIKD student``, ``GIN+SIKD student``, ``Baseline``."""
    label = method_label(method)
    return f"{label} student" if method == "sikd" or str(method).endswith("+sikd") else label


def headline_scores(summary: dict[str, Any] | None) -> dict[str, Any]:
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
    out["Headline model"] = model_name(main)
    out["Dice intra"], out["Dice cross"] = finite(dice[main].get("intra")), finite(dice[main].get("cross"))
    if main != "baseline" and "baseline" in methods:
        out["Δ intra"] = _diff(out["Dice intra"], finite(dice["baseline"].get("intra")))
        out["Δ cross"] = _diff(out["Dice cross"], finite(dice["baseline"].get("cross")))
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


# ------------------------------------------------------------------------------------------ scores
_METRICS = (("dice", "Dice", 3, True), ("iou", "IoU", 3, True), ("hd95", "HD95", 2, False))


def dataset_columns(summary: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(dataset, split)`` in the report's order: the intra test split first, then the cross datasets."""
    out: list[tuple[str, str]] = []
    for s in sorted(summary, key=lambda s: s["split"] != "intra"):
        if (s["dataset"], s["split"]) not in out:
            out.append((s["dataset"], s["split"]))
    return out


def _pick(s: dict[str, Any], class_name: str | None) -> dict[str, Any] | None:
    if class_name is None:
        return s
    return (s.get("per_class") or {}).get(class_name)


def result_methods(summary: Sequence[dict[str, Any]]) -> list[str]:
    """The methods of a report, the baseline first, then SIKD, then the others in their order of appearance."""
    seen = list(dict.fromkeys(s["method"] for s in summary))
    return [m for m in ("baseline", "sikd") if m in seen] + [m for m in seen if m not in ("baseline", "sikd")]


def method_pairs(summary: Sequence[dict[str, Any]],
                 comparisons: Sequence[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """The ``(method, reference)`` pairs to show differences for: those of the paired comparisons, else
    every method against the baseline (when there is one)."""
    methods = result_methods(summary)
    pairs = list(dict.fromkeys(comparison_pair(c) for c in comparisons or []))
    pairs = [(a, b) for a, b in pairs if a in methods and b in methods]
    if pairs or "baseline" not in methods:
        return pairs
    return [(m, "baseline") for m in methods if m != "baseline"]


def score_table(summary: Sequence[dict[str, Any]], *, class_name: str | None = None, unit: str = "px",
                dataset_units: dict[str, str] | None = None,
                comparisons: Sequence[dict[str, Any]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's table: one row per method, then one Δ row per compared pair (method − reference);
    columns (dataset (split), metric).

    Returns the text table (``mean ± std`` over seeds when there are several) and a frame of the same
    shape holding +1 where the method is better than its reference (Dice/IoU up, HD95 down) and -1 where
    it is worse, but only for a difference whose paired 95% CI (from ``comparisons``, mean over
    foreground classes) excludes 0; every other cell holds 0 (not coloured).
    """
    dataset_units = dataset_units or {}
    index = {(s["method"], s["dataset"], s["split"]): s for s in summary}
    methods = result_methods(summary)
    sets = dataset_columns(summary)
    cis = {(*comparison_pair(c), c["dataset"], c["split"]): c for c in comparisons or []}
    cols = []
    for ds, split in sets:
        for key, label, _, _ in _METRICS:
            cols.append((f"{ds} ({split})", f"{label} ({dataset_units.get(ds, unit)})" if key == "hd95" else label))
    columns = pd.MultiIndex.from_tuples(cols, names=["Dataset", "Metric"])
    text_rows, signs_rows, names = [], [], []
    for method in methods:
        row = []
        for ds, split in sets:
            s = index.get((method, ds, split))
            src = _pick(s, class_name) if s else None
            for key, _, digits, _ in _METRICS:
                if src is None:
                    row.append("–")
                    continue
                mean, std = src.get(f"{key}_mean"), src.get(f"{key}_std")
                cell = fmt(mean, digits)
                if s and s.get("n_seeds", 1) > 1 and finite(mean) is not None:
                    cell += f" ± {fmt(std, digits)}"
                row.append(cell)
        text_rows.append(row)
        signs_rows.append([0] * len(cols))
        names.append(method_label(method))
    for a_m, b_m in method_pairs(summary, comparisons):
        row, signs = [], []
        for ds, split in sets:
            a, b = index.get((a_m, ds, split)), index.get((b_m, ds, split))
            pa, pb = (_pick(a, class_name) if a else None), (_pick(b, class_name) if b else None)
            comp = cis.get((a_m, b_m, ds, split)) if class_name is None else None
            for key, _, digits, higher_better in _METRICS:
                d = None
                if pa and pb:
                    d = _diff(pa.get(f"{key}_mean"), pb.get(f"{key}_mean"))
                row.append(fmt(d, digits, sign=True))
                signs.append(ci_sign((comp or {}).get(key), higher_better) if d else 0)
        text_rows.append(row)
        signs_rows.append(signs)
        names.append(f"Δ {method_label(a_m)} − {method_label(b_m)}")
    text = pd.DataFrame(text_rows, index=pd.Index(names, name="Method"), columns=columns)
    signs = pd.DataFrame(signs_rows, index=text.index, columns=columns)
    return text, signs


def table_html(text: pd.DataFrame, signs: pd.DataFrame, *, css_class: str, index: bool = True) -> str:
    """An HTML table of ``text`` (a two-level column index becomes a grouped header, as in the paper), with
    cells green where ``signs`` is +1 (better) and red where it is -1 (worse)."""
    e = html.escape
    grouped = isinstance(text.columns, pd.MultiIndex)
    cell = "padding:0.3em 0.7em;border-bottom:1px solid rgba(128,128,128,0.3);white-space:nowrap"
    head = "font-weight:600;" + cell
    rows = []
    corner = f"<th style='{head};text-align:left' rowspan='{2 if grouped else 1}'>{e(str(text.index.name or ''))}</th>"
    if grouped:
        groups: list[tuple[str, int]] = []
        for top, _ in text.columns:
            if groups and groups[-1][0] == top:
                groups[-1] = (top, groups[-1][1] + 1)
            else:
                groups.append((top, 1))
        rows.append("<tr>" + (corner if index else "") + "".join(
            f"<th style='{head};text-align:center' colspan='{n}'>{e(str(top))}</th>" for top, n in groups) + "</tr>")
        rows.append("<tr>" + "".join(f"<th style='{head};text-align:right'>{e(str(sub))}</th>"
                                     for _, sub in text.columns) + "</tr>")
    else:
        rows.append("<tr>" + (corner if index else "") + "".join(
            f"<th style='{head};text-align:right'>{e(str(c))}</th>" for c in text.columns) + "</tr>")
    for r in range(len(text)):
        tds = []
        for c in range(text.shape[1]):
            sign = signs.iat[r, c]
            colour = f";color:{BETTER};font-weight:600" if sign > 0 else (f";color:{WORSE};font-weight:600"
                                                                           if sign < 0 else "")
            tds.append(f"<td style='{cell};text-align:right{colour}'>{e(str(text.iat[r, c]))}</td>")
        label = f"<th style='{head};text-align:left'>{e(str(text.index[r]))}</th>" if index else ""
        rows.append("<tr>" + label + "".join(tds) + "</tr>")
    return (f"<div style='overflow-x:auto'><table class='{e(css_class)}' style='border-collapse:collapse;"
            f"font-size:0.92em'>{''.join(rows)}</table></div>")


def comparisons_table(comparisons: Sequence[dict[str, Any]], unit: str = "px",
                      aliases: dict[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paired per-case comparison, one row per (method − reference, dataset): Δ with its 95% bootstrap
    CI, the Wilcoxon p (``<0.001`` as in the report; Holm-adjusted when the report has it) and the case
    counts. A Δ is coloured (+1 / -1 in the signs frame) only when its CI excludes 0."""
    aliases = aliases or {}
    holm = any("p_holm" in (c.get("dice") or {}) or "p_holm" in c for c in comparisons)
    cols = ["Comparison", "Dataset", "Split", "Cases", "ΔDice", "ΔDice 95% CI", "p (Dice)",
            "better / worse / ties", f"ΔHD95 ({unit})", "ΔHD95 95% CI", "p (HD95)"] + (["p Holm (Dice)"] if holm
                                                                                       else [])
    rows, signs = [], []
    for c in comparisons:
        d, h = c.get("dice") or {}, c.get("hd95") or {}
        a, b = comparison_pair(c)
        row = [f"{method_label(a)} − {method_label(b)}", aliases.get(c["dataset"], c["dataset"]), c["split"],
               c.get("n_cases"), fmt(d.get("mean_diff"), 3, True),
               f"[{fmt(d.get('ci_low'), 3, True)}, {fmt(d.get('ci_high'), 3, True)}]",
               fmt_p(d.get("p_value")), f"{d.get('better', 0)} / {d.get('worse', 0)} / {d.get('ties', 0)}",
               fmt(h.get("mean_diff"), 2, True),
               f"[{fmt(h.get('ci_low'), 2, True)}, {fmt(h.get('ci_high'), 2, True)}]", fmt_p(h.get("p_value"))]
        if holm:
            ph = d.get("p_holm", c.get("p_holm"))
            row.append(fmt_p(ph.get("dice") if isinstance(ph, dict) else ph))
        rows.append(row)
        sign = [0] * len(cols)
        sign[4] = ci_sign(d, higher_better=True)
        sign[8] = ci_sign(h, higher_better=False)
        signs.append(sign)
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(signs, columns=cols)


# ------------------------------------------------------------------------------------------ datasets
_NUMBERED = re.compile(r"^\D*?(\d+)\D*$")


def has_groups(stats: dict[str, Any]) -> bool:
    """Whether the dataset groups its cases (groups.csv, a datalist's groups, CVC-ClinicDB's videos): without
    groups every case is its own group, so the count of groups equals the count of cases."""
    groups, cases = int(stats.get("groups") or 0), int(stats.get("cases") or 0)
    return 0 < groups < cases


def frames_warning(dataset: dict[str, Any]) -> str | None:
    """A warning for a dataset that looks like video frames (keys numbered without gaps, one case per image)
    without groups: neighbouring frames are near-duplicates, so a split by image leaks between train and
    test and the intra scores come out too good."""
    stats = dataset.get("stats") or {}
    if has_groups(stats) or stats.get("volumetric") or dataset.get("synthetic"):
        return None
    n = int(dataset.get("num_pairs") or 0)
    if n < 20 or int(stats.get("cases") or n) < n:
        return None
    keys = [str(s.get("key", "")) for s in dataset.get("samples") or []]
    nums = [int(m.group(1)) for k in keys if (m := _NUMBERED.match(k))]
    if len(keys) < 2 or len(nums) < len(keys):
        return None
    if max(nums) - min(nums) > 2 * n:  # sparse numbering: probably ids, not frames
        return None
    return (f"**These may be video frames (near-duplicates) without groups:** the {n} images are numbered "
            f"{min(nums)}…{max(nums)} and each is its own case, so neighbouring frames can land in train and test "
            "and inflate the intra scores. Give each frame its video in a `groups.csv` (`name,group` rows) "
            "so splits keep a video together.")


# ------------------------------------------------------------------------------------------ per case
def cases_long(cases: Sequence[dict[str, Any]], class_names: Sequence[str] = ()) -> pd.DataFrame:
    """Per-case scores (``eval/cases.json`` records) in long form, one row per (dataset, split, case,
    method), averaged over seeds: Dice, IoU, HD95 and, per foreground class, ``Dice <class>`` and
    ``HD95 <class>`` (classes named after ``class_names[1:]``)."""
    fg = list(class_names[1:])
    rows = []
    for c in cases:
        row = {"Dataset": c["dataset"], "Split": c["split"], "Case": str(c["case"]),
               "Key": (c.get("keys") or [str(c["case"])])[0], "Method": c["method"], "Seed": c.get("seed"),
               "Dice": finite(c.get("dice")), "IoU": finite(c.get("iou")), "HD95": finite(c.get("hd95"))}
        per = c.get("per_class") or {}
        for m, label in (("dice", "Dice"), ("hd95", "HD95")):
            for k, v in enumerate(per.get(m) or []):
                row[f"{label} {fg[k] if k < len(fg) else f'class {k + 1}'}"] = finite(v)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["Dataset", "Split", "Case", "Key", "Method", "Dice", "IoU", "HD95"])
    df = pd.DataFrame(rows)
    values = [c for c in df.columns if c not in ("Dataset", "Split", "Case", "Key", "Method", "Seed")]
    out = df.groupby(["Dataset", "Split", "Case", "Method"], sort=False, as_index=False).agg(
        {"Key": "first", **{v: "mean" for v in values}})
    return out[["Dataset", "Split", "Case", "Key", "Method", *values]]


def cases_wide(long: pd.DataFrame, pairs: Sequence[tuple[str, str]] = ()) -> pd.DataFrame:
    """One row per (dataset, split, case): every score column per method (``Dice · SIKD``), then for every
    ``(method, reference)`` pair the differences ``ΔDice SIKD − Baseline`` and ``ΔHD95 ...`` (numbers,
    so the table sorts and filters on them)."""
    if long.empty:
        return pd.DataFrame(columns=["Dataset", "Split", "Case", "Key"])
    keys = ["Dataset", "Split", "Case"]
    values = [c for c in long.columns if c not in (*keys, "Key", "Method")]
    methods = list(dict.fromkeys(long["Method"]))
    wide = long.pivot_table(index=keys, columns="Method", values=values, aggfunc="mean", dropna=False, sort=False)
    out = long.drop_duplicates(keys)[[*keys, "Key"]].set_index(keys)
    for v in values:
        for m in methods:
            if (v, m) in wide.columns:
                out[f"{v} · {method_label(m)}"] = wide[(v, m)]
    for a, b in pairs:
        for v in ("Dice", "HD95"):
            if (v, a) in wide.columns and (v, b) in wide.columns:
                out[f"Δ{v} {method_label(a)} − {method_label(b)}"] = wide[(v, a)] - wide[(v, b)]
    return out.reset_index()


def generalisation_frame(summary: Sequence[dict[str, Any]], metric: str = "dice") -> pd.DataFrame:
    """Per method: the intra (test split) score, the mean over the cross datasets, and the generalisation
    gap intra − cross (for Dice a positive gap is what is lost on unseen data)."""
    rows = []
    for m in result_methods(summary):
        mine = [s for s in summary if s["method"] == m]
        intra = [finite(s.get(f"{metric}_mean")) for s in mine if s["split"] == "intra"]
        cross = [finite(s.get(f"{metric}_mean")) for s in mine if s["split"] != "intra"]
        intra_v = [v for v in intra if v is not None]
        cross_v = [v for v in cross if v is not None]
        i = sum(intra_v) / len(intra_v) if intra_v else None
        c = sum(cross_v) / len(cross_v) if cross_v else None
        rows.append({"Method": method_label(m), "Intra": i, "Cross (mean)": c,
                     "Gap": i - c if i is not None and c is not None else None})
    return pd.DataFrame(rows, columns=["Method", "Intra", "Cross (mean)", "Gap"])


def dataset_aliases(names: Sequence[str], width: int = 18) -> dict[str, str]:
    """Short, unique labels for long dataset names (``kvasir-seg``, ``cvc-clinicdb``...) so tables fit:
    names up to ``width`` characters stay, longer ones are cut with an ellipsis (numbered if two collide)."""
    out: dict[str, str] = {}
    for n in dict.fromkeys(names):
        a = n if len(n) <= width else n[: width - 1] + "…"
        base, k = a, 2
        while a in out.values():
            a, k = f"{base}{k}", k + 1
        out[n] = a
    return out


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "−": "$-$", "–": "--", "<": r"\textless{}",
                  "α": r"$\alpha$", "·": r"$\cdot$", "…": r"\ldots{}"}


def _latex_escape(v: Any) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(v))


def table_latex(df: pd.DataFrame, *, index: bool = True, caption: str | None = None) -> str:
    """A booktabs LaTeX table of a (text or number) frame, for papers; a two-level column index becomes
    a multicolumn header. Needs ``\\usepackage{booktabs}``."""
    grouped = isinstance(df.columns, pd.MultiIndex)
    n_idx = 1 if index else 0
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{_latex_escape(caption)}}}")
    lines += [r"\begin{tabular}{" + "l" * n_idx + "r" * df.shape[1] + "}", r"\toprule"]
    if grouped:
        groups: list[tuple[str, int]] = []
        for top, _ in df.columns:
            if groups and groups[-1][0] == top:
                groups[-1] = (top, groups[-1][1] + 1)
            else:
                groups.append((top, 1))
        lines.append(" & ".join([""] * n_idx + [rf"\multicolumn{{{n}}}{{c}}{{{_latex_escape(t)}}}"
                                                for t, n in groups]) + r" \\")
        subs = [str(sub) for _, sub in df.columns]
    else:
        subs = [str(c) for c in df.columns]
    lines.append(" & ".join(([_latex_escape(df.index.name or "")] if index else []) + [_latex_escape(c) for c in subs])
                 + r" \\")
    lines.append(r"\midrule")
    for r in range(len(df)):
        cells = [_latex_escape(df.index[r])] if index else []
        cells += [_latex_escape(fmt(v) if isinstance(v, float) else v) for v in df.iloc[r].tolist()]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ compare
def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def spec_differences(specs: Sequence[dict[str, Any]], ignore: Iterable[str] = ("name",)) -> list[str]:
    """Keys whose values differ between the specs (a key missing from one spec counts as differing)."""
    if len(specs) < 2:
        return []
    skip = set(ignore)
    keys: list[str] = []
    for s in specs:
        keys += [k for k in s if k not in keys and k not in skip]
    return [k for k in keys if len({_canon(s.get(k)) for s in specs}) > 1]


def setting_value(spec: dict[str, Any], key: str) -> Any:
    """A spec value as a plot coordinate: numbers stay numbers, anything else becomes text."""
    v = spec.get(key)
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, float)):
        return v
    return v if isinstance(v, str) else _canon(v)


def readable_spec(spec: dict[str, Any], dataset_names: dict[str, str]) -> dict[str, Any]:
    """A spec for people: dataset ids become their names, lists become ``a, b``, dicts ``k=v``."""
    def name(d: Any) -> str:
        return dataset_names.get(str(d), f"#{d}")

    out: dict[str, Any] = {}
    for k, v in spec.items():
        if k == "train_dataset":
            v = " + ".join(name(d) for d in train_ids(spec))
        elif k == "eval_datasets":
            v = ", ".join(name(d) for d in v or []) or "none"
        elif isinstance(v, list):
            v = ", ".join(str(x) for x in v)
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items()) or "–"
        out[k] = v
    return out


def intra_cross_frame(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per experiment and method: ``metric`` on the intra test split and averaged over the cross datasets
    (with the mean of the seed std as the error bar), for grouped bars."""
    if long.empty:
        return pd.DataFrame(columns=["Experiment", "Method", "Split", metric, f"{metric} std", "Datasets"])
    df = long.assign(Split=long["Split"].where(long["Split"] == "intra", "cross (mean)"))
    out = df.groupby(["Experiment", "ID", "Method", "Split"], sort=False, as_index=False).agg(
        **{metric: (metric, "mean"), f"{metric} std": (f"{metric} std", "mean"),
           "Datasets": ("Dataset", lambda d: ", ".join(dict.fromkeys(d)))})
    return out.sort_values(["ID", "Method", "Split"], key=lambda c: c != "intra" if c.name == "Split" else c,
                           kind="stable").drop(columns="ID").reset_index(drop=True)


def compare_frame(results: dict[int, dict[str, Any]], experiments: dict[int, dict[str, Any]],
                  class_name: str | None = None) -> pd.DataFrame:
    """Long form: one row per (experiment, dataset, split, method) with Dice/IoU/HD95 mean and std."""
    rows = []
    for exp_id, res in results.items():
        exp = experiments[exp_id]
        for s in res.get("summary", []):
            src = _pick(s, class_name)
            if src is None:
                continue
            row = {"Experiment": f"#{exp_id} {exp['name']}", "ID": exp_id, "Dataset": s["dataset"],
                   "Split": s["split"], "Method": method_label(s["method"]),
                   "Seeds": s.get("n_seeds", 1)}
            for key, label, _, _ in _METRICS:
                row[label] = finite(src.get(f"{key}_mean"))
                row[f"{label} std"] = finite(src.get(f"{key}_std"))
            rows.append(row)
    return pd.DataFrame(rows, columns=["Experiment", "ID", "Dataset", "Split", "Method", "Seeds", "Dice",
                                       "Dice std", "IoU", "IoU std", "HD95", "HD95 std"])


def compare_table(long: pd.DataFrame, metric: str, varying: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """Experiments as rows (with the settings that differ), then per ``dataset (split)`` the baseline, SIKD
    and their difference Δ (SIKD − baseline) of ``metric``, formatted."""
    if long.empty:
        return pd.DataFrame()
    long = long.assign(Set=long["Dataset"] + " (" + long["Split"] + ")")
    sets = list(dict.fromkeys(long.sort_values("Split", key=lambda c: c != "intra", kind="stable")["Set"]))
    digits = 2 if metric == "HD95" else 3
    ids = list(dict.fromkeys(long["ID"]))
    cols: dict[str, list[str]] = {}
    for name in sets:
        part = long[long["Set"] == name]
        values = {m: part[part["Method"] == m].set_index("ID")[metric] for m in part["Method"].unique()}
        for m, v in values.items():
            cols[f"{name} · {m}"] = [fmt(v.get(i), digits) for i in ids]
        if {"Baseline", "SIKD"} <= set(values):
            cols[f"{name} · Δ"] = [fmt(_diff(values["SIKD"].get(i), values["Baseline"].get(i)), digits, sign=True)
                                   for i in ids]
    names = long.drop_duplicates("ID").set_index("ID")["Experiment"]
    out = pd.DataFrame({"Experiment": [names[i] for i in ids],
                        **{k: [_show(varying.get(i, {}).get(k)) for i in ids]
                           for k in dict.fromkeys(k for v in varying.values() for k in v)},
                        **cols}, index=pd.Index(ids, name="ID"))
    return out


def _diff(a: Any, b: Any) -> float | None:
    x, y = finite(a), finite(b)
    return x - y if x is not None and y is not None else None


def _show(v: Any) -> str:
    return v if isinstance(v, str) else _canon(v)


# ------------------------------------------------------------------------------------------ spec errors
_LINE = re.compile(r"^\s*([A-Za-z_][\w]*(?:\.[\w]+)*|\(spec\)):\s*(.+)$")


def spec_errors(detail: Any) -> tuple[dict[str, list[str]], list[str]]:
    """The API's 422 for a spec, as ``({field: [messages]}, [messages not about one field])``.

    The API words spec errors as ``invalid experiment spec:`` followed by ``  <field>: <message>`` lines
    (sikd_core's ``format_validation_error``); FastAPI's own validation errors are lists of
    ``{loc, msg}``; anything else (unknown dataset ids, class mismatch) is one general message.
    """
    fields: dict[str, list[str]] = {}
    general: list[str] = []

    def add(loc: str, msg: str) -> None:
        msg = re.sub(r"^(Value|Assertion) error, ", "", msg.strip())
        key = loc.split(".")[0]
        if key in ("(spec)", "", "body"):
            general.append(msg)
        else:
            fields.setdefault(key, []).append(msg)

    if isinstance(detail, list):
        for e in detail:
            if isinstance(e, dict):
                loc = [str(p) for p in e.get("loc", []) if p != "body"]
                add(".".join(loc), str(e.get("msg", "")))
            else:
                general.append(str(e))
        return fields, general
    text = str(detail or "")
    lines = text.splitlines()
    if lines and lines[0].strip().startswith("invalid experiment spec"):
        for line in lines[1:]:
            m = _LINE.match(line)
            if m:
                add(m.group(1), m.group(2))
            elif line.strip():
                general.append(line.strip())
        return fields, general
    general.append(text)
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
