"""Datasets: upload a .zip (the API validates every pair and says exactly what is wrong), list the
datasets with their statistics, look at samples with the mask overlaid and at the class pixel fractions."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from ui.client import ApiError, Client
from ui.datasets_data import duplicates_warning, frames_warning, has_groups
from ui.experiments_data import split_sizes
from ui.formatting import CLASS_COLORS, fmt_bytes, parse_time
from ui.widgets import class_legend, confirm_delete, fail, figure_downloads, picture, show_error

THUMB_ROWS = 3  # rows of thumbnails per page (the columns are chosen on the page)

api = Client()
st.title("Datasets")


def validation_report(d: dict) -> None:
    """What the API found in a dataset: size, classes, image sizes and modes, warnings."""
    stats = d.get("stats") or {}
    c = st.columns(6)
    c[0].metric("Image/mask pairs", d["num_pairs"])
    c[1].metric("Cases", stats.get("cases", "–"))
    c[2].metric("Groups", stats["groups"] if has_groups(stats) else "none",
                help="Cases of one group (a patient, a video) always share a split, so nothing leaks across them.")
    c[3].metric("Classes", d["num_classes"], help=", ".join(d["class_names"]))
    c[4].metric("Channels", d["in_channels"])
    c[5].metric("Size", fmt_bytes(d["size_bytes"]))
    sizes = stats.get("image_sizes") or {}
    modes = stats.get("image_modes") or {}
    st.caption(f"Format **{d['format']}** · masks read as **{stats.get('mask_mode', '?')}** · classes "
               f"{', '.join(d['class_names'])} · image sizes "
               + ", ".join(f"{k} ({v})" for k, v in list(sizes.items())[:6]) + (" …" if len(sizes) > 6 else "")
               + " · " + ", ".join(f"{k}: {v}" for k, v in modes.items() if v)
               + (f" · {stats['volumes']} volumes, {stats['slices']} slices" if stats.get("volumetric") else "")
               + (" · SYNTHETIC" if d.get("synthetic") else ""))
    for w in stats.get("warnings") or []:
        st.warning(w)
    dups = duplicates_warning(d)
    if dups:
        st.warning(dups, icon=":material/content_copy:")
    frames = frames_warning(d)
    if frames:
        st.warning(frames, icon=":material/movie:")


# ------------------------------------------------------------------------------------------ upload
with st.expander("Upload a dataset (.zip)", expanded=st.session_state.get("ds_upload_open", False)):
    st.markdown("A zip of **images/** + **masks/** with matching file names (optionally inside one folder), or an "
                "**nnU-Net** dataset (dataset.json, imagesTr/, labelsTr/). PNG, JPEG, TIFF, BMP and NIfTI are read; "
                "every pair is checked before the dataset is kept.")
    up = st.file_uploader("Dataset archive", type=["zip"], key="ds_file",
                          help="The dashboard takes archives up to its upload limit (Streamlit's "
                               "server.maxUploadSize, 200 MB by default). Larger ones go straight to the API: "
                               f"`curl -H 'Authorization: Bearer <token>' -F file=@data.zip -F name=mydata "
                               f"{api.base}/datasets`")
    name = st.text_input("Name (default: the file name)", key="ds_name", max_chars=200)
    if st.button("Upload and validate", type="primary", disabled=up is None, key="ds_upload"):
        st.session_state["ds_upload_open"] = True
        with st.spinner(f"Uploading {up.name} and checking every pair…"):
            try:
                created = api.post("/datasets", files={"file": (up.name, up.getvalue(), "application/zip")},
                                   data={"name": name.strip()} if name.strip() else None)
                st.session_state["ds_upload_result"] = ("ok", created)
                st.session_state["ds_selected"] = created["id"]
            except ApiError as e:
                st.session_state["ds_upload_result"] = ("error", e)
    result = st.session_state.get("ds_upload_result")
    if result is not None:
        kind, value = result
        if kind == "ok":
            st.success(f"Dataset **#{value['id']} {value['name']}** is valid and was added.", icon=":material/check_circle:")
            validation_report(value)
        else:
            st.error("The dataset was rejected; nothing was kept.", icon=":material/block:")
            show_error(value, "uploading the dataset")

# ------------------------------------------------------------------------------------------ list
try:
    datasets = api.get_all("/datasets")
except ApiError as e:
    fail(e, "listing datasets")

if not datasets:
    st.info("No datasets yet. Upload one above: a .zip of images/ + masks/ (or an nnU-Net dataset). "
            "`sikd serve` also preloads SYNTHETIC phantom datasets unless `SIKD_DEMO_DATA=false`.", icon=":material/folder_open:")
    st.stop()

frame = pd.DataFrame([{
    "ID": d["id"], "Name": d["name"], "Format": d["format"], "Pairs": d["num_pairs"], "Classes": d["num_classes"],
    "Class names": ", ".join(d["class_names"]), "Channels": d["in_channels"], "Size": fmt_bytes(d["size_bytes"]),
    "Shared": d["shared"], "Synthetic": d["synthetic"],
    "Added": (t.strftime("%Y-%m-%d %H:%M") if (t := parse_time(d.get("created_at"))) else ""),
} for d in datasets])
st.dataframe(frame, hide_index=True, width="stretch", key="datasets_table")

by_id = {d["id"]: d for d in datasets}
if st.session_state.get("ds_selected") not in by_id:
    st.session_state["ds_selected"] = datasets[-1]["id"]
chosen = st.selectbox("Dataset", list(by_id), key="ds_selected",
                      format_func=lambda i: f"#{i} {by_id[i]['name']} ({by_id[i]['num_pairs']} pairs)")
try:
    detail = api.get(f"/datasets/{chosen}", cache="settled")
except ApiError as e:
    fail(e, f"loading dataset #{chosen}")

st.subheader(f"#{detail['id']} {detail['name']}")
validation_report(detail)

stats = detail.get("stats") or {}
sizes = split_sizes(int(detail["num_pairs"]), 0.1, 0.2)
st.caption(f"With the default fractions (validation 10 %, test 20 %) an experiment trains on about {sizes['train']} "
           f"pairs, validates on {sizes['val']} and scores intra on {sizes['test']}; splits are drawn by "
           + (f"group ({stats['groups']} groups)" if has_groups(stats) else "case") + ".")

left, right = st.columns([3, 2])
with left:
    n = int(detail["num_pairs"])
    head = st.columns([3, 2, 2])
    head[0].markdown(f"**Image/mask pairs** ({n}; mask filled in its class colours)")
    ncols = head[1].select_slider("Columns", [1, 2, 3, 4, 6], value=3, key="ds_cols",
                                  help="Fewer columns: larger pictures. Pick one below to see it at full size.")
    per_page = THUMB_ROWS * int(ncols)
    pages = max(1, -(-n // per_page))
    page = head[2].number_input(f"Page (of {pages}, {per_page} per page)", 1, pages, 1,
                                key=f"ds_page_{chosen}") if pages > 1 else 1
    page = min(int(page), pages)
    class_legend(detail["class_names"])
    keys = {s["index"]: s["key"] for s in detail.get("samples") or []}
    first = (int(page) - 1) * per_page
    on_page = list(range(first, min(first + per_page, n)))

    def sample_label(i: int) -> str:
        return f"#{i}" + (f" · {keys[i]}" if i in keys else "")

    cols = st.columns(int(ncols))
    for k, index in enumerate(on_page):
        with cols[k % int(ncols)]:
            # one column: the full-size picture (readable in fullscreen), else thumbnails
            picture(api, f"/datasets/{chosen}/samples/{index}.png" + ("?full=true" if ncols == 1 else ""),
                    caption=sample_label(index))
    big = st.selectbox("Full size", on_page, index=None, key=f"ds_full_{chosen}", format_func=sample_label,
                       placeholder="choose a pair on this page to see it at its own resolution")
    if big is not None:
        picture(api, f"/datasets/{chosen}/samples/{big}.png?full=true", caption=f"{sample_label(big)} · full size "
                "(use the picture's fullscreen button to zoom)")
with right:
    classes = stats.get("classes") or []
    if classes:
        cf = pd.DataFrame([{"Class": c["name"], "Pixel fraction": c["pixel_fraction"],
                            "Images with the class": c.get("images_present")} for c in classes])
        colours = {c["name"]: CLASS_COLORS[c.get("index", k) % len(CLASS_COLORS)] if c.get("index", k) else "#9e9e9e"
                   for k, c in enumerate(classes)}
        fig = px.bar(cf, x="Class", y="Pixel fraction", text_auto=".1%", hover_data=["Images with the class"],
                     title="Class pixel fractions", color="Class", color_discrete_map=colours)
        fig.update_layout(height=340, showlegend=False, margin=dict(l=10, r=10, t=40, b=10),
                          yaxis_tickformat=".0%")
        st.plotly_chart(fig, width="stretch", key="class_fractions")
        figure_downloads(fig, f"dataset-{chosen}-class-fractions", key="class_fractions")
        st.caption("Bars in the classes' mask colours (background grey).")

if st.button("Delete this dataset", key="ds_delete"):
    st.session_state["ds_confirm_delete"] = chosen
if confirm_delete("ds", chosen, f"Delete dataset **#{chosen} {detail['name']}** and its files? Experiments that "
                  "use it must be deleted first."):
    try:
        api.delete(f"/datasets/{chosen}")
        st.session_state.pop("ds_selected", None)
        st.rerun()
    except ApiError as e:
        show_error(e, f"deleting dataset #{chosen}")
