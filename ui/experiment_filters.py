"""The Experiments page's search and filters: one row of widgets whose values become ``GET /experiments``'s query
parameters (the API filters, in SQL, and pages the result)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.client import ApiError, Client
from ui.formatting import method_label

ANY = "any"
HEALTH = {ANY: "any", "healthy": "healthy", "unhealthy": "⚠ unhealthy"}


def filter_params(*, name: str, tags: list[str], dataset: int | str, network: str, method: str,
                  health: str) -> dict[str, Any]:
    """The query parameters of the filters' values (``any`` and empty values filter nothing)."""
    params: dict[str, Any] = {}
    if name.strip():
        params["name"] = name.strip()[:200]
    if tags:
        params["tag"] = list(tags)
    for key, value in (("dataset", dataset), ("network", network), ("method", method), ("health", health)):
        if value != ANY and value is not None:
            params[key] = value
    return params


def filter_bar(api: Client) -> dict[str, Any]:
    """Draw the filters (name, tags, dataset, network, method, health); returns their query parameters."""
    try:
        tags = [t["tag"] for t in api.get("/tags")["data"]]
        datasets = {d["id"]: d["name"] for d in api.get_all("/datasets", cache="settled")}
        options = api.get("/options", cache="settled")
    except ApiError as e:
        st.caption(f"Filters unavailable: {e.message}")
        return {}
    networks = sorted(m["name"] for m in options.get("networks") or [])
    methods = list(options.get("method_names") or [])
    for key, known in (("exp_f_dataset", [ANY, *datasets]), ("exp_f_network", [ANY, *networks]),
                       ("exp_f_method", [ANY, *methods])):
        if st.session_state.get(key, ANY) not in known:  # a choice that went away (a deleted dataset)
            st.session_state[key] = ANY
    if any(t not in tags for t in st.session_state.get("exp_f_tags", [])):
        st.session_state["exp_f_tags"] = [t for t in st.session_state["exp_f_tags"] if t in tags]
    c = st.columns([3, 3, 2, 2, 2, 2])
    name = c[0].text_input("Search names", key="exp_f_name", placeholder="part of a name",
                           help="Experiments whose name holds this text (upper or lower case alike)")
    chosen_tags = c[1].multiselect("Tags", tags, key="exp_f_tags", placeholder="any tag",
                                   help="Experiments carrying every chosen tag (set tags on an experiment's page)")
    dataset = c[2].selectbox("Dataset", [ANY, *datasets], key="exp_f_dataset",
                             format_func=lambda i: i if i == ANY else f"#{i} {datasets[i]}",
                             help="Trained or evaluated on it")
    network = c[3].selectbox("Network", [ANY, *networks], key="exp_f_network")
    method = c[4].selectbox("Method", [ANY, *methods], key="exp_f_method",
                            format_func=lambda m: m if m == ANY else method_label(m))
    health = c[5].selectbox("Health", list(HEALTH), key="exp_f_health", format_func=HEALTH.__getitem__,
                            help="unhealthy: a training-health finding about one of its models")
    return filter_params(name=name, tags=chosen_tags, dataset=dataset, network=network, method=method,
                         health=health)
