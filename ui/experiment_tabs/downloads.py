"""The Downloads tab: the report, the scores, the predicted masks and the trained models."""

from __future__ import annotations

import json

import streamlit as st

from ui.client import ApiError
from ui.experiment_tabs.view import ExperimentView
from ui.formatting import ACTIVE, fmt, fmt_bytes, method_label
from ui.widgets import show_error


def downloads_tab(view: ExperimentView, results: dict | None) -> None:
    if view.status == "succeeded":
        st.download_button("Report (Markdown)", view.api.downloader(f"/experiments/{view.id}/report"),
                           file_name=f"experiment-{view.id}-report.md", mime="text/markdown", icon=":material/description:")
        if results is not None:
            st.download_button("Scores (JSON)", json.dumps(results, indent=1), file_name=f"experiment-{view.id}-results.json",
                               mime="application/json", icon=":material/data_object:")
        if view.spec.get("save_predictions", True):
            st.download_button("Predicted masks (zip, first seed)",
                               view.api.downloader(f"/experiments/{view.id}/predictions.zip"),
                               file_name=f"experiment-{view.id}-predictions.zip", mime="application/zip", icon=":material/folder_zip:")
    try:
        models = view.api.get_all("/models", {"experiment_id": view.id}, cache="settled" if view.status not in ACTIVE else "live")
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
            view.api.downloader(f"/models/{m['id']}/download"), key=f"model_{m['id']}",
            file_name=f"sikd-exp{view.id}-{m['method']}-seed{m['seed']}.pt", mime="application/octet-stream", icon=":material/neurology:")
