"""An experiment's tags and note on its page (shown, and edited by its owner through ``PATCH /experiments/{id}``),
and its "Clone and edit" action (the New experiment form, filled with this experiment's spec)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.client import ApiError, Client
from ui.widgets import explain


def split_tags(text: str) -> list[str]:
    """``"sweep, polyp ,, fig 8"`` -> ``["sweep", "polyp", "fig 8"]`` (the API drops repeats and checks each)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def tags_line(exp: dict[str, Any]) -> str:
    """The tags as badges (markdown), or an empty string."""
    tags = exp.get("tags") or []
    return " ".join(":blue-badge[" + t.replace("[", "(").replace("]", ")") + "]" for t in tags)


def tags_and_note(api: Client, exp: dict[str, Any]) -> None:
    """The tags and the note, and a form that replaces both (errors of the API under the form)."""
    exp_id = exp["id"]
    if exp.get("tags"):
        st.markdown(tags_line(exp))
    if exp.get("note"):
        st.info(exp["note"], icon=":material/sticky_note_2:")
    with st.expander("Tags and note", icon=":material/sell:"):
        with st.form(f"meta_form_{exp_id}", border=False, enter_to_submit=False):
            tags = st.text_input("Tags (comma-separated)", ", ".join(exp.get("tags") or []), key=f"meta_tags_{exp_id}",
                                 help="Short labels to find the experiment again (Experiments: filter by tag); "
                                      "at most 20, each up to 40 characters.")
            note = st.text_area("Note", exp.get("note") or "", key=f"meta_note_{exp_id}", height=90,
                                help="What it was for, what you saw (up to 5000 characters).")
            saved = st.form_submit_button("Save tags and note")
        if saved:
            try:
                api.patch(f"/experiments/{exp_id}", json={"tags": split_tags(tags), "note": note})
            except ApiError as e:
                st.error(explain(e, "saving the tags and note"))
            else:
                st.toast("Tags and note saved")
                st.rerun()


def clone_button(where: Any, exp: dict[str, Any]) -> None:
    """``Clone and edit``: the New experiment form, every field filled from this experiment's spec."""
    if where.button("Clone and edit", key="detail_clone", icon=":material/content_copy:",
                    help="Open New experiment filled with this experiment's settings; edit them, then start."):
        st.switch_page("app_pages/new_experiment.py", query_params={"clone": str(exp["id"])})
