"""Experiment detail: stages, live curves, the paper-style score table with the paired comparison,
overlays, feature maps (the paper's Fig. 7) and downloads."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from ui.client import ApiError, Client
from ui.formatting import (
    ACTIVE,
    TEACHER_INPUT_LABELS,
    cases_long,
    cases_wide,
    ci_sign,
    comparison_pair,
    comparisons_table,
    dataset_aliases,
    dataset_columns,
    experiment_eta,
    fmt,
    fmt_bytes,
    fmt_p,
    fmt_seconds,
    generalisation_frame,
    method_label,
    method_pairs,
    metrics_frame,
    parse_time,
    score_table,
    stage_label,
    stage_status,
    stages_frame,
    table_html,
    timeline_frame,
    train_ids,
)
from ui.health import display_status, health_banner, model_label
from ui.widgets import (
    class_legend,
    confirm_delete,
    contour_legend,
    fail,
    figure_downloads,
    picture,
    show_error,
    status_badge,
    table_downloads,
)

REFRESH = 2.0
KIND_COLOURS = {"baseline": "#ff3c3c", "teacher": "#f0a030", "student": "#288cff", "evaluation": "#7f7f7f"}
DASHES = ["solid", "dash", "dot", "dashdot", "longdash"]
OVERLAYS_PER_PAGE = 9
#: The anchors of matplotlib's viridis (the API's feature maps use it), for the colour bar.
VIRIDIS_STOPS = ("#440154", "#482878", "#3e4a89", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6dcd59", "#b4de2c",
                 "#fde725")

api = Client()


# ------------------------------------------------------------------------------------------ which one
def pick_experiment() -> int:
    """The experiment of ``?id=``; without one, a picker of the latest experiments."""
    raw = st.query_params.get("id")
    if raw is not None and str(raw).strip().isdigit():
        return int(raw)
    if raw is None and st.session_state.get("detail_last_id") is not None:  # back from another page
        st.query_params["id"] = str(st.session_state["detail_last_id"])
        return int(st.session_state["detail_last_id"])
    st.title("Experiment detail")
    if raw is not None:
        st.warning(f"`id={raw}` in the address is not an experiment id.")
    try:
        exps, count = api.page("/experiments", limit=100)
    except ApiError as e:
        fail(e, "listing experiments")
    if not exps:
        st.info("No experiments yet: start one on **New experiment**.", icon=":material/science:")
        st.page_link("app_pages/new_experiment.py", label="New experiment", icon=":material/add_circle:")
        st.stop()
    by_id = {e["id"]: e for e in exps}
    chosen = st.selectbox("Experiment", list(by_id), index=None, placeholder="choose an experiment",
                          format_func=lambda i: f"#{i} {by_id[i]['name']} ({by_id[i]['status']})")
    if chosen is None:
        st.caption(f"The {len(exps)} latest of {count} experiments; the **Experiments** page lists them all.")
        st.stop()
    st.query_params["id"] = str(chosen)
    st.rerun()


exp_id = pick_experiment()
try:
    exp = api.get(f"/experiments/{exp_id}")
except ApiError as e:
    if e.status == 404:
        st.session_state.pop("detail_last_id", None)
        st.title("Experiment detail")
        st.error(f"Experiment #{exp_id} does not exist (or belongs to someone else). Pick one on **Experiments**.")
        st.page_link("app_pages/experiments.py", label="Experiments", icon=":material/list_alt:")
        st.stop()
    fail(e, f"loading experiment #{exp_id}")

spec = exp["spec"]
status = exp["status"]
st.session_state["detail_last_id"] = exp_id


def dataset_names(ids: list) -> str:
    """``#3 vendor_b, #4 vendor_c`` (ids alone when the dataset list cannot be read)."""
    try:
        names = {str(d["id"]): d["name"] for d in api.get_all("/datasets", cache="settled")}
    except ApiError:
        names = {}
    return ", ".join(f"#{i} {names[str(i)]}" if str(i) in names else f"#{i}" for i in ids)


# ------------------------------------------------------------------------------------------ header
st.title(f"#{exp['id']} {exp['name']}")
st.markdown(f"{status_badge(display_status(exp))}  "
            f"Model **{spec.get('model')}** {json.dumps(spec.get('model_kwargs')) if spec.get('model_kwargs') else ''}"
            f" · {spec['image_size'][0]}×{spec['image_size'][1]} px · {spec.get('epochs')} epochs"
            f"{' (teacher ' + str(spec['teacher_epochs']) + ')' if spec.get('teacher_epochs') else ''}"
            f" · batch {spec.get('batch_size')} · lr {spec.get('lr'):g} · loss {spec.get('loss')}"
            f" · α = {spec.get('alpha'):g} · teacher input {TEACHER_INPUT_LABELS.get(spec.get('teacher_input'), spec.get('teacher_input'))}"
            f" · methods {', '.join(spec.get('methods', []))} · seeds {spec.get('seeds')}")
times = [(label, parse_time(exp.get(k))) for label, k in (("created", "created_at"), ("started", "started_at"),
                                                          ("finished", "finished_at"))]
took = (times[2][1] - times[1][1]).total_seconds() if times[1][1] and times[2][1] else None
st.caption(" · ".join(f"{label} {t:%Y-%m-%d %H:%M:%S} UTC" for label, t in times if t)
           + (f" · took {fmt_seconds(took)}" if took is not None else "")
           + f" · trained on {dataset_names(train_ids(spec))} · cross datasets "
           f"{dataset_names(spec.get('eval_datasets') or []) or 'none'}")

acts = st.columns([1, 1, 6])
if acts[0].button("Cancel", disabled=status not in ACTIVE, key="detail_cancel",
                  help="Stop it: running stages stop within one training step."):
    try:
        api.post(f"/experiments/{exp_id}/cancel")
        st.rerun()
    except ApiError as e:
        show_error(e, "cancelling")
if acts[1].button("Delete", key="detail_delete", help="Remove it with its models and files (asks first)."):
    st.session_state["detail_confirm_delete"] = exp_id
if confirm_delete("detail", exp_id, f"Delete experiment **#{exp_id} {exp['name']}** with its trained models, "
                  "predictions and report? This cannot be undone."):
    try:
        api.delete(f"/experiments/{exp_id}")
        st.switch_page("app_pages/experiments.py")
    except ApiError as e:
        show_error(e, "deleting")

results: dict | None = None
results_error: ApiError | None = None
if status == "succeeded":
    try:
        results = api.get(f"/experiments/{exp_id}/results", cache="settled")
    except ApiError as e:
        results_error = e
# Training health: one banner per unhealthy model, above everything else: the experiment's health as the API gives
# it to every page (the report's findings once evaluated, the stages' while training; a student with its teacher's).
health_banner(exp.get("health") or (results or {}).get("health"), exp["stages"])

if exp.get("error"):
    (st.error if status == "failed" else st.warning)(f"**{status.capitalize()}:** {exp['error']}")
for s in exp["stages"]:
    if s["status"] == "failed":
        st.error(f"**{stage_label(s)} failed:** {s.get('error') or 'no message recorded'}", icon=":material/error:")
        if s.get("traceback_summary"):
            with st.expander(f"Traceback summary of {stage_label(s)}"):
                st.code(s["traceback_summary"], language="text")



# ------------------------------------------------------------------------------------------ progress
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
        line = dict(color=KIND_COLOURS.get(kind), dash=DASHES[seeds.index(seed) % len(DASHES)] if seed in seeds
                    else "solid")
        label = stage.replace("student", "SIKD student")
        fig.add_trace(go.Scatter(x=g["Epoch"], y=g["Loss"], name=label, legendgroup=stage, mode="lines+markers",
                                 line=line), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["Epoch"], y=g["Val Dice"], name=label, legendgroup=stage, showlegend=False,
                                 mode="lines+markers", line=line), row=1, col=2)
        if kd and kind == "student":
            seed_txt = f", seed {int(seed)}" if seed == seed and seed is not None else ""
            for col, colour in (("Segmentation loss", KIND_COLOURS["student"]), ("Distillation loss", "#9467bd")):
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
                      color_discrete_map=KIND_COLOURS)
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_layout(height=60 + 28 * len(df), margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    return fig


def moving(e: dict) -> bool:
    """Whether the stages can still change: the experiment is active, or a cancelled one's stage still stops."""
    return e["status"] in ACTIVE or any(s["status"] == "running" for s in e["stages"])


def progress_section(seen_status: str) -> None:
    e = exp
    if moving(exp):
        try:
            e = api.get(f"/experiments/{exp_id}")
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
        metrics = api.get(f"/experiments/{exp_id}/metrics", cache="live" if seen_status in ACTIVE else "settled")
    except ApiError as err:
        show_error(err, "loading the training curves")
        return
    fig = curves(metrics)
    if fig is None:
        st.caption("Curves appear after the first epoch.")
    else:
        st.plotly_chart(fig, width="stretch", key="curves_chart")
        figure_downloads(fig, f"experiment-{exp_id}-curves", key="curves")


st.subheader("Stages")
if moving(exp):
    st.fragment(run_every=REFRESH)(progress_section)(status)
else:
    progress_section(status)


# ------------------------------------------------------------------------------------------ results
def load_cases(results: dict) -> pd.DataFrame:
    """Per-case scores of every method (mean over seeds), or an empty frame (with the reason shown)."""
    try:
        raw = api.get_all(f"/experiments/{exp_id}/cases", cache="settled")
    except ApiError as e:
        show_error(e, "loading the per-case scores")
        return pd.DataFrame()
    return cases_long(raw, results.get("class_names") or [])


def scores_tab(results: dict) -> None:
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
    table_downloads(text, f"experiment-{exp_id}-scores", caption=f"Scores of experiment #{exp_id}", key="scores")
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
        table_downloads(ctext, f"experiment-{exp_id}-paired", caption="Paired per-case comparisons", key="paired",
                        index=False)
        st.caption("Per-case differences averaged over seeds; 95% bootstrap confidence interval of the mean; "
                   "two-sided Wilcoxon signed-rank p-value; cases where the method is better / worse / tied on Dice.")
        st.plotly_chart(forest(comps, aliases), width="stretch", key="forest_chart")
    warnings = results.get("warnings") or []
    if warnings:
        with st.expander(f"Training warnings, all messages ({len(warnings)})", icon=":material/warning:"):
            st.markdown("\n".join(f"- {w}" for w in warnings))


def forest(comps: list, aliases: dict[str, str]) -> go.Figure:
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
    figure_downloads(fig, f"experiment-{exp_id}-forest", key="forest")
    return fig


def distributions_tab(results: dict, long: pd.DataFrame) -> None:
    summary = results.get("summary") or []
    st.markdown("**Generalisation: intra vs cross**")
    gen = generalisation_frame(summary)
    if gen["Cross (mean)"].notna().any():
        bars = gen.melt(id_vars=["Method"], value_vars=["Intra", "Cross (mean)"], var_name="Split", value_name="Dice")
        fig = px.bar(bars, x="Method", y="Dice", color="Split", barmode="group", text_auto=".3f",
                     color_discrete_map={"Intra": "#4c78a8", "Cross (mean)": "#f58518"},
                     title="Mean Dice on the test split (intra) and on unseen datasets (cross)")
        for _, r in gen.iterrows():
            if r["Gap"] == r["Gap"] and r["Gap"] is not None:
                fig.add_annotation(x=r["Method"], y=max(r["Intra"] or 0, r["Cross (mean)"] or 0) + 0.06,
                                   text=f"gap {r['Gap']:+.3f}", showarrow=False)
        fig.update_yaxes(range=[0, 1.12])
        fig.update_layout(height=360, margin=dict(l=10, r=10, t=50, b=10))
        st.plotly_chart(fig, width="stretch", key="gap_chart")
        figure_downloads(fig, f"experiment-{exp_id}-generalisation", key="gap")
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
    fig = px.box(df, x="Set", y=metric, color="Model", points="all", hover_data=["Key"],
                 title=f"Per-case {metric} by dataset and method (mean over seeds; each dot is one case)")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=50, b=10), boxmode="group", xaxis_title=None)
    if metric == "Dice":
        fig.update_yaxes(range=[-0.02, 1.02])
    st.plotly_chart(fig, width="stretch", key="dist_chart")
    figure_downloads(fig, f"experiment-{exp_id}-per-case-{metric.lower()}", key="dist")
    n = df.groupby("Set")["Case"].nunique()
    st.caption("Cases per dataset: " + ", ".join(f"{k} {v}" for k, v in n.items()) + ". Select a case on the "
               "**Cases** tab to see its image.")


def cases_tab(results: dict, long: pd.DataFrame) -> None:
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
    table_downloads(view, f"experiment-{exp_id}-cases", caption="Per-case scores", key="cases", index=False,
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
    url = f"/experiments/{exp_id}/cases/view.png?" + urlencode(
        {"dataset": row["Dataset"], "key": row["Key"], "methods": shown, "mode": mode}, doseq=True)
    st.markdown(f"**{row['Key']}** · {row['Dataset']} ({row['Split']}) · {scores}")
    if mode == "errors":
        st.caption("Panels: image, then the error map of each prediction against the ground truth: red = false "
                   "positive, blue = false negative, green = correct foreground.")
    else:
        st.caption("Panels, left to right: ground truth, " + ", ".join(method_label(m) for m in shown)
                   + " (first seed). Full resolution: use the picture's fullscreen button to zoom.")
        class_legend(results.get("class_names") or [])
    picture(api, url)


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


def overlays_tab(results: dict, long: pd.DataFrame) -> None:
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
    if spec.get("save_predictions") is False:
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
        url = f"/experiments/{exp_id}/cases/view.png?" + urlencode(
            {"dataset": r.Dataset, "key": r.Key, "methods": [m for m in (first, second) if m], "mode": "overlay"},
            doseq=True)
        dice = f"{a} {fmt(r.A)}" + (f" / {b} {fmt(r.B)} · Δ {fmt(_minus(r.B, r.A), 3, True)}" if second else "")
        with cols[i % 3]:
            picture(api, url, caption=f"{r.Key} · {r.Dataset} ({r.Split}) · Dice {dice}")


def _minus(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None or x != x or y != y else x - y


def features_tab() -> None:
    try:
        items = api.get(f"/experiments/{exp_id}/features", cache="settled")["data"]
    except ApiError as e:
        show_error(e, "loading the feature maps")
        return
    if not items:
        st.info("No feature maps were rendered (spec `feature_maps` is 0).")
        return
    st.caption("Channel-averaged penultimate feature maps of one image (the paper's Fig. 7): the baseline, the teacher "
               "(which sees the class-wise mean image, shown beside the image) and the SIKD student distilled from "
               "it.")
    labels = [f"{f['key']} · {f['dataset']} ({f['split']})" for f in items]
    i = st.selectbox("Image", range(len(items)), format_func=lambda k: labels[k], key="feat_image")
    f = items[i]
    names = {"sikd": "SIKD student", "image": "image", "teacher": "teacher",
             "teacher_input": "class-wise mean image (teacher's input)"}
    panels = f.get("panels", [])
    if panels:
        heads = st.columns(len(panels))
        for h, p in zip(heads, panels, strict=True):
            h.markdown(f"<div style='text-align:center;font-weight:600'>{names.get(p, method_label(p))}</div>",
                       unsafe_allow_html=True)
    picture(api, f["url"])
    scale = f.get("scale")
    if scale and len(scale) == 2:
        stops = ", ".join(VIRIDIS_STOPS)
        st.markdown(
            "<div class='sikd-colourbar' style='display:flex;align-items:center;gap:0.6em;font-size:0.85em'>"
            f"<span>{scale[0]:.3g}</span><span style='flex:0 0 40%;height:0.8em;background:linear-gradient(to right, "
            f"{stops})'></span><span>{scale[1]:.3g}</span><span>mean |activation|, one scale for all feature maps"
            "</span></div>", unsafe_allow_html=True)
    else:
        st.caption("Each map is scaled to its own range (viridis: dark = low, yellow = high mean |activation|).")


def downloads_tab(results: dict | None) -> None:
    if status == "succeeded":
        st.download_button("Report (Markdown)", api.downloader(f"/experiments/{exp_id}/report"),
                           file_name=f"experiment-{exp_id}-report.md", mime="text/markdown", icon=":material/description:")
        if results is not None:
            st.download_button("Scores (JSON)", json.dumps(results, indent=1), file_name=f"experiment-{exp_id}-results.json",
                               mime="application/json", icon=":material/data_object:")
        if spec.get("save_predictions", True):
            st.download_button("Predicted masks (zip, first seed)",
                               api.downloader(f"/experiments/{exp_id}/predictions.zip"),
                               file_name=f"experiment-{exp_id}-predictions.zip", mime="application/zip", icon=":material/folder_zip:")
    try:
        models = api.get_all("/models", {"experiment_id": exp_id}, cache="settled" if status not in ACTIVE else "live")
    except ApiError as e:
        show_error(e, "listing the trained models")
        return
    if not models:
        st.caption("No trained models yet.")
        return
    st.markdown("**Trained models** (`model.pt` bundles: weights + spec, for `sikd predict` or "
                "`POST /models/{id}/predict`)")
    for m in models:
        st.download_button(
            f"{'SIKD student' if m['method'] == 'sikd' else method_label(m['method'])} · seed {m['seed']} · best val Dice "
            f"{fmt(m.get('best_val_dice'))} · {fmt_bytes(m['size_bytes'])}",
            api.downloader(f"/models/{m['id']}/download"), key=f"model_{m['id']}",
            file_name=f"sikd-exp{exp_id}-{m['method']}-seed{m['seed']}.pt", mime="application/octet-stream", icon=":material/neurology:")


st.subheader("Results")
if results_error is not None:
    show_error(results_error, "loading the scores")
if results is not None:
    scores, dists, cases, overlays, features, downloads = st.tabs(
        ["Scores", "Distributions", "Cases", "Overlays", "Feature maps", "Downloads"])
    long = load_cases(results)
    with scores:
        scores_tab(results)
    with dists:
        distributions_tab(results, long)
    with cases:
        cases_tab(results, long)
    with overlays:
        overlays_tab(results, long)
    with features:
        features_tab()
    with downloads:
        downloads_tab(results)
elif status != "succeeded":
    if status in ACTIVE:
        st.info("Scores, overlays and feature maps appear here when the experiment has succeeded; this page "
                f"follows its progress every {REFRESH:g} s.", icon=":material/hourglass_top:")
    else:
        st.info(f"This experiment {status} before its evaluation, so it has no scores. Trained models, if any, "
                "are listed below.", icon=":material/info:")
    downloads_tab(None)
