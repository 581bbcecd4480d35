"""Reading what an AppTest rendered."""

from __future__ import annotations

from typing import Any


def texts(at: Any, kind: str) -> list[str]:
    """The text of every element of ``kind`` (error, warning, info, success, markdown, caption, ...)."""
    return [str(e.value) for e in getattr(at, kind)]


def all_text(at: Any) -> str:
    out = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success"):
        out += texts(at, kind)
    return "\n".join(out)


def record_requests(monkeypatch: Any, *, with_method: bool = False, ignore: tuple[str, ...] = ()) -> list[str]:
    """From now on, every API request the dashboard makes (through ``ui.client._request``), in order: its path,
    or ``"METHOD path"`` with ``with_method``; paths in ``ignore`` are left out. Returns the growing list."""
    from ui import client

    seen: list[str] = []
    real = client._request

    def recording(method: str, base: str, token: str | None, path: str, **kw: Any) -> Any:
        if path not in ignore:
            seen.append(f"{method} {path}" if with_method else path)
        return real(method, base, token, path, **kw)

    monkeypatch.setattr(client, "_request", recording)
    return seen


def no_exceptions(at: Any) -> None:
    assert not at.exception, "the page raised: " + "\n".join(str(e.value) + "\n" + "\n".join(e.stack)
                                                            for e in at.exception)


def _decode(v: Any) -> Any:
    """Plotly 6 sends numeric arrays as ``{dtype, bdata}`` (base64 typed arrays): back to a list."""
    if isinstance(v, dict) and "bdata" in v and "dtype" in v:
        import base64

        import numpy as np

        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            arr = arr.reshape([int(s) for s in str(v["shape"]).split(",")])
        return arr.tolist()
    return v


def plotly_traces(at: Any, key: str) -> list[dict[str, Any]]:
    """The traces of the plotly chart with ``key``, with their arrays decoded."""
    import json

    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if chart.proto.id.endswith(f"-{key}"):
            return [{k: _decode(v) for k, v in t.items()} for t in spec["data"]]
    raise AssertionError(f"no plotly chart with key {key!r}; ids: {[c.proto.id for c in at.get('plotly_chart')]}")


def click_row(at: Any, key: str, row: int) -> Any:
    """Run the app as after a click on row ``row`` of the table ``key`` (an ``st.dataframe`` with
    ``on_select="rerun"``). AppTest cannot select table rows, so the run sends the selection state a browser
    sends for that click (JSON in the table's widget state)."""
    import json

    from streamlit.testing.v1 import element_tree as et

    [table] = [d for d in at.dataframe if d.key == key]
    real = et.ElementTree.get_widget_states

    def with_selection(self: Any) -> Any:
        states = real(self)
        state = states.widgets.add()
        state.id = table.proto.id
        state.string_value = json.dumps({"selection": {"rows": [row], "columns": [], "cells": []}})
        return states

    et.ElementTree.get_widget_states = with_selection
    try:
        return at.run()
    finally:
        et.ElementTree.get_widget_states = real
