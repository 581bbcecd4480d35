"""The Feature maps tab: channel-averaged penultimate feature maps (the paper's Fig. 7)."""

from __future__ import annotations

import streamlit as st

from ui.client import ApiError
from ui.experiment_tabs.view import ExperimentView
from ui.formatting import method_label
from ui.widgets import picture, show_error

#: The anchors of matplotlib's viridis (the API's feature maps use it), for the colour bar.
VIRIDIS_STOPS = ("#440154", "#482878", "#3e4a89", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6dcd59", "#b4de2c",
                 "#fde725")


def features_tab(view: ExperimentView) -> None:
    try:
        items = view.api.get(f"/experiments/{view.id}/features", cache="settled")["data"]
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
    picture(view.api, f["url"])
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
