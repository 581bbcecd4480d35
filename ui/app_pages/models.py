"""Models: every trained model with its experiment, method, seed, intra/cross Dice and health; downloads
(PyTorch bundle, ONNX export bundle, model card) and a try-it box that segments uploaded images."""

from __future__ import annotations

import base64

import streamlit as st

from ui.client import ApiError, Client
from ui.formatting import fmt
from ui.health import card_health_markdown
from ui.models_data import models_frame, seg_summary
from ui.widgets import fail, show_error

api = Client()
st.title("Models")
st.caption("The trained networks (every baseline and SIKD student). The student is what SIKD gives you: "
           "same network, same inference cost. Export it for ONNX Runtime with its preprocessing included.")

try:
    models = api.get_all("/models")
    experiments = {e["id"]: e for e in api.get_all("/experiments")}
except ApiError as e:
    fail(e, "listing the models")
if not models:
    st.info("No trained models yet: they appear here when an experiment's baseline or student stage has "
            "finished.", icon=":material/neurology:")
    st.page_link("app_pages/new_experiment.py", label="New experiment", icon=":material/add_circle:")
    st.stop()

results = {}
for eid in sorted({m["experiment_id"] for m in models}):
    if experiments.get(eid, {}).get("status") == "succeeded":
        try:
            results[eid] = api.get(f"/experiments/{eid}/results", cache="settled")
        except ApiError as e:
            show_error(e, f"loading the scores of experiment #{eid}")

frame = models_frame(models, experiments, results)
st.dataframe(frame, key="models_table", width="stretch", column_config={
    "health": st.column_config.TextColumn("health", help="Training-health findings of the model (a student's "
                                          "include its teacher's); the same as the experiment page's banners"),
    "experiment": st.column_config.LinkColumn("experiment", display_text=r"experiment\?id=(\d+)",
                                              help="Open the experiment"),
    "intra Dice": st.column_config.NumberColumn(format="%.3f", help="Test split of the training dataset"),
    "cross Dice": st.column_config.NumberColumn(format="%.3f", help="Mean over the unseen datasets"),
})

by_id = {m["id"]: m for m in models}
chosen = st.selectbox("Model", list(by_id), key="models_pick",
                      format_func=lambda i: f"#{i} {by_id[i]['name']}")
m = by_id[chosen]
st.subheader(m["name"])
cols = st.columns(4)
cols[0].download_button("PyTorch (model.pt)", api.downloader(f"/models/{chosen}/download"), key="models_dl_pt",
                        file_name=f"sikd-model-{chosen}.pt", mime="application/octet-stream",
                        icon=":material/neurology:", help="For `sikd predict` and `sikd_core.inference`")
cols[1].download_button("ONNX bundle (zip)", api.downloader(f"/models/{chosen}/export?format=onnx"),
                        key="models_dl_onnx", file_name=f"sikd-model-{chosen}-onnx.zip", mime="application/zip",
                        icon=":material/deployed_code:",
                        help="model.onnx + recipe.json + predict.py (onnxruntime, numpy, Pillow) + model card; "
                             "built on the first download")
cols[2].download_button("Model card (Markdown)", api.downloader(f"/models/{chosen}/card?format=md"),
                        key="models_dl_card", file_name=f"sikd-model-{chosen}-card.md", mime="text/markdown",
                        icon=":material/description:")
cols[3].download_button("Model card (JSON)", api.downloader(f"/models/{chosen}/card"), key="models_dl_card_json",
                        file_name=f"sikd-model-{chosen}-card.json", mime="application/json",
                        icon=":material/data_object:")

try:
    card = api.model_card(chosen)
except ApiError as e:
    show_error(e, "loading the model card")
else:
    with st.expander("Model card", icon=":material/description:"):
        if card.get("research_only"):
            st.warning("Research only: trained on data whose terms forbid commercial use.", icon=":material/gavel:")
        st.markdown("**Data:** " + "; ".join(f"{d['name']} ({d['role']}, {d.get('n_pairs')} pairs, "
                                             f"`{(d.get('content_hash') or '-')[:19]}`): {d.get('terms')}"
                                             for d in card["datasets"]))
        for s in card["scores"]:
            ci = s.get("dice_ci")
            st.markdown(f"- {s['dataset']} ({s['split']}, {s['n_cases']} cases): Dice {fmt(s.get('dice'))}"
                        + (f" [95% CI {fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""))
        st.markdown(card_health_markdown(card))
        st.markdown("**Intended use:** " + card["intended_use"])
        st.markdown("**Limits:**\n" + "\n".join(f"- {x}" for x in card["limitations"]))

st.subheader("Try it")
files = st.file_uploader("Images to segment (PNG, JPEG, TIFF, BMP), or a DICOM series (one .zip of its files, or "
                         "its .dcm files): the answer is then a DICOM SEG that references it", accept_multiple_files=True,
                         key="models_try", type=["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif", "dcm", "zip"])
if files and any(f.name.lower().endswith((".dcm", ".zip")) for f in files):
    try:
        seg, seg_name, slices = api.predict_series(
            chosen, [(f.name, f.getvalue(), f.type or "application/octet-stream") for f in files])
    except ApiError as e:
        show_error(e, "segmenting the DICOM series")
    else:
        st.success(seg_summary(seg, slices), icon=":material/radiology:")
        st.download_button("DICOM SEG (.dcm)", seg, file_name=seg_name, mime="application/dicom",
                           key="models_try_seg", icon=":material/download:")
elif files:
    try:
        pred = api.predict(chosen, [(f.name, f.getvalue(), f.type or "application/octet-stream") for f in files])
    except ApiError as e:
        show_error(e, "segmenting the images")
    else:
        for p in pred:
            fg = ", ".join(f"{k} {v:.1%}" for k, v in p["class_fractions"].items() if k != "background")
            st.image(base64.b64decode(p["overlay_png"]), caption=f"{p['filename']}: {fg}", width=min(512, p["width"]))
