"""The sweep view's data: a sweep's points (GET /sweeps/{id}) as a table and a chart of each score against the
swept setting, with 95% CIs and health (the paper's Fig. 8, live). Pure functions of the API's JSON."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ui.figures import method_colours
from ui.formatting import method_label

SPLITS = {"intra": "solid", "cross": "dash"}


def setting_label(values: dict[str, Any], settings: list[str]) -> str:
    """``alpha=0.5`` (or ``alpha=0.5, lr=0.01`` when several settings are swept)."""
    return ", ".join(f"{k}={values.get(k)}" for k in settings)


def points_frame(sweep: dict[str, Any]) -> pd.DataFrame:
    """One row per point: experiment, the swept values, method, split, cases, Dice with its CI, health."""
    settings = list(sweep.get("settings") or [])
    rows = []
    for p in sweep.get("points") or []:
        rows.append({"Experiment": p["experiment_id"], **{k: p["values"].get(k) for k in settings},
                     "Method": method_label(p["method"]), "method": p["method"], "Split": p["split"],
                     "Cases": p["n_cases"], "Dice": p["dice"], "CI low": p["ci_low"], "CI high": p["ci_high"],
                     "Health": p["health"]})
    return pd.DataFrame(rows, columns=["Experiment", *settings, "Method", "method", "Split", "Cases", "Dice",
                                       "CI low", "CI high", "Health"])


def experiments_frame(sweep: dict[str, Any]) -> pd.DataFrame:
    """One row per experiment of the sweep: its setting, status, and how many stages it reused (not trained)."""
    settings = list(sweep.get("settings") or [])
    rows = []
    for e in sweep.get("experiments") or []:
        train = [s for s in e["stages"] if s["kind"] != "evaluation"]
        reused = [s for s in train if s.get("reused_from")]
        rows.append({"Experiment": e["id"], "Setting": setting_label(e.get("sweep_values") or {}, settings),
                     "Status": e["status"], "Stages trained": sum(1 for s in train if s["status"] == "succeeded")
                     - len(reused), "Stages reused": len(reused),
                     "Reused from": ", ".join(sorted({str(s["reused_from"]) for s in reused}))})
    return pd.DataFrame(rows)


def _x(v: Any) -> Any:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def sweep_figure(frame: pd.DataFrame, settings: list[str]) -> go.Figure:
    """Dice against the first swept setting: a line per method and split (solid intra, dashed cross), the 95% CI
    as error bars, unhealthy points drawn as crosses."""
    fig = go.Figure()
    if frame.empty:
        return fig
    x_key = settings[0]
    others = settings[1:]
    colours = method_colours(frame["method"].unique())
    group_keys = ["method", "Split", *others]
    for key, g in frame.groupby(group_keys, sort=False):
        method, split, *rest = key if isinstance(key, tuple) else (key,)
        g = g.assign(_x=g[x_key].map(_x)).sort_values("_x")
        name = f"{method_label(method)}, {split}" + "".join(f", {k}={v}" for k, v in zip(others, rest, strict=True))
        fig.add_trace(go.Scatter(
            x=g["_x"].tolist(), y=g["Dice"].tolist(), name=name, mode="lines+markers",
            line={"color": colours[method], "dash": SPLITS.get(split, "dot")},
            marker={"symbol": ["x" if h == "unhealthy" else "circle" for h in g["Health"]], "size": 9},
            error_y={"type": "data", "symmetric": False, "array": (g["CI high"] - g["Dice"]).tolist(),
                     "arrayminus": (g["Dice"] - g["CI low"]).tolist()},
            customdata=g[["Experiment", "Cases", "Health"]].values.tolist(),
            hovertemplate="experiment %{customdata[0]}: Dice %{y:.3f} (%{customdata[1]} cases, %{customdata[2]})"
                          "<extra></extra>"))
    numeric = all(isinstance(_x(v), (int, float)) for v in frame[x_key])
    fig.update_layout(xaxis_title=x_key, yaxis_title="Dice (mean, 95% CI)", legend_title="model, split",
                      margin={"t": 30})
    if numeric:  # a tick at each swept value (a log axis would put its own between them)
        values = sorted({_x(v) for v in frame[x_key]})
        fig.update_xaxes(type="log" if x_key in ("alpha", "lr", "weight_decay") and frame[x_key].min() > 0
                         else "linear", tickvals=values, ticktext=[f"{v:g}" for v in values])
    return fig
