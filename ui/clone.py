""""Clone and edit": the New experiment form filled with an existing experiment's spec (``?clone=<id>``).

:func:`form_state` maps a spec onto the form's widget keys (a pure function, so the mapping is tested field by
field); :func:`apply_clone` writes it into the session once per cloned experiment, before the form is drawn.
Settings the form has no field for are carried over unchanged (``ne_clone_extra``) and named above the form.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from ui.client import ApiError, Client
from ui.formatting import train_ids

#: Spec field -> the form's widget key (image_size, the datasets and the extras are handled on their own).
WIDGETS = {
    "network": "ne_network", "loss": "ne_loss", "epochs": "ne_epochs", "batch_size": "ne_batch", "lr": "ne_lr",
    "alpha": "ne_alpha", "teacher_input": "ne_tin", "student_head_init": "ne_head", "teacher_epochs": "ne_tepochs",
    "weight_decay": "ne_wd", "steps_per_epoch": "ne_steps", "val_fraction": "ne_val", "test_fraction": "ne_test",
    "split_seed": "ne_split", "mask_mode": "ne_mask", "device": "ne_device", "feature_maps": "ne_feat",
    "augment": "ne_aug", "augmentation": "ne_augkind", "amp": "ne_amp", "save_predictions": "ne_save",
    "teacher_skip_connections": "ne_skips", "on_unhealthy": "ne_unhealthy", "reuse": "ne_reuse",
}
#: Fields the form sets itself (the name, datasets, sizes, seeds, methods, network arguments; recipe follows loss).
OWN = {"name", "train_dataset", "eval_datasets", "image_size", "seeds", "methods", "network_kwargs", "recipe"}
_FLOAT = {"lr", "alpha", "weight_decay", "val_fraction", "test_fraction"}
_INT = {"epochs", "batch_size", "teacher_epochs", "steps_per_epoch", "split_seed", "feature_maps"}


def clone_name(name: str) -> str:
    return (name[:192] + " (clone)") if not name.endswith(" (clone)") else name


def form_state(spec: dict[str, Any], *, datasets: list[int], method_names: list[str],
               networks: list[str]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """``(widget values by key, spec fields the form has no widget for, notes)`` for the form filled with
    ``spec``. ``datasets``: the ids the user may choose; ``method_names``/``networks``: what the API offers."""
    state: dict[str, Any] = {"ne_name": clone_name(str(spec.get("name") or "experiment"))}
    notes: list[str] = []
    train = [int(i) for i in train_ids(spec) if str(i).isdigit()]
    cross = [int(i) for i in spec.get("eval_datasets") or [] if str(i).isdigit()]
    gone = [i for i in [*train, *cross] if i not in datasets]
    if gone:
        notes.append("dataset(s) " + ", ".join(f"#{i}" for i in gone) + " no longer exist (or are not yours): "
                     "choose others")
    state["ne_train"] = [i for i in train if i in datasets]
    state["ne_cross"] = [i for i in cross if i in datasets and i not in train]
    state["ne_cross_for"] = list(state["ne_train"])  # the form keeps these cross choices for these training sets
    size = spec.get("image_size") or [256, 256]
    h, w = ([size, size] if isinstance(size, int) else list(size) * 2)[:2]  # a stored spec has [h, w]
    state["ne_h"], state["ne_w"] = int(h), int(w)
    state["ne_seeds"] = ", ".join(str(s) for s in spec.get("seeds") or [0])
    methods = list(spec.get("methods") or [])
    unknown = [m for m in methods if m not in method_names]
    if unknown:
        notes.append("method(s) " + ", ".join(unknown) + " are not offered any more: left out")
    state["ne_methods"] = [m for m in methods if m in method_names]
    state["ne_kwargs"] = json.dumps(spec.get("network_kwargs") or {})
    for field, key in WIDGETS.items():
        if field not in spec:
            continue
        v = spec[field]
        if field in _FLOAT:
            v = float(v)
        elif field in _INT:
            v = int(v or 0)  # teacher_epochs / steps_per_epoch: None is the form's 0
        elif field in ("augment", "amp", "save_predictions", "teacher_skip_connections", "reuse"):
            v = bool(v)
        state[key] = v
    if state.get("ne_network") not in networks:
        notes.append(f"network {spec.get('network')!r} is not installed any more: choose another")
        state.pop("ne_network", None)
    derived = "paper" if spec.get("loss") == "ce" else "standard"
    if spec.get("recipe") and spec["recipe"] != derived:
        notes.append(f"its recipe was {spec['recipe']!r}; the form sets {derived!r} for loss {spec.get('loss')!r}")
    extra = {k: v for k, v in spec.items() if k not in OWN and k not in WIDGETS}
    return state, extra, notes


def apply_clone(api: Client, *, datasets: list[int], method_names: list[str], networks: list[str],
                presets: dict[str, dict[str, Any]]) -> None:
    """With ``?clone=<id>``: fill the form from that experiment's spec (once per id, so the user's edits stay),
    and say so above the form."""
    raw = str(st.query_params.get("clone") or "").strip()
    if not raw:
        return
    if not raw.isdigit():
        st.warning(f"`clone={raw[:40]}` in the address is not an experiment id: the form starts empty.")
        return
    exp_id = int(raw)
    if st.session_state.get("ne_cloned_from") != exp_id:
        try:
            exp = api.get(f"/experiments/{exp_id}", cache="none")
        except ApiError as e:
            st.warning(f"Cannot clone experiment #{exp_id}: {e.message}")
            return
        state, extra, notes = form_state(exp["spec"], datasets=datasets, method_names=method_names, networks=networks)
        st.session_state.update(state)
        fitting = [n for n, p in presets.items() if all(exp["spec"].get(k) == v for k, v in p["values"].items())]
        st.session_state["ne_preset"] = fitting[0] if fitting else next(iter(presets), None)
        st.session_state["ne_clone_extra"] = extra
        st.session_state["ne_clone_notes"] = notes
        st.session_state["ne_cloned_from"] = exp_id
        st.session_state["ne_clone_name"] = exp["name"]
    extra = st.session_state.get("ne_clone_extra") or {}
    st.info(f"Filled from experiment **#{exp_id} {st.session_state.get('ne_clone_name', '')}**: edit what should "
            "differ, then start it as a new experiment."
            + ("\n\nCarried over unchanged (not on this form): " + ", ".join(f"`{k}`" for k in extra) if extra else "")
            + "".join(f"\n\n⚠ {n}" for n in st.session_state.get("ne_clone_notes") or []),
            icon=":material/content_copy:")


def clone_extra() -> dict[str, Any]:
    """The cloned spec's settings the form has no field for (sent unchanged with the new experiment)."""
    return dict(st.session_state.get("ne_clone_extra") or {}) if st.query_params.get("clone") else {}
