"""Experiment detail: stages, live curves, the paper-style score table with the paired comparison,
overlays, feature maps (the paper's Fig. 7) and downloads."""

from __future__ import annotations

import json

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from ui.client import ApiError, Client
from ui.formatting import (
    ACTIVE,
    TEACHER_INPUT_LABELS,
    comparisons_table,
    dataset_columns,
    experiment_eta,
    fmt,
    fmt_bytes,
    fmt_seconds,
    metrics_frame,
    parse_time,
    score_table,
    stage_label,
    stages_frame,
    table_html,
    timeline_frame,
)
from ui.health import health_banner, model_label
from ui.widgets import confirm_delete, contour_legend, fail, picture, show_error, status_badge

REFRESH = 2.0
KIND_COLOURS = {"baseline": "#ff3c3c", "teacher": "#f0a030", "student": "#288cff", "evaluation": "#7f7f7f"}
DASHES = ["solid", "dash", "dot", "dashdot", "longdash"]
OVERLAYS_PER_PAGE = 9

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
st.markdown(f"{status_badge(status)}  "
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
           + f" · trained on {dataset_names([spec.get('train_dataset')])} · cross datasets "
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

if exp.get("error"):
    (st.error if status == "failed" else st.warning)(f"**{status.capitalize()}:** {exp['error']}")
for s in exp["stages"]:
    if s["status"] == "failed":
        st.error(f"**{stage_label(s)} failed:** {s.get('error') or 'no message recorded'}", icon=":material/error:")
        if s.get("traceback_summary"):
            with st.expander(f"Traceback summary of {stage_label(s)}"):
                st.code(s["traceback_summary"], language="text")

# Training health: one banner per unhealthy model, above everything else (the report's findings once evaluated,
# the stages' findings while training).
_health = None
if status == "succeeded":
    try:
        _health = api.get(f"/experiments/{exp_id}/results", cache="settled").get("health")
    except ApiError:
        _health = None
health_banner(_health, exp["stages"])


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


def progress_section(seen_status: str) -> None:
    e = exp
    if seen_status in ACTIVE:
        try:
            e = api.get(f"/experiments/{exp_id}")
        except ApiError as err:
            show_error(err, "refreshing")
            return
        if e["status"] != seen_status:  # finished (or failed): rebuild the whole page with its results
            st.rerun()
    running = [s for s in e["stages"] if s["status"] == "running"]
    now = "; ".join(f"{stage_label(s)} epoch {s['epoch']}/{s['epochs']}" if s["kind"] != "evaluation"
                    else f"evaluation{': ' + s['message'] if s.get('message') else ''}" for s in running)
    eta = experiment_eta(e)
    st.progress(min(max(e.get("progress") or 0.0, 0.0), 1.0),
                text=f"{round(100 * (e.get('progress') or 0))}% · {e['status']}" + (f" · {now}" if now else "")
                + (f" · about {fmt_seconds(eta)} left" if eta is not None else ""))
    st.dataframe(stages_frame(e["stages"]), hide_index=True, width="stretch", column_config={
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


st.subheader("Stages")
if status in ACTIVE:
    st.fragment(run_every=REFRESH)(progress_section)(status)
else:
    progress_section(status)


# ------------------------------------------------------------------------------------------ results
def scores_tab(results: dict) -> None:
    summary = results.get("summary") or []
    if not summary:
        st.info("The report holds no scores.")
        return
    fg = [c for c in results.get("class_names", [])[1:]]
    options = ["Mean over foreground classes", *fg]
    which = st.radio("Scores of", options, horizontal=True, key="score_class") if len(fg) > 1 else options[0]
    cls = None if which == options[0] else which
    text, signs = score_table(summary, class_name=cls, unit=results.get("units", "px"),
                              dataset_units=results.get("dataset_units"))
    st.markdown(table_html(text, signs, css_class="sikd-scores"), unsafe_allow_html=True)
    n_seeds = max(s.get("n_seeds", 1) for s in summary)
    intra = [ds for ds, split in dataset_columns(summary) if split == "intra"]
    st.caption(f"intra = the held-out test split of {', '.join(intra) or 'the training dataset'}; cross = datasets "
               "never seen in training. Dice and IoU: higher is better; HD95 (95th-percentile Hausdorff distance): "
               "lower is better. " + (f"Mean ± std over {n_seeds} seeds. " if n_seeds > 1 else "One seed. ")
               + "Δ is green where SIKD beats the baseline, red where it is worse.")
    comps = results.get("comparisons") or []
    if comps:
        st.subheader("Paired per-case comparison (SIKD − baseline)")
        for c in comps:
            if c.get("unhealthy_models"):
                st.warning(f"The comparison on **{c['dataset']}** ({c['split']}) involves unhealthy models: "
                           f"{', '.join(model_label(m) for m in c['unhealthy_models'])} (see the banners above).",
                           icon=":material/warning:")
        ctext, csigns = comparisons_table(comps, unit=results.get("units", "px"))
        st.markdown(table_html(ctext, csigns, css_class="sikd-paired", index=False), unsafe_allow_html=True)
        st.caption("Per-case differences averaged over seeds; 95% bootstrap confidence interval of the mean; "
                   "two-sided Wilcoxon signed-rank p-value; cases where SIKD is better / worse / tied on Dice.")
        fig = go.Figure()
        for c in comps:
            d = c.get("dice") or {}
            if d.get("mean_diff") is None:
                continue
            fig.add_trace(go.Scatter(
                x=[d["mean_diff"]], y=[f"{c['dataset']} ({c['split']})"], mode="markers",
                marker=dict(size=11, color="#1a7f37" if d["mean_diff"] > 0 else "#cf222e" if d["mean_diff"] < 0
                            else "#888888"), showlegend=False,
                error_x=dict(type="data", symmetric=False,
                             array=[(d.get("ci_high") or d["mean_diff"]) - d["mean_diff"]],
                             arrayminus=[d["mean_diff"] - (d.get("ci_low") or d["mean_diff"])]),
                hovertemplate=f"ΔDice %{{x:+.3f}} · p = {fmt(d.get('p_value'))}<extra></extra>"))
        fig.add_vline(x=0, line_dash="dash", line_color="#888")
        fig.update_layout(height=80 + 40 * len(comps), margin=dict(l=10, r=10, t=30, b=10),
                          title="ΔDice with 95% CI", xaxis_title="SIKD − baseline Dice")
        st.plotly_chart(fig, width="stretch", key="forest_chart")
    warnings = results.get("warnings") or []
    if warnings:
        with st.expander(f"Training warnings, all messages ({len(warnings)})", icon=":material/warning:"):
            st.markdown("\n".join(f"- {w}" for w in warnings))


def overlays_tab(results: dict) -> None:
    sets = dataset_columns(results.get("summary") or [])
    c = st.columns([2, 3])
    ds_choice = c[0].selectbox("Dataset", ["all datasets", *[f"{d} ({s})" for d, s in sets]], key="ov_dataset")
    sort = c[1].radio("Order", ["Largest SIKD gain", "Largest baseline gain", "Worst cases (lowest SIKD Dice)"],
                      horizontal=True, key="ov_sort")
    dataset = None if ds_choice == "all datasets" else sets[[f"{d} ({s})" for d, s in sets].index(ds_choice)][0]
    params = {"dataset": dataset, "sort": "worst" if sort.startswith("Worst") else "dice_diff", "limit": 500}
    try:
        items = api.get(f"/experiments/{exp_id}/overlays", params, cache="settled")["data"]
    except ApiError as e:
        show_error(e, "loading the overlays")
        return
    if sort == "Largest baseline gain":
        items = list(reversed(items))
    if not items:
        st.info("No overlays: the experiment kept no predictions (spec `save_predictions` is false) or the "
                "datasets had no labelled cases.")
        return
    contour_legend()
    pages = (len(items) + OVERLAYS_PER_PAGE - 1) // OVERLAYS_PER_PAGE
    page = (st.columns(4)[0].number_input(f"Page (of {pages}; {len(items)} cases)", 1, pages, 1, key="ov_page")
            if pages > 1 else 1)
    shown = items[(page - 1) * OVERLAYS_PER_PAGE: page * OVERLAYS_PER_PAGE]
    cols = st.columns(3)
    for i, o in enumerate(shown):
        sc = o.get("scores") or {}
        dice = " / ".join(f"{'SIKD' if m == 'sikd' else 'baseline'} {fmt((sc.get(m) or {}).get('dice'))}"
                          for m in ("baseline", "sikd") if m in sc)
        diff = f" · Δ {fmt(o.get('dice_diff'), 3, True)}" if o.get("dice_diff") is not None else ""
        with cols[i % 3]:
            picture(api, o["url"], caption=f"{o['key']} · {o['dataset']} ({o['split']}) · Dice {dice}{diff}")


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
               "(which sees the class-wise mean image) and the SIKD student distilled from it.")
    labels = [f"{f['key']} · {f['dataset']} ({f['split']})" for f in items]
    i = st.selectbox("Image", range(len(items)), format_func=lambda k: labels[k], key="feat_image")
    f = items[i]
    names = {"sikd": "SIKD student", "image": "image"}
    picture(api, f["url"], caption="Left to right: " + " · ".join(names.get(p, p) for p in f.get("panels", [])))


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
            f"{'SIKD student' if m['method'] == 'sikd' else m['method']} · seed {m['seed']} · best val Dice "
            f"{fmt(m.get('best_val_dice'))} · {fmt_bytes(m['size_bytes'])}",
            api.downloader(f"/models/{m['id']}/download"), key=f"model_{m['id']}",
            file_name=f"sikd-exp{exp_id}-{m['method']}-seed{m['seed']}.pt", mime="application/octet-stream", icon=":material/neurology:")


st.subheader("Results")
results = None
if status == "succeeded":
    try:
        results = api.get(f"/experiments/{exp_id}/results", cache="settled")
    except ApiError as e:
        show_error(e, "loading the scores")
    if results is not None:
        scores, overlays, features, downloads = st.tabs(["Scores", "Overlays", "Feature maps", "Downloads"])
        with scores:
            scores_tab(results)
        with overlays:
            overlays_tab(results)
        with features:
            features_tab()
        with downloads:
            downloads_tab(results)
else:
    if status in ACTIVE:
        st.info("Scores, overlays and feature maps appear here when the experiment has succeeded; this page "
                f"follows its progress every {REFRESH:g} s.", icon=":material/hourglass_top:")
    else:
        st.info(f"This experiment {status} before its evaluation, so it has no scores. Trained models, if any, "
                "are listed below.", icon=":material/info:")
    downloads_tab(None)
