"""Charts' colours and their PNG/SVG export.

One colour per method on every chart (curves, timeline, distributions, generalisation bars, Compare): the
palette below is the only place colours of methods are chosen; a method it does not name gets a stable colour
of its own (the same name, the same colour) from a reserve that no named method uses.

Export: Streamlit makes its own template plotly's default, and that template has no automatic margins, so a
figure rendered outside the browser cut its long row labels ("a)" for "... (intra)") and its ticks ("8" for
"0.8"). :func:`for_export` renders with plotly's white template and automatic margins on every axis; kaleido's
headless Chromium is started once per process and kept (a cold start costs seconds, a render then a fraction of
one), and each figure is rendered once (cached by its content).
"""

from __future__ import annotations

import hashlib
import threading
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

#: The colour of each method's model, the same on every chart.
METHOD_COLOURS = {
    "baseline": "#e45756",
    "sikd": "#4c78a8",
    "sdm": "#f58518",
    "gin": "#54a24b",
    "gin+sikd": "#b279a2",
    "maxstyle": "#9d755d",
    "maxstyle+sikd": "#bcbd22",
    "reference": "#222222",
}
#: Things on charts that are not methods' models: the teacher's curves and timeline bars, the evaluation
#: stage, and the student's two loss terms.
OTHER_COLOURS = {
    "teacher": "#72b7b2",
    "evaluation": "#9e9e9e",
    "segmentation loss": "#ff9da6",
    "distillation loss": "#17becf",
}
#: Colours for methods the palette does not name, chosen by a hash of the name.
RESERVE = ("#e377c2", "#1f3a93", "#8cd17d", "#d37295", "#499894", "#a0cbe8", "#ffbe7d", "#79706e", "#6b3e9a",
           "#ad8b00", "#00a087", "#c0392b")
#: Which method's colour a training stage's curves and bars take.
STAGE_METHODS = {"student": "sikd"}


def method_colour(method: str) -> str:
    """The colour of ``method``: the palette's, else a stable one from :data:`RESERVE`."""
    key = str(method).lower()
    if key in METHOD_COLOURS:
        return METHOD_COLOURS[key]
    return RESERVE[zlib.crc32(key.encode()) % len(RESERVE)]


def method_colours(methods: Iterable[str]) -> dict[str, str]:
    """Colours of the methods shown together on one chart: the palette's, and for unknown names their stable
    colour, moved on along the reserve when another method of the chart already has it (so they stay distinct)."""
    out: dict[str, str] = {}
    for m in dict.fromkeys(methods):
        colour = method_colour(m)
        if str(m).lower() not in METHOD_COLOURS:
            start = RESERVE.index(colour)
            for k in range(len(RESERVE)):
                colour = RESERVE[(start + k) % len(RESERVE)]
                if colour not in out.values():
                    break
        out[m] = colour
    return out


def stage_colour(kind: str) -> str:
    """The colour of a training stage's curves: its method's (``student`` is SIKD's), the teacher's, or the
    evaluation's."""
    if kind in OTHER_COLOURS:
        return OTHER_COLOURS[kind]
    return method_colour(STAGE_METHODS.get(kind, kind))


# ------------------------------------------------------------------------------------------ export
EXPORT_WIDTH = 1200
_lock = threading.Lock()
_cache: OrderedDict[str, bytes] = OrderedDict()
_CACHE_SIZE = 64
_warm = threading.Event()


def for_export(fig: Any) -> Any:
    """A copy of ``fig`` laid out for a file: plotly's white template and automatic margins on every axis (long
    row labels, ticks and axis titles are kept inside the picture and apart)."""
    import plotly.graph_objects as go

    out = go.Figure(fig)
    out.update_layout(template="plotly_white")
    out.update_xaxes(automargin=True, title_standoff=12)
    out.update_yaxes(automargin=True, title_standoff=12)
    m = out.layout.margin
    out.update_layout(margin=dict(l=max(m.l or 0, 20), r=max(m.r or 0, 30), t=max(m.t or 0, 50),
                                  b=max(m.b or 0, 20)))
    return out


def _size(fig: Any) -> tuple[int, int]:
    return EXPORT_WIDTH, max(int(fig.layout.height or 450), 300)


def render(fig: Any, fmt: str) -> bytes:
    """``fig`` as PNG (2x) or SVG bytes, laid out by :func:`for_export`; cached by the figure's content."""
    import kaleido

    out = for_export(fig)
    width, height = _size(out)
    key = hashlib.sha256(f"{fmt}|{width}|{height}|".encode() + out.to_json().encode()).hexdigest()
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    with _lock:  # kaleido's server answers one request at a time, in order
        for attempt in range(3):
            try:
                kaleido.start_sync_server(silence_warnings=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "kopts is ignored if using a server"
                    data = out.to_image(format=fmt, width=width, height=height, scale=2 if fmt == "png" else 1)
                break
            except Exception as e:  # noqa: BLE001 - kaleido's error types vary between its versions
                # A browser that died or was asked too early ("kaleido_scopes is not defined"): start a fresh one.
                kaleido.stop_sync_server(silence_warnings=True)
                if attempt == 2 or not (type(e).__module__.startswith(("kaleido", "choreographer"))
                                        or "kaleido" in str(e).lower()):
                    raise
        _warm.set()
    _cache[key] = data
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return data


def warm_up() -> None:
    """Start kaleido's browser in the background (once per process), so the first download does not wait for it."""
    if _warm.is_set() or not _lock.acquire(blocking=False):
        return
    _lock.release()

    def run() -> None:
        import plotly.graph_objects as go

        try:
            render(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), "svg")
        except Exception:  # noqa: BLE001 - a download will show the real error
            pass

    threading.Thread(target=run, name="kaleido-warm-up", daemon=True).start()
    _warm.set()
