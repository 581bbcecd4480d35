"""Sweep: the experiments one sweep request created, what they shared (stages reused, not trained again), and each
score against the swept setting with its 95% CI and health (the paper's Fig. 8, live), as PNG, SVG and CSV."""

from __future__ import annotations

import streamlit as st

from ui.client import ApiError, Client
from ui.sweep_data import experiments_frame, points_frame, sweep_figure
from ui.widgets import fail, figure_downloads, table_downloads

api = Client()
st.title("Sweep")

raw = str(st.query_params.get("id", "")).strip()
if not raw.isdigit():
    st.info("Open a sweep from an experiment that belongs to one (its page links here), or give `?id=N`. "
            "A sweep is created by POST /sweeps with a spec holding `sweep: {alpha: [0.5, 1, 2, 5]}`.")
    st.stop()
try:
    sweep = api.get(f"/sweeps/{int(raw)}")
except ApiError as e:
    fail(e, f"loading sweep {raw}")
settings = list(sweep["settings"])
exps = experiments_frame(sweep)
st.markdown(f"**Sweep {sweep['id']}**: {len(exps)} experiments over `{'`, `'.join(settings)}`; "
            f"{int(exps['Stages trained'].sum())} stages trained, {int(exps['Stages reused'].sum())} reused.")
st.dataframe(exps, hide_index=True, key="sweep_exps")
points = points_frame(sweep)
if points.empty:
    st.info("No experiment of the sweep has succeeded yet: the chart appears as they finish.")
    st.stop()
st.subheader("Dice against " + settings[0])
fig = sweep_figure(points, settings)
st.plotly_chart(fig, key="sweep_plot")
st.caption("Lines: intra (solid, the training data's test split) and cross (dashed, unseen datasets); bars: 95% "
           "bootstrap CI over the cases; a cross marks a point whose model has health findings.")
figure_downloads(fig, f"sweep_{sweep['id']}", key="sweep_fig")
st.dataframe(points.drop(columns=["method"]), hide_index=True, key="sweep_points",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("Dice", "CI low", "CI high")})
table_downloads(points.drop(columns=["method"]), f"sweep_{sweep['id']}", key="sweep_table", index=False, latex=False)
