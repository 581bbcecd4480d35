"""Figures for papers: the chart downloads render real PNG and SVG files (kaleido drives the system's
Chromium; nothing is downloaded), and tables export to LaTeX."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from ui.widgets import _figure_bytes

pytestmark = pytest.mark.timeout(120)


def test_chart_downloads_are_png_and_svg():
    fig = go.Figure(go.Bar(x=["intra", "cross"], y=[0.8, 0.6]))
    fig.update_layout(height=300, title="Dice")
    png = _figure_bytes(fig, "png")()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    svg = _figure_bytes(fig, "svg")()
    assert svg.lstrip().startswith(b"<svg") and b"Dice" in svg
