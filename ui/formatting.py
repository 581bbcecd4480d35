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

STAGE_KINDS = ("baseline", "teacher", "student", "evaluation")
ACTIVE = ("queued", "running")
METHOD_LABELS = {"baseline": "Baseline", "sikd": "SIKD"}
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:",
                "succeeded": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:",
                "pending": ":material/more_horiz:"}
#: Contour colours of the overlays (the API draws them with sikd_core.viz.CONTOUR_COLORS).
CONTOUR_COLORS = {"ground truth": "#00e600", "baseline": "#ff3c3c", "SIKD": "#288cff"}
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


def experiment_eta(exp: dict[str, Any]) -> float | None:
    """Seconds until the experiment is done: the running stages' ETAs plus the stages still waiting,
    at the running stages' seconds per epoch. None when unknown (nothing has run long enough)."""
    if exp["status"] not in ACTIVE:
        return None
    stages = exp["stages"]
    running = [s for s in stages if s["status"] == "running"]
    waiting = [s for s in stages if s["status"] in ("pending", "queued") and s["kind"] != "evaluation"]
    if not running and not waiting:
        return None
    eta, rates = 0.0, []
    for s in running:
        e = finite(s.get("eta_seconds"))
        if e is None:  # just started: no estimate yet
            return None
        eta += e
        left = (s.get("epochs") or 0) - (s.get("epoch") or 0)
        if s["kind"] != "evaluation" and left > 0:
            rates.append(e / left)
    if waiting:
        if not rates:
            return None
        eta += sum(rates) / len(rates) * sum(max(s.get("epochs") or 0, 1) for s in waiting)
    return eta


def current_activity(exp: dict[str, Any]) -> str:
    """What the experiment is doing now, in a few words."""
    running = [s for s in exp["stages"] if s["status"] == "running"]
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


def experiments_frame(exps: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per experiment for the list (no per-experiment requests: stages come with the list);
    progress in percent, overall and per stage kind (None: the experiment has no such stage)."""
    rows = []
    for e in exps:
        prog = kind_progress(e["stages"])
        spec = e.get("spec") or {}
        created = parse_time(e.get("created_at"))
        rows.append({
            "ID": e["id"], "Name": e["name"],
            "Status": e["status"],
            "Progress": 100 * (e.get("progress") or 0.0),
            **{k.capitalize(): None if prog[k] is None else 100 * prog[k] for k in STAGE_KINDS},
            "Now": current_activity(e), "ETA": fmt_seconds(experiment_eta(e)) if e["status"] in ACTIVE else "",
            "Model": spec.get("model", ""), "Epochs": spec.get("epochs"),
            "Created": created.strftime("%Y-%m-%d %H:%M") if created else "",
        })
    cols = ["ID", "Name", "Status", "Progress", "Baseline", "Teacher", "Student", "Evaluation", "Now", "ETA",
            "Model", "Epochs", "Created"]
    return pd.DataFrame(rows, columns=cols)


def stages_frame(stages: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for s in stages:
        start, end = parse_time(s.get("started_at")), parse_time(s.get("finished_at"))
        took = (end - start).total_seconds() if start and end else None
        trains = s["kind"] != "evaluation"  # epochs, loss and Dice belong to training stages
        rows.append({
            "Stage": stage_label(s), "Status": s["status"],
            "Progress": 100.0 if s["status"] == "succeeded" else 100 * (s.get("progress") or 0.0),
            "Epoch": f"{s.get('epoch') or 0}/{s.get('epochs')}" if trains else "",
            "Loss": fmt(s.get("loss"), 4) if trains else "",
            "Val Dice": fmt(s.get("val_dice")) if trains else "",
            "Best val Dice": fmt(s.get("best_val_dice")) if trains else "",
            "ETA": fmt_seconds(s.get("eta_seconds")) if s["status"] == "running" else "",
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


def score_table(summary: Sequence[dict[str, Any]], *, class_name: str | None = None, unit: str = "px",
                dataset_units: dict[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's table: rows Baseline / SIKD / Δ, columns (dataset (split), metric).

    Returns the text table (``mean ± std`` over seeds when there are several) and a frame of the same
    shape holding +1 where SIKD is better than the baseline (Dice/IoU up, HD95 down), -1 where it is
    worse and 0 elsewhere (for colouring the Δ row).
    """
    dataset_units = dataset_units or {}
    index = {(s["method"], s["dataset"], s["split"]): s for s in summary}
    methods = [m for m in ("baseline", "sikd") if any(s["method"] == m for s in summary)]
    methods += sorted({s["method"] for s in summary} - set(methods))
    cols = []
    for ds, split in dataset_columns(summary):
        for key, label, _, _ in _METRICS:
            cols.append((f"{ds} ({split})", f"{label} ({dataset_units.get(ds, unit)})" if key == "hd95" else label))
    columns = pd.MultiIndex.from_tuples(cols, names=["Dataset", "Metric"])
    text_rows, signs_rows, names = [], [], []
    for method in methods:
        row = []
        for ds, split in dataset_columns(summary):
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
        names.append(METHOD_LABELS.get(method, method))
    if {"baseline", "sikd"} <= set(methods):
        row, signs = [], []
        for ds, split in dataset_columns(summary):
            a, b = index.get(("sikd", ds, split)), index.get(("baseline", ds, split))
            pa, pb = (_pick(a, class_name) if a else None), (_pick(b, class_name) if b else None)
            for key, _, digits, higher_better in _METRICS:
                d = None
                if pa and pb:
                    x, y = finite(pa.get(f"{key}_mean")), finite(pb.get(f"{key}_mean"))
                    d = x - y if x is not None and y is not None else None
                row.append(fmt(d, digits, sign=True))
                signs.append(0 if d is None or d == 0 else (1 if (d > 0) == higher_better else -1))
        text_rows.append(row)
        signs_rows.append(signs)
        names.append("Δ SIKD − baseline")
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


def comparisons_table(comparisons: Sequence[dict[str, Any]], unit: str = "px") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paired per-case comparison: Δ with its 95% bootstrap CI and the Wilcoxon p, per dataset."""
    cols = ["Dataset", "Split", "Cases", "ΔDice", "ΔDice 95% CI", "p (Dice)", "better / worse / ties",
            f"ΔHD95 ({unit})", "ΔHD95 95% CI", "p (HD95)"]
    rows, signs = [], []
    for c in comparisons:
        d, h = c.get("dice") or {}, c.get("hd95") or {}
        rows.append([c["dataset"], c["split"], c.get("n_cases"), fmt(d.get("mean_diff"), 3, True),
                     f"[{fmt(d.get('ci_low'), 3, True)}, {fmt(d.get('ci_high'), 3, True)}]",
                     fmt(d.get("p_value"), 3), f"{d.get('better', 0)} / {d.get('worse', 0)} / {d.get('ties', 0)}",
                     fmt(h.get("mean_diff"), 2, True),
                     f"[{fmt(h.get('ci_low'), 2, True)}, {fmt(h.get('ci_high'), 2, True)}]", fmt(h.get("p_value"), 3)])
        dd, hh = finite(d.get("mean_diff")), finite(h.get("mean_diff"))
        sign = [0] * len(cols)
        sign[3] = 0 if not dd else (1 if dd > 0 else -1)
        sign[7] = 0 if not hh else (1 if hh < 0 else -1)
        signs.append(sign)
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(signs, columns=cols)


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
                   "Split": s["split"], "Method": METHOD_LABELS.get(s["method"], s["method"]),
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
