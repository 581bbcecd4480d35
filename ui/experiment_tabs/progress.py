"""The Stages section: progress, the stage table, the timeline and the training curves, refreshed live."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from ui.client import ApiError
from ui.experiment_tabs.view import ExperimentView
from ui.experiments_data import experiment_eta, metrics_frame, stages_frame, timeline_frame
from ui.figures import OTHER_COLOURS, stage_colour
from ui.formatting import ACTIVE, fmt_seconds, stage_label, stage_status
from ui.widgets import figure_downloads, show_error

REFRESH = 2.0
#: Line styles of the seeds (colours are the methods', from ui.figures).
DASHES = ["solid", "dash", "dot", "dashdot", "longdash"]


def curves(metrics: dict) -> go.Figure | None:
    df = metrics_frame(metrics)
    if df.empty:
        return None
    kd = df["Distillation loss"].notna().any()
    titles = ["Training loss", "Validation Dice (mean over classes)"] + (["Student: segmentation vs distillation"]
                                                                          if kd else [])
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles)
    seeds = sorted({s for s in df["Seed"].dropna().unique()})
    for stage, g in df.groupby("Stage", sort=False):
        kind, seed = g["Kind"].iloc[0], g["Seed"].iloc[0]
        line = dict(color=stage_colour(kind), dash=DASHES[seeds.index(seed) % len(DASHES)] if seed in seeds
                    else "solid")
        label = stage.replace("student", "SIKD student")
        fig.add_trace(go.Scatter(x=g["Epoch"], y=g["Loss"], name=label, legendgroup=stage, mode="lines+markers",
                                 line=line), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["Epoch"], y=g["Val Dice"], name=label, legendgroup=stage, showlegend=False,
                                 mode="lines+markers", line=line), row=1, col=2)
        if kd and g["Distillation loss"].notna().any():  # every student (sikd, X+sikd) logs its distillation loss
            seed_txt = f", seed {int(seed)}" if seed == seed and seed is not None else ""
            for col, colour in (("Segmentation loss", OTHER_COLOURS["segmentation loss"]),
                                ("Distillation loss", OTHER_COLOURS["distillation loss"])):
                fig.add_trace(go.Scatter(x=g["Epoch"], y=g[col], name=f"{col.split()[0].lower()} loss{seed_txt}",
                                         mode="lines+markers", line=dict(color=colour, dash=line["dash"])),
                              row=1, col=3)
    fig.update_xaxes(title_text="epoch", dtick=1 if df["Epoch"].max() <= 20 else None)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def timeline(stages: list) -> go.Figure | None:
    df = timeline_frame(stages)
    if df.empty:
        return None
    fig = px.timeline(df, x_start="Start", x_end="End", y="Stage", color="Kind", hover_data=["Status"],
                      color_discrete_map={k: stage_colour(k) for k in df["Kind"].unique()})
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_layout(height=60 + 28 * len(df), margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    return fig


def moving(e: dict) -> bool:
    """Whether the stages can still change: the experiment is active, or a cancelled one's stage still stops."""
    return e["status"] in ACTIVE or any(s["status"] == "running" for s in e["stages"])


def progress_section(view: ExperimentView, seen_status: str) -> None:
    e = view.exp
    if moving(view.exp):
        try:
            e = view.api.get(f"/experiments/{view.id}")
        except ApiError as err:
            show_error(err, "refreshing")
            return
        if e["status"] != seen_status or not moving(e):  # finished, failed or stopped: rebuild the whole page
            st.rerun()
    running = [s for s in e["stages"] if stage_status(s, e["status"]) == "running"]
    now = "; ".join(f"{stage_label(s)} epoch {s['epoch']}/{s['epochs']}" if s["kind"] != "evaluation"
                    else f"evaluation{': ' + s['message'] if s.get('message') else ''}" for s in running)
    eta = experiment_eta(e)
    st.progress(min(max(e.get("progress") or 0.0, 0.0), 1.0),
                text=f"{round(100 * (e.get('progress') or 0))}% · {e['status']}" + (f" · {now}" if now else "")
                + (f" · about {fmt_seconds(eta)} left" if eta is not None else ""))
    st.dataframe(stages_frame(e["stages"], e["status"]), hide_index=True, width="stretch", column_config={
        "Progress": st.column_config.ProgressColumn(min_value=0, max_value=100, format="%.0f%%")},
        key="stages_table")
    fig = timeline(e["stages"])
    if fig is not None:
        st.plotly_chart(fig, width="stretch", key="timeline_chart")
    try:
        metrics = view.api.get(f"/experiments/{view.id}/metrics", cache="live" if seen_status in ACTIVE else "settled")
    except ApiError as err:
        show_error(err, "loading the training curves")
        return
    fig = curves(metrics)
    if fig is None:
        st.caption("Curves appear after the first epoch.")
    else:
        st.plotly_chart(fig, width="stretch", key="curves_chart")
        figure_downloads(fig, f"experiment-{view.id}-curves", key="curves")
