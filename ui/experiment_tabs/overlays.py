"""The Overlays tab: every evaluated case with two methods' outlines, ordered by where they differ most."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from ui.experiment_tabs.view import ExperimentView
from ui.formatting import fmt, method_label
from ui.widgets import contour_legend, picture

OVERLAYS_PER_PAGE = 9


def overlay_order(long: pd.DataFrame, first: str, second: str | None, order: str) -> pd.DataFrame:
    """One row per evaluated case with the Dice of the two contoured methods (``A``, ``B``; mean over seeds),
    ordered: ``a_gain`` (largest A − B first), ``b_gain`` (largest B − A first) or ``worst`` (lowest Dice of
    B, else of A, first). Cases without a score go last."""
    keys = ["Dataset", "Split", "Case", "Key"]
    pick = [m for m in (first, second) if m]
    wide = long[long["Method"].isin(pick)].groupby([*keys, "Method"], sort=False)["Dice"].mean().unstack("Method")
    out = pd.DataFrame({"A": wide.get(first), "B": wide.get(second) if second else float("nan")}, index=wide.index)
    if second and order == "a_gain":
        rank = out["A"] - out["B"]
    elif second and order == "b_gain":
        rank = out["B"] - out["A"]
    else:
        rank = -(out["B"] if second else out["A"])
    return out.assign(_rank=rank.values).sort_values("_rank", ascending=False, na_position="last",
                                                     kind="stable").drop(columns="_rank").reset_index()


def overlays_tab(view: ExperimentView, results: dict, long: pd.DataFrame) -> None:
    """Every evaluated case with the outlines of the ground truth and of two chosen methods in one picture
    (rendered on request from the saved predictions), ordered by where the two differ most."""
    if long.empty:
        st.info("No per-case scores, so no overlays.")
        return
    present = list(dict.fromkeys(long["Method"]))
    methods = [m for m in results.get("methods") or [] if m in present] + [
        m for m in present if m not in (results.get("methods") or [])]
    c = st.columns([2, 2, 2, 3])
    first = c[0].selectbox("Contour in red", methods, key="ov_first", format_func=method_label,
                           index=methods.index("baseline") if "baseline" in methods else 0)
    rest = [m for m in methods if m != first]
    second = (c[1].selectbox("against, in blue", rest, key="ov_second", format_func=method_label,
                             index=rest.index("sikd") if "sikd" in rest else 0) if rest else None)
    labels = long["Dataset"] + " (" + long["Split"] + ")"
    ds_choice = c[2].selectbox("Dataset", ["all datasets", *dict.fromkeys(labels)], key="ov_dataset")
    a, b = method_label(first), method_label(second) if second else ""
    orders = {"b_gain": f"Largest {b} gain", "a_gain": f"Largest {a} gain",
              "worst": f"Worst cases (lowest {b or a} Dice)"} if second else {"worst": f"Worst cases (lowest {a} Dice)"}
    order = c[3].radio("Order", list(orders), horizontal=True, key="ov_sort", format_func=orders.get)
    if view.spec.get("save_predictions") is False:
        st.info("No overlays: the experiment kept no predictions (spec `save_predictions` is false).")
        return
    items = overlay_order(long if ds_choice == "all datasets" else long[labels == ds_choice], first, second,
                          order or "worst")
    st.caption(f"{len(items)} evaluated case(s), ordered by {orders.get(order or 'worst', '').lower()}; Dice mean "
               "over seeds, pictures of the first seed's predictions (full resolution: use the picture's "
               "fullscreen button). Per-class colours and error maps are on the **Cases** tab.")
    contour_legend(a, b or None)
    pages = (len(items) + OVERLAYS_PER_PAGE - 1) // OVERLAYS_PER_PAGE
    page = (st.columns(4)[0].number_input(f"Page (of {pages}; {len(items)} cases)", 1, pages, 1, key="ov_page")
            if pages > 1 else 1)
    cols = st.columns(3)
    for i, r in enumerate(items.iloc[(page - 1) * OVERLAYS_PER_PAGE: page * OVERLAYS_PER_PAGE].itertuples()):
        url = f"/experiments/{view.id}/cases/view.png?" + urlencode(
            {"dataset": r.Dataset, "key": r.Key, "methods": [m for m in (first, second) if m], "mode": "overlay"},
            doseq=True)
        dice = f"{a} {fmt(r.A)}" + (f" / {b} {fmt(r.B)} · Δ {fmt(_minus(r.B, r.A), 3, True)}" if second else "")
        with cols[i % 3]:
            picture(view.api, url, caption=f"{r.Key} · {r.Dataset} ({r.Split}) · Dice {dice}")


def _minus(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None or x != x or y != y else x - y
