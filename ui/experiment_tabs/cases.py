"""The Cases tab: every evaluated case with per-class scores of every method; a chosen case's image."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from ui.client import ApiError
from ui.experiment_tabs.view import ExperimentView
from ui.formatting import fmt, method_label
from ui.scores_data import cases_long, cases_wide, method_pairs
from ui.widgets import class_legend, picture, show_error, table_downloads


def load_cases(view: ExperimentView, results: dict) -> pd.DataFrame:
    """Per-case scores of every method (mean over seeds), or an empty frame (with the reason shown)."""
    try:
        raw = view.api.get_all(f"/experiments/{view.id}/cases", cache="settled")
    except ApiError as e:
        show_error(e, "loading the per-case scores")
        return pd.DataFrame()
    return cases_long(raw, results.get("class_names") or [])


def cases_tab(page: ExperimentView, results: dict, long: pd.DataFrame) -> None:
    """The drill-down: every evaluated case with per-class scores of every method and the differences;
    choosing a row shows that image at full resolution with the ground truth and the predictions."""
    if long.empty:
        st.info("No per-case scores.")
        return
    pairs = method_pairs(results.get("summary") or [], results.get("comparisons") or [])
    wide = cases_wide(long, pairs)
    methods = list(dict.fromkeys(long["Method"]))
    c = st.columns([2, 2, 2])
    sets = ["all datasets", *dict.fromkeys(wide["Dataset"] + " (" + wide["Split"] + ")")]
    which = c[0].selectbox("Dataset", sets, key="cases_dataset")
    text = c[1].text_input("Image name contains", key="cases_filter", placeholder="e.g. case_01")
    per_class = c[2].toggle("Per-class columns", value=False, key="cases_per_class",
                            help="Dice and HD95 of every foreground class, for every method.")
    view = wide
    if which != "all datasets":
        view = view[(view["Dataset"] + " (" + view["Split"] + ")") == which]
    if text:
        view = view[view["Key"].str.contains(text, case=False, regex=False)]
    main = [col for col in view.columns if col in ("Dataset", "Split", "Key") or col.startswith(("Dice · ", "HD95 · ", "ΔDice", "ΔHD95"))]
    if per_class:
        main += [col for col in view.columns if col not in main and col not in ("Case",)
                 and col.startswith(("Dice ", "HD95 ")) and " · " in col]
    view = view[main].reset_index(drop=True)
    st.caption(f"{len(view)} of {len(wide)} evaluated cases · click a column header to sort, a row to see its image "
               "· Δ = method − reference (per case, mean over seeds).")
    fmt_cols = {col: st.column_config.NumberColumn(format="%+.3f" if col.startswith("Δ") else "%.3f")
                for col in view.columns if col not in ("Dataset", "Split", "Key")}
    event = st.dataframe(view, hide_index=True, width="stretch", height=320, column_config=fmt_cols,
                         on_select="rerun", selection_mode="single-row", key="cases_table")
    table_downloads(view, f"experiment-{page.id}-cases", caption="Per-case scores", key="cases", index=False,
                    latex=False)
    labels = [f"{r.Dataset} · {r.Key}" for r in view.itertuples()]
    if not labels:
        return
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows and rows != st.session_state.get("cases_table_seen"):  # a click on the table chooses the case
        st.session_state["cases_table_seen"] = rows
        st.session_state["case_pick"] = labels[rows[0]]
    if st.session_state.get("case_pick") not in labels:
        st.session_state["case_pick"] = labels[0]
    pick = st.selectbox("Case", labels, key="case_pick")
    row = view.iloc[labels.index(pick)]
    opts = st.columns([3, 3])
    shown = opts[0].multiselect("Predictions", methods, default=methods[:4], key="case_methods",
                                format_func=method_label)
    mode = opts[1].radio("Show", ["contours", "fill", "errors"], horizontal=True, key="case_mode",
                         format_func={"contours": "per-class contours", "fill": "per-class fill",
                                      "errors": "error map (FP red, FN blue)"}.get)
    scores = " · ".join(f"{method_label(m)} Dice {fmt(row.get(f'Dice · {method_label(m)}'))}" for m in shown)
    url = f"/experiments/{page.id}/cases/view.png?" + urlencode(
        {"dataset": row["Dataset"], "key": row["Key"], "methods": shown, "mode": mode}, doseq=True)
    st.markdown(f"**{row['Key']}** · {row['Dataset']} ({row['Split']}) · {scores}")
    if mode == "errors":
        st.caption("Panels: image, then the error map of each prediction against the ground truth: red = false "
                   "positive, blue = false negative, green = correct foreground.")
    else:
        st.caption("Panels, left to right: ground truth, " + ", ".join(method_label(m) for m in shown)
                   + " (first seed). Full resolution: use the picture's fullscreen button to zoom.")
        class_legend(results.get("class_names") or [])
    picture(page.api, url)
