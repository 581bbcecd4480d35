"""Compare: several experiments' intra and cross-dataset scores side by side, plotted against the setting
that differs between them (an alpha sweep, a teacher-input ablation, ...)."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from ui.client import ApiError, Client
from ui.compare_data import (
    compare_frame,
    compare_table,
    intra_cross_frame,
    readable_spec,
    setting_value,
    spec_differences,
)
from ui.compare_paired import paired_section
from ui.figures import method_colours
from ui.formatting import method_label, train_ids
from ui.health import (
    WITH_WARNINGS,
    code_label,
    experiment_health_summary,
    is_unhealthy,
    model_label,
    unhealthy_models,
)
from ui.strength import strength_frame
from ui.widgets import fail, figure_downloads, show_error, table_downloads

api = Client()
st.title("Compare experiments")
MAX_DEFAULT = 8


def default_selection(exps: list[dict]) -> list[int]:
    """``?ids=1,2,3`` if given; else the largest group of experiments trained and evaluated on the same datasets
    (a sweep usually keeps the data fixed; ties: the group of the newest), at most eight; else the two newest."""
    ids = {e["id"] for e in exps}
    raw = str(st.query_params.get("ids", ""))
    asked = [int(x) for x in raw.replace(" ", "").split(",") if x.isdigit() and int(x) in ids]
    if asked:
        return asked

    def data_key(spec: dict) -> str:
        return f"{sorted(train_ids(spec))}|{sorted(str(d) for d in spec.get('eval_datasets') or [])}"

    groups: dict[str, list[int]] = {}
    for e in exps:  # the API lists the newest first, so the first group seen is the newest's
        groups.setdefault(data_key(e["spec"]), []).append(e["id"])
    best = max(groups.values(), key=len)
    if len(best) >= 2:
        return sorted(best[:MAX_DEFAULT])
    return sorted(e["id"] for e in exps[:2])


try:
    exps = api.get_all("/experiments", {"status": "succeeded"})
except ApiError as e:
    fail(e, "listing experiments")
if len(exps) < 2:
    st.info(f"Comparing needs at least two succeeded experiments; there {'is' if len(exps) == 1 else 'are'} "
            f"{len(exps) or 'none'}. Start a sweep on **New experiment**, e.g. the same spec with α = 0.5, 1, 2 "
            "and 4, or with each teacher input.", icon=":material/monitoring:")
    st.page_link("app_pages/new_experiment.py", label="New experiment", icon=":material/add_circle:")
    st.stop()

by_id = {e["id"]: e for e in exps}
if "cmp_ids" not in st.session_state:
    st.session_state["cmp_ids"] = default_selection(exps)
chosen = st.multiselect("Experiments (succeeded)", list(by_id), key="cmp_ids",
                        format_func=lambda i: f"#{i} {by_id[i]['name']}" + (" ⚠" if is_unhealthy(by_id[i]) else ""),
                        placeholder="pick two or more experiments")
if chosen:
    st.query_params["ids"] = ",".join(str(i) for i in chosen)  # a link to this comparison
if len(chosen) < 2:
    st.caption("Pick two or more experiments to see their scores side by side.")
    st.stop()

results = {}
for i in chosen:
    try:
        results[i] = api.get(f"/experiments/{i}/results", cache="settled")
    except ApiError as e:
        show_error(e, f"loading the scores of experiment #{i}")
if len(results) < 2:
    st.stop()

unhealthy = {i: unhealthy_models(by_id[i].get("health")) for i in results}
for i, bad in unhealthy.items():
    if bad:
        st.warning(f"**#{i} {by_id[i]['name']}** {WITH_WARNINGS}: "
                   + ", ".join(model_label(k) for k in sorted(bad)) + " unhealthy ("
                   + "; ".join(dict.fromkeys(code_label(f.get("code")) for v in bad.values() for f in v))
                   + "). Its scores and Δ do not measure what they seem to; see its page.", icon=":material/warning:")
specs = {i: by_id[i]["spec"] for i in results}
varying = spec_differences(list(specs.values()))
try:
    names = {str(d["id"]): d["name"] for d in api.get_all("/datasets", cache="settled")}
except ApiError:
    names = {}
shown_specs = {i: readable_spec(s, names) for i, s in specs.items()}
tasks = {i: tuple(r.get("class_names") or []) for i, r in results.items()}
if len(set(tasks.values())) > 1:
    st.warning("These experiments segment different tasks (class lists differ: "
               + "; ".join(f"#{i}: {', '.join(t[1:]) or '?'}" for i, t in tasks.items())
               + "). Their scores are not comparable class by class; compare experiments of one task.",
               icon=":material/warning:")
classes = []
for r in results.values():
    for c in r.get("class_names", [])[1:]:
        if c not in classes:
            classes.append(c)

c = st.columns([2, 2, 3])
metric = c[0].radio("Metric", ["Dice", "IoU", "HD95"], horizontal=True, key="cmp_metric")
cls_choice = c[1].selectbox("Scores of", ["mean over foreground classes", *classes], key="cmp_class")
cls = None if cls_choice.startswith("mean") else cls_choice
if varying:
    c[2].markdown("**Settings that differ:** " + ", ".join(f"`{k}`" for k in varying))
else:
    c[2].markdown("**Settings that differ:** none (only the name): the plot shows one point per experiment.")

long = compare_frame(results, by_id, class_name=cls)
if long.empty:
    st.warning("The chosen experiments hold no scores.")
    st.stop()
table = compare_table(long, metric, {i: {k: shown_specs[i].get(k) for k in varying} for i in results})
table.insert(1, "Health", [experiment_health_summary(by_id[i]) for i in table.index])
st.dataframe(table, width="stretch", key="cmp_table")
st.caption(f"{metric} per dataset and method (mean over seeds). "
           + ("Higher is better." if metric != "HD95" else "Lower is better."))

x_key = st.selectbox("Plot against", varying, key="cmp_x") if varying else None
plot = long.copy()
if x_key:
    plot["Setting"] = [setting_value(shown_specs[i], x_key) for i in plot["ID"]]
    numeric = all(isinstance(v, (int, float)) for v in plot["Setting"])
    plot = plot.sort_values("Setting") if numeric else plot
    x_title = x_key
else:
    plot["Setting"] = plot["Experiment"]
    numeric, x_title = False, "experiment"
plot["Series"] = plot["Dataset"] + " (" + plot["Split"] + ") · " + plot["Method"]
raw_methods = dict.fromkeys(s["method"] for r in results.values() for s in r.get("summary") or [])
colours = {method_label(m): c for m, c in method_colours(raw_methods).items()}  # one colour per method everywhere
fig = px.line(plot, x="Setting", y=metric, color="Method", line_dash="Dataset", symbol="Split",
              error_y=f"{metric} std", markers=True, hover_data=["Experiment", "Seeds"],
              labels={"Setting": x_title}, color_discrete_map=colours)
if not numeric:
    fig.update_xaxes(type="category")
fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), title=f"{metric} against {x_title}")
st.plotly_chart(fig, width="stretch", key="cmp_plot")
figure_downloads(fig, "compare-" + metric.lower(), key="cmp_plot")
table_downloads(table, "compare-" + metric.lower(), key="cmp_table", caption=f"{metric} per experiment")

bars = intra_cross_frame(long, metric)
if not bars.empty:
    fig2 = px.bar(bars, x="Experiment", y=metric, color="Method", pattern_shape="Split", barmode="group",
                  error_y=f"{metric} std", hover_data=["Datasets"], color_discrete_map=colours,
                  pattern_shape_map={"intra": "", "cross (mean)": "/"},
                  title=f"{metric}: intra (test split, plain) vs cross (mean over unseen datasets, hatched)")
    fig2.update_layout(height=400, margin=dict(l=10, r=10, t=50, b=10), xaxis_title=None)
    st.plotly_chart(fig2, width="stretch", key="cmp_bars")
    figure_downloads(fig2, "compare-intra-cross-" + metric.lower(), key="cmp_bars")
strength = strength_frame(results, {i: by_id[i]["name"] for i in results})
if not strength.empty:
    st.subheader("Baseline strength")
    st.caption("Baseline minus the reference recipe (an independent nnU-Net-like recipe, same splits and budget), "
               "per experiment: a gain over a baseline below the reference is not evidence.")
    st.dataframe(strength, width="stretch", hide_index=True, key="cmp_strength")
if x_key and len(varying) > 1:
    st.caption(f"Several settings differ ({', '.join(varying)}): points along `{x_key}` may differ in the others too.")
paired_section(api, by_id, list(chosen), results)  # a model of one experiment against a model of another
