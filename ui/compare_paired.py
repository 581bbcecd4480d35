"""The Compare page's paired test between two experiments: a model of experiment A against a model of experiment
B on the images both scored (``GET /experiments/{a}/compare/{b}``: the report's paired machinery, per case),
with both models' health."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.client import ApiError, Client
from ui.experiments_data import model_name
from ui.health import code_label
from ui.scores_data import comparisons_table, result_methods, table_html
from ui.widgets import show_error, table_downloads


def headline_method(methods: list[str]) -> str:
    """SIKD's student if trained, else the first method other than the baseline, else the baseline (as the API's
    default model of an experiment)."""
    return "sikd" if "sikd" in methods else next((m for m in methods if m != "baseline"), methods[0])


Plans = dict[int, list[dict[str, Any]]]


def side_label(side: dict[str, Any], plans: Plans) -> str:
    """``#<id> <model>``, the model named from its experiment's stage plan (``plans``: by experiment id)."""
    return f"#{side['experiment_id']} {model_name(side['method'], plans.get(side['experiment_id']) or ())}"


def shown_comparisons(out: dict[str, Any], plans: Plans) -> list[dict[str, Any]]:
    """The API's comparisons with each side named ``#<id> <model>`` (as the table and the caption say it)."""
    a, b = side_label(out["a"], plans), side_label(out["b"], plans)
    return [{**c, "method": a, "reference": b} for c in out["comparisons"]]


def health_lines(out: dict[str, Any], plans: Plans) -> list[tuple[bool, str]]:
    """Per side: (healthy, a sentence about the compared model and its experiment)."""
    lines = []
    for side in (out["a"], out["b"]):
        where = f"**{side_label(side, plans)}** (experiment #{side['experiment_id']} {side['experiment_name']}"
        exp_state = "healthy" if side["experiment_health"] == "healthy" else "⚠ unhealthy"
        if side["model_health"] == "healthy":
            lines.append((True, f"{where}, {exp_state}): healthy"))
        else:
            codes = ", ".join(dict.fromkeys(code_label(f.get("code")) for f in side["findings"]))
            lines.append((False, f"{where}, {exp_state}): unhealthy ({codes}): its scores, and this comparison, do "
                                 "not measure what they seem to"))
    return lines


def paired_section(api: Client, by_id: dict[int, dict[str, Any]], chosen: list[int],
                   results: dict[int, dict[str, Any]]) -> None:
    st.subheader("Paired test between two experiments")
    st.caption("A model of experiment A against a model of experiment B on the images both scored (same dataset, "
               "same case), paired per case after averaging each model over its seeds: the same bootstrap CI, "
               "Wilcoxon test and Holm adjustment as the comparisons within an experiment.")
    ids = [i for i in chosen if i in results]
    methods = {i: result_methods(results[i].get("summary") or []) for i in ids}
    plans: Plans = {i: by_id[i].get("plan") or [] for i in ids}
    ids = [i for i in ids if methods[i]]
    if len(ids) < 2:
        st.info("Two of the chosen experiments need scores for a paired test.")
        return
    c = st.columns(4)
    a = c[0].selectbox("Experiment A", ids, index=0, key="cmp_pair_a",
                       format_func=lambda i: f"#{i} {by_id[i]['name']}")
    ma = c[1].selectbox("Model of A", methods[a], index=methods[a].index(headline_method(methods[a])),
                        key=f"cmp_pair_ma_{a}", format_func=lambda m: model_name(m, plans[a]))
    b = c[2].selectbox("Experiment B", ids, index=1, key="cmp_pair_b",
                       format_func=lambda i: f"#{i} {by_id[i]['name']}")
    default_b = ma if ma in methods[b] and b != a else headline_method(methods[b])
    if b == a and default_b == ma:
        default_b = next((m for m in methods[b] if m != ma), ma)
    mb = c[3].selectbox("Model of B", methods[b], index=methods[b].index(default_b), key=f"cmp_pair_mb_{b}",
                        format_func=lambda m: model_name(m, plans[b]))
    if a == b and ma == mb:
        st.info("That is one model compared with itself: choose another model or another experiment.")
        return
    try:
        out = api.get(f"/experiments/{a}/compare/{b}", {"method": ma, "other_method": mb}, cache="settled")
    except ApiError as e:
        show_error(e, f"testing #{a} against #{b}")
        return
    for healthy, text in health_lines(out, plans):
        (st.success if healthy else st.warning)(text, icon=":material/health_and_safety:")
    if not out["comparisons"]:
        st.info(f"#{a} and #{b} scored no image in common (no shared dataset, or no common case): nothing to pair.")
        return
    units = set(out.get("units", {}).values()) or {"px"}
    text, signs = comparisons_table(shown_comparisons(out, plans), unit=units.pop() if len(units) == 1 else "px or mm")
    st.markdown(table_html(text, signs, css_class="sikd-between", index=False), unsafe_allow_html=True)
    table_downloads(text, f"compare-{a}-{b}-paired", caption=f"{side_label(out['a'], plans)} − {side_label(out['b'], plans)}",
                    key="cmp_pair_table", index=False)
    st.caption(f"{side_label(out['a'], plans)} − {side_label(out['b'], plans)} on {out['shared_cases']} shared case(s)"
               + (f" ({out['only_a']} scored by A alone, {out['only_b']} by B alone, left out)"
                  if out["only_a"] or out["only_b"] else "")
               + f"; seeds averaged: A {out['seeds_a']}, B {out['seeds_b']}. Split 'intra vs cross': the dataset "
               "is A's test split and unseen by B (or the other way round). A Δ is coloured only where its 95% CI "
               "excludes 0; p Holm: adjusted across the shared datasets.")
