"""The Sweep page in headless Chromium: a real sweep (``POST /sweeps``, alpha 0.5 and 2, tiny phantoms, one epoch)
trained by the real ``sikd serve`` worker, then ``/sweep?id=N`` opened in the browser. The page names the shared
stages; its chart draws a line per method and split with a point at each swept value, the 95% CI as error bars and
health as the marker; its tables list the experiments (what each reused) and every point's Dice, CI and health.
Each number is checked against ``GET /sweeps/{id}``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_dashboard import Page, browser, stack  # noqa: F401 - the browser and stack fixtures
from tests.ui.stack import phantom_zip, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow(seconds=50), pytest.mark.timeout(420)]

#: The chart's traces as Plotly holds them in the page (x, y, error bars, marker symbols, legend names).
_TRACES = """
const plot = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
if (!plot || !plot.data || !plot.querySelector('.legendtext')) return null;
const arr = (v) => v === undefined || v === null ? null : Array.from(v);
return plot.data.map(t => ({name: t.name, x: arr(t.x), y: arr(t.y), symbols: arr(t.marker && t.marker.symbol),
                            plus: arr(t.error_y && t.error_y.array), minus: arr(t.error_y && t.error_y.arrayminus)}));
"""


def grids(page: Page) -> list[list[dict[str, str]]]:
    """Every st.dataframe on the page as rows of {header: cell text} (read from the grid's accessible table)."""
    out = []
    for frame in page.d.find_elements(page.By.CSS_SELECTOR, "[data-testid=stDataFrame]"):
        heads = [th.get_attribute("textContent").strip() for th in frame.find_elements(page.By.CSS_SELECTOR, "th[role=columnheader]")]
        rows = [[td.get_attribute("textContent").strip() for td in tr.find_elements(page.By.CSS_SELECTOR, "td")]
                for tr in frame.find_elements(page.By.CSS_SELECTOR, "tbody tr[role=row]")]
        out.append([dict(zip(heads, r, strict=True)) for r in rows])
    return out


def test_sweep_page_draws_each_swept_value_with_its_ci_and_health(browser, stack, tmp_path):  # noqa: F811
    api = stack.admin
    train = api.upload(phantom_zip(tmp_path, "vendor_a", 16, 1, size=32), "vendor_a")["id"]
    cross = api.upload(phantom_zip(tmp_path, "vendor_b", 6, 2, size=32), "vendor_b")["id"]
    body = tiny_spec(train, [cross], name="sw", epochs=1, feature_maps=0, save_predictions=False,
                     network_kwargs={"widths": [4, 8]}, sweep={"alpha": [0.5, 2]})
    created = api.post("/sweeps", json=body)
    first, second = (e["id"] for e in created["experiments"])
    for e in (first, second):
        api.wait_experiment(e, timeout=240)
    sweep = api.get(f"/sweeps/{created['id']}")
    points = sweep["points"]
    assert {(p["values"]["alpha"], p["method"], p["split"]) for p in points} == {
        (a, m, s) for a in (0.5, 2) for m in ("baseline", "sikd") for s in ("intra", "cross")}

    page = Page(browser, stack.ui_url)
    browser.get(f"{stack.ui_url}/sweep?id={sweep['id']}")
    page.wait_text(f"Sweep {sweep['id']}", "2 experiments over alpha", "4 stages trained, 2 reused",
                   "Dice against alpha", timeout=90)

    # ---- the chart: a line per method and split, a point per swept value, CI bars, health as the marker
    traces = page.wait(lambda: browser.execute_script(_TRACES), 30, "the chart to draw")
    names = {"Baseline": "baseline", "SIKD": "sikd"}
    assert sorted(t["name"] for t in traces) == ["Baseline, cross", "Baseline, intra", "SIKD, cross", "SIKD, intra"]
    for t in traces:
        label, split = t["name"].split(", ")
        want = sorted((p for p in points if p["method"] == names[label] and p["split"] == split),
                      key=lambda p: p["values"]["alpha"])
        assert t["x"] == [0.5, 2]
        assert t["y"] == pytest.approx([p["dice"] for p in want])
        assert t["plus"] == pytest.approx([p["ci_high"] - p["dice"] for p in want])
        assert t["minus"] == pytest.approx([p["dice"] - p["ci_low"] for p in want])
        assert t["symbols"] == ["x" if p["health"] == "unhealthy" else "circle" for p in want]
    base = next(t for t in traces if t["name"] == "Baseline, intra")
    assert base["y"][0] == base["y"][1]  # one baseline, trained once and shared
    # drawn, not only held: the legend, both ticks of the log x axis, an error bar per point
    svg = browser.find_element(page.By.CSS_SELECTOR, "[data-testid=stPlotlyChart] .js-plotly-plot")
    legend = {e.text for e in svg.find_elements(page.By.CSS_SELECTOR, ".legendtext")}
    assert legend == {t["name"] for t in traces}
    ticks = {e.text for e in svg.find_elements(page.By.CSS_SELECTOR, ".xtick text")}
    assert {"0.5", "2"} <= ticks, ticks
    bars = svg.find_elements(page.By.CSS_SELECTOR, ".errorbars .errorbar")
    assert len(bars) == len(points)

    # ---- the tables: the experiments with what they reused, and every point with its CI and health
    def both() -> list[list[dict[str, str]]] | None:
        g = grids(page)
        return g if len(g) == 2 and all(g) else None

    exps, table = page.wait(both, 30, "the two tables")
    assert [(r["Setting"], r["Status"], r["Stages reused"], r["Reused from"]) for r in exps] == [
        ("alpha=0.5", "succeeded", "0", ""), ("alpha=2", "succeeded", "2", str(first))]
    assert len(table) == len(points)

    def row(p: dict[str, Any]) -> tuple[Any, ...]:
        return (str(p["experiment_id"]), f"{p['values']['alpha']:g}", {"baseline": "Baseline", "sikd": "SIKD"}[
            p["method"]], p["split"], str(p["n_cases"]), p["health"], p["dice"], p["ci_low"], p["ci_high"])

    cols = ("Experiment", "alpha", "Method", "Split", "Cases", "Health")
    shown = sorted((*(r[c] for c in cols), *(float(r[c]) for c in ("Dice", "CI low", "CI high"))) for r in table)
    want = sorted(row(p) for p in points)
    assert [s[:6] for s in shown] == [w[:6] for w in want]
    assert [s[6:] for s in shown] == [pytest.approx(w[6:], abs=1e-12) for w in want]
    page.shot("sweep")
