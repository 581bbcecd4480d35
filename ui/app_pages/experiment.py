"""Experiment detail: which experiment, its header and actions, health banners; then the stages and the results'
tabs, each drawn by its module in ``ui/experiment_tabs/`` (stages and live curves, the paper-style score table
with the paired comparison, distributions, cases, overlays, feature maps (the paper's Fig. 7) and downloads)."""

from __future__ import annotations

import json

import streamlit as st

from ui.client import ApiError, Client
from ui.experiment_meta_view import clone_button, tags_and_note
from ui.experiment_tabs.cases import cases_tab, load_cases
from ui.experiment_tabs.distributions import distributions_tab
from ui.experiment_tabs.downloads import downloads_tab
from ui.experiment_tabs.features import features_tab
from ui.experiment_tabs.overlays import overlays_tab
from ui.experiment_tabs.progress import REFRESH, moving, progress_section
from ui.experiment_tabs.scores import scores_tab
from ui.experiment_tabs.view import ExperimentView
from ui.formatting import ACTIVE, TEACHER_INPUT_LABELS, fmt_seconds, parse_time, stage_label, train_ids
from ui.health import display_status, health_banner
from ui.strength import strength_banner
from ui.widgets import confirm_delete, fail, show_error, status_badge

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
                          format_func=lambda i: f"#{i} {by_id[i]['name']} ({display_status(by_id[i])})")
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
            f"Network **{spec.get('network')}** {json.dumps(spec.get('network_kwargs')) if spec.get('network_kwargs') else ''}"
            f" · {spec['image_size'][0]}×{spec['image_size'][1]} px · {spec.get('epochs')} epochs"
            f"{' (teacher ' + str(spec['teacher_epochs']) + ')' if spec.get('teacher_epochs') else ''}"
            f" · batch {spec.get('batch_size')} · lr {spec.get('lr'):g} · loss {spec.get('loss')}"
            f" · α = {spec.get('alpha'):g} · teacher input {TEACHER_INPUT_LABELS.get(spec.get('teacher_input'), spec.get('teacher_input'))}"
            f" · methods {', '.join(spec.get('methods', []))} · seeds {spec.get('seeds')}")
times = [(label, parse_time(exp.get(k))) for label, k in (("created", "created_at"), ("started", "started_at"),
                                                          ("finished", "finished_at"))]
took = (times[2][1] - times[1][1]).total_seconds() if times[1][1] and times[2][1] else None
if exp.get("sweep_id"):
    st.page_link("app_pages/sweep.py", label=f"Part of sweep {exp['sweep_id']} "
                 f"({', '.join(f'{k}={v}' for k, v in (exp.get('sweep_values') or {}).items())}): its chart",
                 icon=":material/stacked_line_chart:", query_params={"id": str(exp["sweep_id"])})
reused = [s for s in exp["stages"] if s.get("reused_from")]
if reused:
    st.caption("Not trained again: " + "; ".join(f"{s['kind']} (seed {s['seed']}) reused from experiment "
                                                  f"{s['reused_from']}" for s in reused))
st.caption(" · ".join(f"{label} {t:%Y-%m-%d %H:%M:%S} UTC" for label, t in times if t)
           + (f" · took {fmt_seconds(took)}" if took is not None else "")
           + f" · trained on {dataset_names(train_ids(spec))} · cross datasets "
           f"{dataset_names(spec.get('eval_datasets') or []) or 'none'}")

acts = st.columns([1, 1, 1.6, 4.4])
clone_button(acts[2], exp)
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

tags_and_note(api, exp)

results: dict | None = None
results_error: ApiError | None = None
if status == "succeeded":
    try:
        results = api.get(f"/experiments/{exp_id}/results", cache="settled")
    except ApiError as e:
        results_error = e
# Training health: one banner per unhealthy model, above everything else: the experiment's health as the API gives
# it to every page (the report's findings once evaluated, the stages' while training; a student with its teacher's).
health_banner(exp.get("health"))
strength_banner(results)  # is the baseline as strong as the standard recipe makes it?

if exp.get("error"):
    (st.error if status == "failed" else st.warning)(f"**{status.capitalize()}:** {exp['error']}")
for s in exp["stages"]:
    if s["status"] == "failed":
        st.error(f"**{stage_label(s)} failed:** {s.get('error') or 'no message recorded'}", icon=":material/error:")
        if s.get("traceback_summary"):
            with st.expander(f"Traceback summary of {stage_label(s)}"):
                st.code(s["traceback_summary"], language="text")


# ------------------------------------------------------------------------------------------ progress
view = ExperimentView(api=api, exp=exp)
st.subheader("Stages")
if moving(exp):
    st.fragment(run_every=REFRESH)(progress_section)(view, status)
else:
    progress_section(view, status)


# ------------------------------------------------------------------------------------------ results
st.subheader("Results")
if results_error is not None:
    show_error(results_error, "loading the scores")
if results is not None:
    scores, dists, cases, overlays, features, downloads = st.tabs(
        ["Scores", "Distributions", "Cases", "Overlays", "Feature maps", "Downloads"])
    long = load_cases(view, results)
    with scores:
        scores_tab(view, results)
    with dists:
        distributions_tab(view, results, long)
    with cases:
        cases_tab(view, results, long)
    with overlays:
        overlays_tab(view, results, long)
    with features:
        features_tab(view)
    with downloads:
        downloads_tab(view, results)
elif status != "succeeded":
    if status in ACTIVE:
        st.info("Scores, overlays and feature maps appear here when the experiment has succeeded; this page "
                f"follows its progress every {REFRESH:g} s.", icon=":material/hourglass_top:")
    else:
        st.info(f"This experiment {status} before its evaluation, so it has no scores. Trained models, if any, "
                "are listed below.", icon=":material/info:")
    downloads_tab(view, None)
