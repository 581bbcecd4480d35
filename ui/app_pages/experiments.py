"""Experiments: every experiment with its status, a progress bar per stage and the ETA, refreshed live;
open, cancel or delete one."""

from __future__ import annotations

import math
import time

import streamlit as st

from ui.client import ApiError, Client
from ui.experiment_filters import filter_bar
from ui.experiments_data import experiment_eta, experiments_frame, queue_wait, smooth_eta
from ui.formatting import ACTIVE
from ui.health import display_status
from ui.widgets import confirm_delete, explain, fail, show_error

PAGE_SIZE = 50
REFRESH_ACTIVE = 3.0  # seconds between refreshes while something is queued or running
REFRESH_IDLE = 15.0

api = Client()
st.title("Experiments")

top = st.columns([2, 2, 1])
status = top[0].selectbox("Status", ["all", "queued", "running", "succeeded", "failed", "cancelled"],
                          key="exp_status")
params = ({} if status == "all" else {"status": status}) | filter_bar(api)  # the API filters and pages


def count_active() -> int:
    """Two count-only queries tell whether anything is queued or running (then the table refreshes often)."""
    return sum(api.page("/experiments", limit=1, params={"status": s})[1] for s in ACTIVE)


try:
    active = count_active()
    _, total = api.page("/experiments", limit=1, params=params)
except ApiError as e:
    fail(e, "listing experiments")

pages = max(1, math.ceil(total / PAGE_SIZE))
if st.session_state.get("exp_page", 1) > pages:  # the last page went away (deleted experiments)
    st.session_state["exp_page"] = pages
page_no = top[1].number_input(f"Page (of {pages}, {PAGE_SIZE} per page)", min_value=1, max_value=pages, value=1,
                              key="exp_page") if pages > 1 else 1
top[2].page_link("app_pages/new_experiment.py", label="New experiment", icon=":material/add_circle:")

if total == 0:
    if set(params) - {"status"}:
        st.info("No experiments match these filters.", icon=":material/filter_alt_off:")
    elif status == "all":
        st.info("No experiments yet. Start one on **New experiment** (it needs a dataset: upload one on "
                "**Datasets** if the list there is empty).", icon=":material/science:")
        st.page_link("app_pages/new_experiment.py", label="New experiment", icon=":material/add_circle:")
    else:
        st.info(f"No {status} experiments.")
    st.stop()

COLUMNS = {
    "ID": st.column_config.NumberColumn(width="small", format="%d"),
    "Tags": st.column_config.ListColumn("Tags", width="small", help="Set on the experiment's page"),
    "Status": st.column_config.TextColumn(help="\"succeeded with warnings\": it ran to the end, but a model is "
                                                "unhealthy (see Health and the experiment's page)"),
    "Health": st.column_config.TextColumn("Health", help="The unhealthy models (a student carries its teacher's "
                                          "findings); the experiment page's banners say why"),
    "Headline model": st.column_config.TextColumn("Headline model", width="small",
                                                  help="The model whose Dice the next columns show: the SIKD "
                                                       "student, else the experiment's first other method"),
    "Progress": st.column_config.ProgressColumn("Overall", min_value=0, max_value=100, format="%.0f%%",
                                                width="small"),
    **{k: st.column_config.ProgressColumn(k, min_value=0, max_value=100, format="%.0f%%", width="small",
                                          help=f"{k} stage(s), averaged over seeds")
       for k in ("Baseline", "Teacher", "Student", "Evaluation")},
    "Now": st.column_config.TextColumn("Now", width="medium"),
    "Epochs": st.column_config.NumberColumn(width="small"),
    "ETA": st.column_config.TextColumn("ETA", help="Estimated time left, from the running stages' epoch times"),
    "Dice intra": st.column_config.NumberColumn(format="%.3f", width="small",
                                                help="Dice of the headline model (the SIKD student) on the training "
                                                     "dataset's test split"),
    "Dice cross": st.column_config.NumberColumn(format="%.3f", width="small",
                                                help="Dice of the headline model (the SIKD student) averaged over the "
                                                     "unseen (cross) datasets"),
    "Δ intra": st.column_config.NumberColumn(format="%+.3f", width="small",
                                             help="Headline model − baseline Dice, intra"),
    "Δ cross": st.column_config.NumberColumn(format="%+.3f", width="small",
                                             help="Headline model − baseline Dice, cross"),
    "Open": st.column_config.LinkColumn("Open", display_text="open ↗", width="small",
                                        help="The experiment's own page (a link you can share or bookmark)"),
}


def smoothed_etas(exps: list[dict]) -> dict[int, float | None]:
    """Time left per active experiment, smoothed across refreshes (an exponential moving average kept in the
    session, counted down between refreshes) so it does not jump; a queued one also waits for the active
    experiments submitted before it, shared among the workers."""
    memory: dict[int, tuple[float, float]] = st.session_state.setdefault("eta_memory", {})
    health, _ = api.health(wait=0)
    workers = max(int(((health or {}).get("workers") or {}).get("count") or 1), 1)
    now, out = time.monotonic(), {}
    for e in exps:
        if e["status"] not in ACTIVE:
            memory.pop(e["id"], None)
            continue
        own = experiment_eta(e)
        if e["status"] == "queued":
            wait = queue_wait(e, exps, workers)
            own = None if wait is None or own is None else own + wait
        new = smooth_eta(memory.get(e["id"]), own, now)
        if new is None:
            memory.pop(e["id"], None)
            out[e["id"]] = None
        else:
            memory[e["id"]] = new
            out[e["id"]] = new[0]
    return out


@st.fragment(run_every=REFRESH_ACTIVE if active else REFRESH_IDLE)
def live_table() -> None:
    """The table and its actions; reruns on its own every few seconds (not the whole page)."""
    try:
        exps, count = api.page("/experiments", skip=(int(page_no) - 1) * PAGE_SIZE, limit=PAGE_SIZE, params=params)
    except ApiError as e:
        show_error(e, "refreshing the experiments")
        return
    try:
        moving = count_active()
    except ApiError:
        moving = active
    if bool(moving) != bool(active):  # something started or everything finished: refresh at the new rate
        st.rerun(scope="app")
    n_active = sum(e["status"] in ACTIVE for e in exps)
    st.caption(f"{count} experiment(s){f', {n_active} active on this page' if n_active else ''} · "
               f"refreshes every {REFRESH_ACTIVE if active else REFRESH_IDLE:g} s · click a row to choose it, "
               "**open ↗** for its page")
    event = st.dataframe(experiments_frame(exps, etas=smoothed_etas(exps)),
                         hide_index=True, column_config=COLUMNS,
                         width="stretch", key="experiments_table", on_select="rerun", selection_mode="single-row")
    if not exps:
        return
    by_id = {e["id"]: e for e in exps}
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows and rows != st.session_state.get("experiments_table_seen") and rows[0] < len(exps):
        st.session_state["experiments_table_seen"] = rows  # a click on a row chooses that experiment
        st.session_state["exp_choice"] = exps[rows[0]]["id"]
    cols = st.columns([4, 1, 1, 1], vertical_alignment="bottom")
    chosen = cols[0].selectbox("Experiment", list(by_id), key="exp_choice",
                               format_func=lambda i: f"#{i} {by_id[i]['name']} ({display_status(by_id[i])})")
    exp = by_id.get(chosen)
    if exp is None:
        return
    if cols[1].button("Open", key="exp_open", type="primary", width="stretch"):
        st.switch_page("app_pages/experiment.py", query_params={"id": str(exp["id"])})
    if cols[2].button("Cancel", key="exp_cancel", disabled=exp["status"] not in ACTIVE, width="stretch",
                      help="Stop it: running stages stop within one training step."):
        try:
            api.post(f"/experiments/{exp['id']}/cancel")
            st.toast(f"Experiment #{exp['id']} cancelled")
            st.rerun()
        except ApiError as e:
            st.error(explain(e, f"cancelling experiment #{exp['id']}"))
    if cols[3].button("Delete", key="exp_delete", width="stretch",
                      help="Remove it with its models and files (asks first)."):
        st.session_state["exp_confirm_delete"] = exp["id"]
    pending = st.session_state.get("exp_confirm_delete")
    if (target := by_id.get(pending)) is not None:
        still = " It is still active: it will be cancelled first." if target["status"] in ACTIVE else ""
        if confirm_delete("exp", pending, f"Delete experiment **#{pending} {target['name']}** ({target['status']}) "
                          f"with its trained models, predictions and report? This cannot be undone.{still}"):
            try:
                api.delete(f"/experiments/{pending}")
                st.toast(f"Experiment #{pending} deleted")
            except ApiError as e:
                st.session_state["exp_delete_error"] = explain(e, f"deleting experiment #{pending}")
            st.rerun()
    if err := st.session_state.pop("exp_delete_error", None):
        st.error(err)


live_table()
