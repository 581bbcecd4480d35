"""The Scores tab: the paper-style score table, the paired per-case comparisons and their forest plot."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from ui.experiment_tabs.view import ExperimentView
from ui.formatting import ci_sign, comparison_pair, fmt_p, method_label
from ui.health import model_label
from ui.scores_data import comparisons_table, dataset_aliases, dataset_columns, score_table, table_html
from ui.widgets import figure_downloads, table_downloads


def scores_tab(view: ExperimentView, results: dict) -> None:
    summary = results.get("summary") or []
    if not summary:
        st.info("The report holds no scores.")
        return
    comps = results.get("comparisons") or []
    aliases = dataset_aliases([d for d, _ in dataset_columns(summary)])
    fg = [c for c in results.get("class_names", [])[1:]]
    options = ["Mean over foreground classes", *fg]
    which = st.radio("Scores of", options, horizontal=True, key="score_class") if len(fg) > 1 else options[0]
    cls = None if which == options[0] else which
    shown = [{**s, "dataset": aliases.get(s["dataset"], s["dataset"])} for s in summary]
    shown_comps = [{**c, "dataset": aliases.get(c["dataset"], c["dataset"])} for c in comps]
    units = {aliases.get(k, k): v for k, v in (results.get("dataset_units") or {}).items()}
    text, signs = score_table(shown, class_name=cls, unit=results.get("units", "px"), dataset_units=units,
                              comparisons=shown_comps)
    st.markdown(table_html(text, signs, css_class="sikd-scores"), unsafe_allow_html=True)
    table_downloads(text, f"experiment-{view.id}-scores", caption=f"Scores of experiment #{view.id}", key="scores")
    n_seeds = max(s.get("n_seeds", 1) for s in summary)
    intra = [ds for ds, split in dataset_columns(summary) if split == "intra"]
    st.caption(f"intra = the held-out test split of {', '.join(intra) or 'the training dataset'}; cross = datasets "
               "never seen in training. Dice and IoU: higher is better; HD95 (95th-percentile Hausdorff distance): "
               "lower is better. " + (f"Mean ± std over {n_seeds} seeds. " if n_seeds > 1 else "One seed. ")
               + "A Δ is green (better) or red (worse) only where its paired 95% CI excludes 0; uncoloured "
               "differences are not demonstrated. The table scrolls sideways when it is wider than the page.")
    if comps:
        st.subheader("Paired per-case comparisons")
        for c in comps:
            if c.get("unhealthy_models"):
                st.warning(f"The comparison on **{c['dataset']}** ({c['split']}) involves unhealthy models: "
                           f"{', '.join(model_label(m) for m in c['unhealthy_models'])} (see the banners above).",
                           icon=":material/warning:")
        ctext, csigns = comparisons_table(comps, unit=results.get("units", "px"), aliases=aliases)
        st.markdown(table_html(ctext, csigns, css_class="sikd-paired", index=False), unsafe_allow_html=True)
        table_downloads(ctext, f"experiment-{view.id}-paired", caption="Paired per-case comparisons", key="paired",
                        index=False)
        st.caption("Per-case differences averaged over seeds; 95% bootstrap confidence interval of the mean; "
                   "two-sided Wilcoxon signed-rank p-value; cases where the method is better / worse / tied on Dice.")
        fig = forest_figure(comps, aliases)
        figure_downloads(fig, f"experiment-{view.id}-forest", key="forest")
        st.plotly_chart(fig, width="stretch", key="forest_chart")
    warnings = results.get("warnings") or []
    if warnings:
        with st.expander(f"Training warnings, all messages ({len(warnings)})", icon=":material/warning:"):
            st.markdown("\n".join(f"- {w}" for w in warnings))


def forest_figure(comps: list, aliases: dict[str, str]) -> go.Figure:
    """ΔDice with its 95% CI per comparison and dataset: green / red only where the CI excludes 0."""
    fig = go.Figure()
    for c in comps:
        d = c.get("dice") or {}
        if d.get("mean_diff") is None:
            continue
        a, b = comparison_pair(c)
        sign = ci_sign(d, higher_better=True)
        fig.add_trace(go.Scatter(
            x=[d["mean_diff"]], y=[f"{method_label(a)} − {method_label(b)} · {aliases.get(c['dataset'], c['dataset'])} "
                                   f"({c['split']})"], mode="markers",
            marker=dict(size=11, color="#1a7f37" if sign > 0 else "#cf222e" if sign < 0 else "#888888"),
            showlegend=False,
            error_x=dict(type="data", symmetric=False,
                         array=[(d.get("ci_high") or d["mean_diff"]) - d["mean_diff"]],
                         arrayminus=[d["mean_diff"] - (d.get("ci_low") or d["mean_diff"])]),
            hovertemplate=f"ΔDice %{{x:+.3f}} · p = {fmt_p(d.get('p_value'))}<extra></extra>"))
    fig.add_vline(x=0, line_dash="dash", line_color="#888")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=80 + 40 * len(comps), margin=dict(l=10, r=10, t=30, b=10),
                      title="ΔDice with 95% CI (grey: the CI includes 0)", xaxis_title="method − reference Dice")
    return fig
