"""Figures for papers: the charts the experiment page draws, exported to SVG by the download path, read back:
every row label, tick and title is there whole, inside the picture, and no axis title lies on its ticks; one
colour per method on every chart; a download renders in well under 2 s.

Streamlit makes its own plotly template the default (it has no automatic margins); these tests import
Streamlit first, as the dashboard does, so they export what a user downloads. kaleido drives the system's
Chromium (nothing is downloaded)."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET

import pytest
import streamlit.elements.plotly_chart  # noqa: F401 - sets plotly's default template, as in the dashboard

from ui.experiment_tabs.progress import curves
from ui.experiment_tabs.scores import forest_figure
from ui.figures import METHOD_COLOURS, OTHER_COLOURS, RESERVE, method_colour, method_colours, render, warm_up

pytestmark = pytest.mark.timeout(180)

SVG = "{http://www.w3.org/2000/svg}"
#: Lower bound of a character's width in plotly's font (Open Sans), in font sizes: a box this narrow that still
#: leaves the picture was surely cut.
CHAR_WIDTH = 0.45


def text_boxes(svg: bytes) -> tuple[float, float, list[dict]]:
    """(width, height, boxes) of every non-empty <text> of an SVG: its string, class and an estimated box
    ``(left, top, right, bottom)`` in picture coordinates (translations of the element and its groups applied,
    -90 degree rotations turn the box)."""
    root = ET.fromstring(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    out: list[dict] = []

    def walk(node: ET.Element, dx: float, dy: float, cls: str) -> None:
        tr = node.get("transform") or ""
        m = re.search(r"translate\(([-\d.e]+)[ ,]*([-\d.e]+)?\)", tr)
        if m:
            dx, dy = dx + float(m.group(1)), dy + float(m.group(2) or 0)
        cls = node.get("class") or cls
        if node.tag == f"{SVG}text":
            s = "".join(node.itertext())
            if s.strip():
                style = node.get("style") or ""
                size = float(re.search(r"font-size:\s*([\d.]+)px", style).group(1))
                x, y = dx + float(node.get("x") or 0), dy + float(node.get("y") or 0)
                w = CHAR_WIDTH * size * len(s)
                anchor = node.get("text-anchor") or "start"
                if "rotate(-90" in tr:  # reads bottom to top, centred on (x, y)
                    box = (x - size, y - w / 2, x, y + w / 2)
                else:
                    left = x - w if anchor == "end" else x - w / 2 if anchor == "middle" else x
                    box = (left, y - 0.8 * size, left + w, y + 0.2 * size)
                out.append({"text": s, "class": cls, "box": box})
            return
        for child in node:
            walk(child, dx, dy, cls)

    walk(root, 0.0, 0.0, "")
    return width, height, out


def assert_whole(svg: bytes, want: list[str]) -> list[dict]:
    width, height, boxes = text_boxes(svg)
    texts = [b["text"] for b in boxes]
    missing = [w for w in want if w not in texts]
    assert not missing, f"labels missing or not whole: {missing}; found {texts}"
    outside = [(b["text"], [round(v) for v in b["box"]]) for b in boxes
               if b["box"][0] < -0.5 or b["box"][1] < -0.5 or b["box"][2] > width + 0.5 or b["box"][3] > height + 0.5]
    assert not outside, f"cut at the picture's edge ({width:g} x {height:g}): {outside}"
    ticks = [b for b in boxes if "tick" in b["class"]]
    for title in (b for b in boxes if b["class"] in ("xtitle", "ytitle") or b["class"].startswith(("xtitle", "ytitle"))):
        l1, t1, r1, b1 = title["box"]
        hit = [t["text"] for t in ticks if t["box"][0] < r1 and l1 < t["box"][2] and t["box"][1] < b1 and t1 < t["box"][3]]
        assert not hit, f"axis title {title['text']!r} overlaps ticks {hit}"
    return boxes


def comparison(a: str, b: str, dataset: str, split: str, d: float) -> dict:
    return {"method": a, "reference": b, "dataset": dataset, "split": split, "n_cases": 30,
            "dice": {"mean_diff": d, "ci_low": d - 0.03, "ci_high": d + 0.02, "p_value": 0.01}}


def test_forest_plot_exports_every_row_label_whole():
    comps = [comparison("sikd", "baseline", "kvasir-seg", "intra", 0.04),
             comparison("sikd", "baseline", "cvc-clinicdb", "cross", -0.02),
             comparison("maxstyle+sikd", "maxstyle", "cvc-clinicdb", "cross", 0.01),
             comparison("gin+sikd", "gin", "kvasir-seg", "intra", 0.0)]
    fig = forest_figure(comps, {})
    rows = ["SIKD − Baseline · kvasir-seg (intra)", "SIKD − Baseline · cvc-clinicdb (cross)",
            "MaxStyle+SIKD − MaxStyle · cvc-clinicdb (cross)", "GIN+SIKD − GIN · kvasir-seg (intra)"]
    boxes = assert_whole(render(fig, "svg"), [*rows, "method − reference Dice"])
    assert {b["text"] for b in boxes if "tick" in b["class"]} >= {"0", "0.02"}


def test_training_curves_export_whole_ticks_and_titles():
    def stage(kind: str, seed: int, kd: bool) -> dict:
        return {"kind": kind, "seed": seed, "epochs": [
            {"epoch": e, "loss": 1.0 / e, "seg_loss": 0.6 / e if kd else None, "kd_loss": 0.4 / e if kd else None,
             "val_dice": 0.1 * e} for e in range(1, 9)]}

    metrics = {"data": [stage("baseline", 0, False), stage("teacher", 0, False), stage("student", 0, True),
                        stage("gin+sikd", 0, True), stage("sdm", 0, False)]}
    fig = curves(metrics)
    boxes = assert_whole(render(fig, "svg"), ["0.8", "0.6", "epoch", "Training loss",
                                              "Validation Dice (mean over classes)"])
    assert [b["text"] for b in boxes].count("0.8") >= 1
    # one colour per method: the curves of different stages never share one, nor with the loss terms
    colours = {}
    for t in fig.data:
        if t.showlegend is not False:
            colours.setdefault(t.line.color, set()).add(t.name)
    assert all(len(names) == 1 for names in colours.values()), colours


def test_one_colour_per_method_everywhere():
    methods = ["baseline", "sikd", "sdm", "gin", "gin+sikd", "maxstyle", "maxstyle+sikd", "reference"]
    named = [METHOD_COLOURS[m] for m in methods]
    assert len(set(named)) == len(named)
    assert not set(named) & set(OTHER_COLOURS.values()) and len(set(OTHER_COLOURS.values())) == len(OTHER_COLOURS)
    assert not set(named) & set(RESERVE)
    # unknown names: stable (the same name, the same colour), and distinct on one chart
    assert method_colour("nnunet") == method_colour("nnunet") and method_colour("nnunet") in RESERVE
    chart = method_colours([*methods, "a", "b", "c", "d", "e", "f"])
    assert len(set(chart.values())) == len(chart) and all(chart[m] == METHOD_COLOURS[m] for m in methods)


def test_downloads_render_in_well_under_two_seconds():
    import plotly.graph_objects as go

    warm_up()  # what the page does when it shows its first chart
    render(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), "png")  # waits for the warm-up (one browser at a time)
    fig = forest_figure([comparison("sikd", "baseline", "kvasir-seg", "intra", 0.04)], {})
    times = []
    for fmt in ("svg", "png"):
        t0 = time.perf_counter()
        data = render(fig, fmt)
        times.append(time.perf_counter() - t0)
        assert data[:4] in (b"<svg", b"\x89PNG")
    t0 = time.perf_counter()
    render(fig, "svg")  # the same chart again: from the cache
    cached = time.perf_counter() - t0
    assert max(times) < 2.0 and cached < 0.2, (times, cached)
