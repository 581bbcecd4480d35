"""Shaping an experiment's results: the paper-style score table with its Δ rows, the paired comparisons, per-case
scores (long and wide), generalisation gaps, and the tables as HTML and LaTeX. Pure functions on the API's JSON
(the results' ``summary`` and ``comparisons`` written by the pipeline's report)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ui.formatting import BETTER, WORSE, ci_sign, comparison_pair, diff, finite, fmt, fmt_p, method_label

METRICS = (("dice", "Dice", 3, True), ("iou", "IoU", 3, True), ("hd95", "HD95", 2, False))


def dataset_columns(summary: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(dataset, split)`` in the report's order: the intra test split first, then the cross datasets."""
    out: list[tuple[str, str]] = []
    for s in sorted(summary, key=lambda s: s["split"] != "intra"):
        if (s["dataset"], s["split"]) not in out:
            out.append((s["dataset"], s["split"]))
    return out


def pick_class(s: dict[str, Any], class_name: str | None) -> dict[str, Any] | None:
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
        for key, label, _, _ in METRICS:
            cols.append((f"{ds} ({split})", f"{label} ({dataset_units.get(ds, unit)})" if key == "hd95" else label))
    columns = pd.MultiIndex.from_tuples(cols, names=["Dataset", "Metric"])
    text_rows, signs_rows, names = [], [], []
    for method in methods:
        row = []
        for ds, split in sets:
            s = index.get((method, ds, split))
            src = pick_class(s, class_name) if s else None
            for key, _, digits, _ in METRICS:
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
            pa, pb = (pick_class(a, class_name) if a else None), (pick_class(b, class_name) if b else None)
            comp = cis.get((a_m, b_m, ds, split)) if class_name is None else None
            for key, _, digits, higher_better in METRICS:
                d = None
                if pa and pb:
                    d = diff(pa.get(f"{key}_mean"), pb.get(f"{key}_mean"))
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
