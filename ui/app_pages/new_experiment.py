"""New experiment: a form that mirrors ExperimentSpec (defaults from the API: the paper's), validated by
the API; its errors show under the fields they concern. On success the experiment's page opens."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from ui.client import ApiError, Client
from ui.clone import apply_clone, clone_extra
from ui.experiments_data import split_sizes
from ui.formatting import TEACHER_INPUT_LABELS, method_label
from ui.new_experiment_data import estimate_text, field_errors, parse_seeds, plan_choice
from ui.strength import REFERENCE, REFERENCE_WHY
from ui.widgets import explain, fail

LOSS_LABELS = {"dice_ce": "Dice + cross-entropy (standard)", "ce": "cross-entropy (paper)"}

api = Client()
st.title("New experiment")
st.caption("Baseline vs SIKD: the baseline trains on the images; the teacher on class-wise mean images "
           "(shape + intensity); the student is distilled from the teacher's penultimate features. Both are "
           "scored on the training dataset's test split (intra) and on the unseen datasets (cross).")

try:
    options = api.get("/options", cache="settled")
    datasets = api.get_all("/datasets")
except ApiError as e:
    fail(e, "loading the options and datasets")

if not datasets:
    st.info("No datasets yet: upload one on **Datasets** first (a .zip of images/ + masks/, or an nnU-Net dataset).",
            icon=":material/folder_open:")
    st.page_link("app_pages/datasets.py", label="Datasets", icon=":material/folder_open:")
    st.stop()

D: dict[str, Any] = options["spec_defaults"]
by_id = {d["id"]: d for d in datasets}
networks = {m["name"]: m for m in options["networks"]}

apply_clone(api, datasets=list(by_id), networks=list(networks), presets={p["name"]: p for p in options.get("presets", [])},
            method_names=options.get("method_names") or [])  # ?clone=<id>: the form filled with its spec


def ds_label(i: int) -> str:
    d = by_id[i]
    return (f"#{i} {d['name']} · {d['num_pairs']} pairs · {d['num_classes']} classes"
            + (" · SYNTHETIC" if d.get("synthetic") else ""))


# Datasets outside the form, so the cross choices follow the training choice.
st.subheader("Data")
dcols = st.columns(2)
if "ne_train" not in st.session_state:
    st.session_state["ne_train"] = [next(iter(by_id))]
train_ids = dcols[0].multiselect(
    "Training dataset(s)", list(by_id), format_func=lambda i: f"#{i} {by_id[i]['name']}", key="ne_train",
    placeholder="choose one or more datasets",
    help="Trained on their train splits together (several sources: multi-source training, each dataset split on "
         "its own); each one's held-out test split gives an intra score row.")
if train_ids:
    dcols[0].caption(" · ".join(ds_label(i) for i in train_ids))
train_err = dcols[0].empty()
first = train_ids[0] if train_ids else None
same_task = [i for i in by_id if i not in train_ids and first is not None
             and by_id[i]["class_names"] == by_id[first]["class_names"]]
others = [i for i in by_id if i not in train_ids]
if st.session_state.get("ne_cross_for") != train_ids:  # new training sets: default to every dataset of their task
    st.session_state["ne_cross"] = same_task
    st.session_state["ne_cross_for"] = list(train_ids)
cross_ids = dcols[1].multiselect(
    "Unseen (cross) datasets", others, format_func=lambda i: f"#{i} {by_id[i]['name']}", key="ne_cross",
    help="Datasets of the same task never seen in training (cross-dataset generalisation).")
if cross_ids:  # the chips stay short; the details are here
    dcols[1].caption(" · ".join(ds_label(i) for i in cross_ids))
cross_err = dcols[1].empty()
if not train_ids:
    train_err.error("Choose at least one training dataset.")

# The size fields come from the training dataset's plan (GET /datasets/{id}/plan: nnU-Net-like, from its
# fingerprint and the device); the fixed presets stay as alternatives. Outside the form: choosing reruns the page.
presets = {p["name"]: p for p in options.get("presets", [])}
if first is not None:
    try:
        presets = {"plan": plan_choice(api.get(f"/datasets/{first}/plan", {"measure": "false"}, cache="settled")),
                   **presets}
    except ApiError as e:
        st.caption(f"No plan for dataset #{first}: {e.message}")
PRESET_LABELS = {"plan": "Planned for the dataset", "paper": "Paper (GPU)", "quick": "Quick look (CPU)"}
WIDGET_OF = {"network": "ne_network", "epochs": "ne_epochs", "batch_size": "ne_batch", "lr": "ne_lr"}


def apply_preset() -> None:
    for field, value in presets[st.session_state["ne_preset"]]["values"].items():
        if field == "image_size":
            st.session_state["ne_h"], st.session_state["ne_w"] = int(value[0]), int(value[1])
        elif field == "network_kwargs":
            st.session_state["ne_kwargs"] = json.dumps(value)
        elif field in WIDGET_OF:
            st.session_state[WIDGET_OF[field]] = float(value) if field == "lr" else value


if st.session_state.get("ne_preset") not in presets:  # first visit (or the plan went): the plan, else the first
    st.session_state["ne_preset"] = next(iter(presets), None)
    st.session_state.pop("ne_planned_for", None)
if st.session_state.get("ne_preset") == "plan" and st.session_state.get("ne_planned_for") != first:
    apply_preset()  # the plan of the (new) training dataset
    st.session_state["ne_planned_for"] = first
if presets:
    preset = st.radio("Size", list(presets), horizontal=True, key="ne_preset", on_change=apply_preset,
                      format_func=lambda n: PRESET_LABELS.get(n, n),
                      help="Fills network, image size, epochs, batch size and learning rate; edit them after. The plan "
                           "is worked out from the training dataset (sizes, classes, pairs) and the device.")
    st.caption(presets[preset]["description"])
if train_ids and not same_task:
    dcols[1].caption("No other dataset has the same classes as the training dataset.")

with st.form("new_experiment", border=True, enter_to_submit=False):
    slots: dict[str, Any] = {}

    def slot(key: str, where: Any = None) -> None:
        slots[key] = (where or st).empty()

    st.subheader("Network and training")
    c = st.columns(3)
    name = c[0].text_input("Name", value=str(D.get("name", "experiment")), max_chars=200, key="ne_name")
    slot("name", c[0])
    network_names = sorted(networks)
    network = c[1].selectbox("Network", network_names, index=network_names.index(D.get("network", "unet"))
                             if D.get("network", "unet") in network_names else 0, key="ne_network",
                             help="The network the baseline, the teacher and the students train (the paper's U-Net "
                                  "by default); each one is described under **About the networks** below.")
    slot("network", c[1])
    loss = c[2].selectbox("Loss (recipe)", ["dice_ce", "ce"], index=["dice_ce", "ce"].index(D.get("loss", "dice_ce")),
                          format_func=lambda v: LOSS_LABELS[v], key="ne_loss",
                          help="Dice + cross-entropy is the standard recipe's loss: measured to make the baseline as "
                               "strong as an independent nnU-Net-like recipe (bench/recipe_defaults.py). "
                               "Cross-entropy is the SIKD authors' recipe exactly (recipe: paper).")
    slot("loss", c[2])

    c = st.columns(4)
    h0, w0 = D.get("image_size", [256, 256])
    # no bounds in the widgets: a value out of range reaches the API, whose message shows under the field (a
    # bounded widget turned red without a word and the click on Start did nothing)
    height = c[0].number_input("Image height (px)", value=int(h0), step=16, key="ne_h")
    width = c[1].number_input("Image width (px)", value=int(w0), step=16, key="ne_w")
    slot("image_size", c[0])
    epochs = c[2].number_input("Epochs", value=int(D.get("epochs", 50)), key="ne_epochs",
                               help="Of the baseline and the student (the teacher too unless set below).")
    slot("epochs", c[2])
    batch = c[3].number_input("Batch size", value=int(D.get("batch_size", 8)), key="ne_batch")
    slot("batch_size", c[3])

    c = st.columns([1, 1, 2, 1])  # the methods column wide enough for its chips (reference included)
    lr = c[0].number_input("Learning rate", value=float(D.get("lr", 1e-3)),
                           step=1e-4, format="%.5f", key="ne_lr", help="Adam, decayed polynomially (power 0.9).")
    slot("lr", c[0])
    seeds_text = c[1].text_input("Seeds", ", ".join(str(s) for s in D.get("seeds", [0])), key="ne_seeds",
                                 help="Comma-separated; each seed trains every method once (mean ± std over seeds).")
    slot("seeds", c[1])
    method_help = {m["name"]: f"{m['name']}: {m['description']} ({m['reference']})"
                   for m in options["methods"] if isinstance(m, dict)}
    names = options.get("method_names") or [m["name"] if isinstance(m, dict) else m for m in options["methods"]]
    # The reference recipe is selected by default: without it nothing measures the baseline's strength.
    default_methods = list(D.get("methods", ["baseline", "sikd"])) + [REFERENCE]
    methods = c[2].multiselect("Methods", names, default=list(dict.fromkeys(m for m in default_methods if m in names)),
                               format_func=method_label, key="ne_methods",
                               help="X+sikd: X trained and distilled from the class-mean teacher.\n\n"
                                    + "\n\n".join(method_help.values()))
    slot("methods", c[2])
    if REFERENCE in names:
        c[2].caption(REFERENCE_WHY if REFERENCE in methods else "⚠ Without **reference** nothing measures whether "
                     "the baseline is as strong as the field's standard recipe makes it.")
    alpha = c[3].number_input("α (distillation weight)", value=float(D.get("alpha", 2.0)), step=0.5,
                              key="ne_alpha", help="Weight of the feature-distillation MSE (the paper uses 2).")
    slot("alpha", c[3])

    c = st.columns(2)
    teacher_input = c[0].selectbox(
        "Teacher input", options["teacher_inputs"],
        index=options["teacher_inputs"].index(D.get("teacher_input", "class_mean")), key="ne_tin",
        format_func=lambda v: TEACHER_INPUT_LABELS.get(v, v))
    slot("teacher_input", c[0])
    head_init = c[1].selectbox(
        "Student head start", ["teacher", "random"], index=["teacher", "random"].index(D.get("student_head_init",
                                                                                             "teacher")),
        key="ne_head", help="The student's 1x1 head starts as a copy of the frozen teacher's (default; small "
                            "students with a random head collapsed) or random.")
    slot("student_head_init", c[1])

    with st.expander("About the networks"):  # eleven descriptions: too long for a tooltip over the fields
        st.markdown("\n".join(f"- **{n}**: {networks[n]['description']}" for n in network_names))
    with st.expander("Advanced options"):
        a = st.columns(3)
        teacher_epochs = a[0].number_input("Teacher epochs (0 = same as epochs)", value=int(D.get("teacher_epochs") or 0),
                                           key="ne_tepochs")
        slot("teacher_epochs", a[0])
        weight_decay = a[1].number_input("Weight decay", value=float(D.get("weight_decay", 0.0)), step=1e-5,
                                         format="%.6f", key="ne_wd")
        slot("weight_decay", a[1])
        steps = a[2].number_input("Steps per epoch (0 = one pass over the train split)",
                                  value=int(D.get("steps_per_epoch") or 0), key="ne_steps")
        slot("steps_per_epoch", a[2])
        a = st.columns(3)
        val_fraction = a[0].number_input("Validation fraction", value=float(D.get("val_fraction", 0.1)),
                                         step=0.05, key="ne_val")
        slot("val_fraction", a[0])
        test_fraction = a[1].number_input("Test fraction (intra scores)", value=float(D.get("test_fraction", 0.2)),
                                          step=0.05, key="ne_test")
        slot("test_fraction", a[1])
        split_seed = a[2].number_input("Split seed", value=int(D.get("split_seed", 0)), step=1, key="ne_split")
        slot("split_seed", a[2])
        a = st.columns(3)
        mask_mode = a[0].selectbox("Mask mode", ["auto", "label", "binary"],
                                   index=["auto", "label", "binary"].index(D.get("mask_mode", "auto")), key="ne_mask")
        slot("mask_mode", a[0])
        device = a[1].text_input("Device", str(D.get("device", "auto")), key="ne_device",
                                 help="auto, cpu, cuda or cuda:N (of the worker).")
        slot("device", a[1])
        feature_maps = a[2].number_input("Feature-map images per dataset", value=int(D.get("feature_maps", 2)),
                                         key="ne_feat")
        slot("feature_maps", a[2])
        a = st.columns(4)
        augment = a[0].checkbox("Augmentation", bool(D.get("augment", True)), key="ne_aug")
        slot("augment", a[0])
        amp = a[1].checkbox("Mixed precision (CUDA)", bool(D.get("amp", True)), key="ne_amp")
        slot("amp", a[1])
        save_predictions = a[2].checkbox("Keep predictions (overlays)", bool(D.get("save_predictions", True)),
                                         key="ne_save")
        slot("save_predictions", a[2])
        skips = a[3].checkbox("Teacher skip connections", bool(D.get("teacher_skip_connections", False)),
                              key="ne_skips", help="The paper drops the teacher's skip connections; keep them "
                                                   "for the ablation.")
        slot("teacher_skip_connections", a[3])
        augmentation = st.selectbox(
            "Augmentation recipe", ["standard", "nnunet"],
            index=["standard", "nnunet"].index(D.get("augmentation", "standard")), key="ne_augkind",
            help="With Augmentation on, what every method but the reference trains with: standard (flips, rotation "
                 "+-15 deg, scale 0.85-1.15, shifts, mild intensity jitter) or nnunet (the reference recipe's: full "
                 "rotation, scale 0.7-1.4, stronger intensity jitter, Gaussian noise and blur), to compare the "
                 "methods over a baseline augmented as nnU-Net's.")
        slot("augmentation")
        on_unhealthy = st.selectbox(
            "When training turns unhealthy", ["warn", "stop"], index=["warn", "stop"].index(D.get("on_unhealthy", "warn")),
            key="ne_unhealthy", help="Collapsed predictions, validation Dice stuck at 0, an exploding loss or a teacher "
                                     "that did not learn: warn records them (a banner on the experiment), stop fails "
                                     "the stage at the first one.")
        slot("on_unhealthy")
        reuse = st.checkbox("Reuse identical finished stages", bool(D.get("reuse", True)), key="ne_reuse",
                            help="A baseline, teacher or student identical to one you already trained (same data "
                                 "content, split, seed, network and the settings that reach it) is reused instead "
                                 "of trained again, and says so; clear it to retrain every stage.")
        slot("reuse")
        kwargs_text = st.text_area(
            "Network arguments (JSON)", json.dumps(D.get("network_kwargs") or {}), key="ne_kwargs", height=68,
            help='Extra arguments of the network, e.g. {"widths": [16, 32, 64, 128]} for a smaller U-Net.')
        slot("network_kwargs")

    general = st.empty()
    plan_slot = st.empty()
    submitted = st.form_submit_button("Start experiment", type="primary")


def form_body() -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The spec the form holds, and the errors found before sending (seeds, JSON, no training dataset)."""
    local: dict[str, list[str]] = {}
    seeds: list[int] = []
    network_kwargs: Any = {}
    try:
        seeds = parse_seeds(seeds_text)
    except ValueError as e:
        local["seeds"] = [str(e)]
    try:
        network_kwargs = json.loads(kwargs_text or "{}")
        if not isinstance(network_kwargs, dict):
            raise ValueError("give a JSON object, e.g. {\"widths\": [16, 32, 64, 128]}")
    except ValueError as e:
        local["network_kwargs"] = [f"not valid JSON: {e}"]
    if not train_ids:
        local["train_dataset"] = ["choose at least one training dataset"]
    body = {
        **clone_extra(),  # a cloned spec's settings the form has no field for
        "name": name, "train_dataset": [str(i) for i in train_ids] if len(train_ids) > 1 else
        str(train_ids[0]) if train_ids else "", "eval_datasets": [str(i) for i in cross_ids], "network": network,
        "network_kwargs": network_kwargs, "image_size": [int(height), int(width)], "epochs": int(epochs),
        "teacher_epochs": int(teacher_epochs) or None, "batch_size": int(batch), "lr": float(lr),
        "weight_decay": float(weight_decay), "seeds": seeds, "methods": methods, "alpha": float(alpha),
        "teacher_input": teacher_input, "teacher_skip_connections": bool(skips), "loss": loss,
        "recipe": "paper" if loss == "ce" else "standard",
        "student_head_init": head_init,
        "augment": bool(augment), "augmentation": augmentation if augment else "standard",
        "val_fraction": float(val_fraction), "test_fraction": float(test_fraction),
        "split_seed": int(split_seed), "mask_mode": mask_mode, "steps_per_epoch": int(steps) or None,
        "device": device, "amp": bool(amp), "save_predictions": bool(save_predictions),
        "feature_maps": int(feature_maps), "on_unhealthy": on_unhealthy, "reuse": bool(reuse),
    }
    return body, local


def show_plan(body: dict[str, Any], local: dict[str, list[str]]) -> None:
    """Split sizes, and the API's stage plan and estimated run time (POST /experiments/estimate: measured on the
    workers), for the form's values as last applied (they update when the form is submitted or a field outside
    it changes)."""
    if not train_ids:
        plan_slot.caption("Choose a training dataset to see the split sizes and the estimated run time.")
        return
    per = {i: split_sizes(int(by_id[i]["num_pairs"]), float(val_fraction), float(test_fraction)) for i in train_ids}
    sizes = {k: sum(p[k] for p in per.values()) for k in ("train", "val", "test")}
    n = sum(int(by_id[i]["num_pairs"]) for i in train_ids)
    names = " + ".join(by_id[i]["name"] for i in train_ids)
    cross_n = sum(int(by_id[i]["num_pairs"]) for i in cross_ids)
    text = (f"**Splits** of {names} ({n} pairs): about {sizes['train']} train · {sizes['val']} "
            f"validation · {sizes['test']} test (grouped by case, so the real counts can differ a little)"
            + (" — each source is split on its own (" + "; ".join(
                f"{by_id[i]['name']}: {p['train']} · {p['val']} · {p['test']}" for i, p in per.items())
               + ") and each one's test split is an intra row" if len(train_ids) > 1 else "")
            + (f"; cross: {cross_n} images in {len(cross_ids)} dataset(s)." if cross_ids else "."))
    if local:
        text += "  \n**Estimated run time:** fix the fields marked to see it."
    else:
        try:
            text += "  \n" + estimate_text(api.query("/experiments/estimate", json=body))
        except ApiError as e:
            text += ("  \n**Estimated run time:** fix the fields marked to see it." if e.status == 422
                     else f"  \n**Estimated run time:** unknown ({e.message}).")
    plan_slot.info(text, icon=":material/schedule:")


body, local = form_body()
show_plan(body, local)

if submitted:
    if local:
        for key, msgs in local.items():
            (train_err if key == "train_dataset" else slots[key]).error("; ".join(msgs))
        general.error("Fix the fields marked above.")
        st.stop()
    try:
        created = api.post("/experiments", json=body)
    except ApiError as e:
        if e.status == 422:
            fields, other = field_errors(e.body, e.detail)
            for key, msgs in fields.items():
                target = {"train_dataset": train_err, "eval_datasets": cross_err}.get(key) or slots.get(key)
                if target is None:
                    other.append(f"{key}: {'; '.join(msgs)}")
                else:
                    target.error("; ".join(msgs))
            general.error("The API did not accept the experiment" + (": " + " · ".join(other) if other else
                                                                      " (see the fields marked above)."))
        else:
            general.error(explain(e, "starting the experiment"))
    else:
        st.switch_page("app_pages/experiment.py", query_params={"id": str(created["id"])})
