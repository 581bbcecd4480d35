"""The Distributions tab: generalisation (intra vs cross) and per-case score distributions."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from ui.experiment_tabs.view import ExperimentView
from ui.figures import method_colours
from ui.formatting import method_label
from ui.scores_data import dataset_aliases, generalisation_frame, result_methods
from ui.widgets import figure_downloads


def distributions_tab(view: ExperimentView, results: dict, long: pd.DataFrame) -> None:
    summary = results.get("summary") or []
    st.markdown("**Generalisation: intra vs cross**")
    gen = generalisation_frame(summary)
    if gen["Cross (mean)"].notna().any():
        bars = gen.melt(id_vars=["Method"], value_vars=["Intra", "Cross (mean)"], var_name="Split", value_name="Dice")
        colours = {method_label(m): c for m, c in method_colours(result_methods(summary)).items()}
        fig = px.bar(bars, x="Method", y="Dice", color="Method", pattern_shape="Split", barmode="group",
                     text_auto=".3f", color_discrete_map=colours,
                     pattern_shape_map={"Intra": "", "Cross (mean)": "/"},
                     title="Mean Dice on the test split (intra, plain) and on unseen datasets (cross, hatched)")
        for _, r in gen.iterrows():
            if r["Gap"] == r["Gap"] and r["Gap"] is not None:
                fig.add_annotation(x=r["Method"], y=max(r["Intra"] or 0, r["Cross (mean)"] or 0) + 0.06,
                                   text=f"gap {r['Gap']:+.3f}", showarrow=False)
        fig.update_yaxes(range=[0, 1.12])
        fig.update_layout(height=360, margin=dict(l=10, r=10, t=50, b=10))
        st.plotly_chart(fig, width="stretch", key="gap_chart")
        figure_downloads(fig, f"experiment-{view.id}-generalisation", key="gap")
        st.caption("Gap = intra − cross Dice: what a model loses on data from other sites; smaller is better.")
    else:
        st.caption("No cross-dataset evaluation in this experiment: the intra test split only.")
    st.dataframe(gen, hide_index=True, key="gap_table", column_config={
        k: st.column_config.NumberColumn(format="%.3f") for k in ("Intra", "Cross (mean)", "Gap")})
    if long.empty:
        st.info("No per-case scores to plot.")
        return
    metric = st.radio("Per-case metric", ["Dice", "HD95"], horizontal=True, key="dist_metric")
    aliases = dataset_aliases(list(dict.fromkeys(long["Dataset"])))
    df = long.assign(Set=long["Dataset"].map(aliases) + " (" + long["Split"] + ")",
                     Model=long["Method"].map(method_label))
    colours = {method_label(m): c for m, c in method_colours(long["Method"].unique()).items()}
    fig = px.box(df, x="Set", y=metric, color="Model", points="all", hover_data=["Key"], color_discrete_map=colours,
                 title=f"Per-case {metric} by dataset and method (mean over seeds; each dot is one case)")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=50, b=10), boxmode="group", xaxis_title=None)
    if metric == "Dice":
        fig.update_yaxes(range=[-0.02, 1.02])
    st.plotly_chart(fig, width="stretch", key="dist_chart")
    figure_downloads(fig, f"experiment-{view.id}-per-case-{metric.lower()}", key="dist")
    n = df.groupby("Set")["Case"].nunique()
    st.caption("Cases per dataset: " + ", ".join(f"{k} {v}" for k, v in n.items()) + ". Select a case on the "
               "**Cases** tab to see its image.")
