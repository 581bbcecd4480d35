"""Sweep page: a sweep created by one request (POST /sweeps) on the real service with a worker; the page shows its
experiments with the stages they reused, and Dice against alpha with 95% CIs (a line per method and split),
downloadable as PNG, SVG and CSV; the experiment page links to it and names its reused stages."""

from __future__ import annotations

import pytest

from tests.ui.apptest_helpers import all_text, no_exceptions, plotly_traces
from tests.ui.stack import tiny_spec
from ui.sweep_data import experiments_frame, points_frame, sweep_figure

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def sweep(services, zips):
    api = services.work.admin.new_user("sweeper")
    ids = {name: api.upload(data, name)["id"] for name, data in zips.items()}
    body = tiny_spec(ids["vendor_a"], [ids["vendor_b"]], name="sw", epochs=1, feature_maps=0,
                     save_predictions=False, network_kwargs={"widths": [4, 8]}, sweep={"alpha": [1, 2]})
    out = api.post("/sweeps", json=body)
    for e in out["experiments"]:
        api.wait_experiment(e["id"], timeout=180)
    return api, api.get(f"/sweeps/{out['id']}")


def test_sweep_page_shows_shared_stages_and_the_chart(dashboard, services, sweep):
    api, sw = sweep
    first, second = (e["id"] for e in sw["experiments"])
    at = dashboard("sweep", url=services.work.url, token=api.token, query={"id": str(sw["id"])})
    no_exceptions(at)
    text = all_text(at)
    assert f"Sweep {sw['id']}" in text and "4 stages trained, 2 reused" in text  # baseline + teacher shared
    table = at.dataframe[0].value
    assert table["Setting"].tolist() == ["alpha=1", "alpha=2"] and table["Stages reused"].tolist() == [0, 2]
    assert table["Reused from"].tolist() == ["", str(first)]
    traces = plotly_traces(at, "sweep_plot")
    assert sorted(t["name"] for t in traces) == ["Baseline, cross", "Baseline, intra", "SIKD, cross", "SIKD, intra"]
    assert all(t["x"] == [1, 2] for t in traces)
    base = next(t for t in traces if t["name"] == "Baseline, intra")
    assert base["y"][0] == base["y"][1]  # one baseline, shared by both experiments
    point = next(p for p in sw["points"] if p["method"] == "sikd" and p["split"] == "cross" and p["values"] == {"alpha": 2})
    sikd = next(t for t in traces if t["name"] == "SIKD, cross")
    assert sikd["y"][1] == point["dice"] and sikd["error_y"]["array"][1] == pytest.approx(point["ci_high"] - point["dice"])
    shown = at.dataframe[1].value  # every point with its CI and health
    assert len(shown) == len(sw["points"]) and {"Dice", "CI low", "CI high", "Health"} <= set(shown.columns)
    assert set(shown["Health"]) == {p["health"] for p in sw["points"]}
    labels = [b.label for b in at.get("download_button")]
    assert {"PNG", "SVG", "CSV"} <= set(labels)
    # the experiment page names what was reused and links to the sweep
    at = dashboard("experiment", url=services.work.url, token=api.token, query={"id": str(second)})
    no_exceptions(at)
    assert f"reused from experiment {first}" in all_text(at)


def test_sweep_figure_and_tables_from_json():
    sw = {"id": 5, "settings": ["alpha"], "experiments": [
        {"id": 5, "status": "succeeded", "sweep_values": {"alpha": 0.5},
         "stages": [{"kind": "baseline", "status": "succeeded", "reused_from": None},
                    {"kind": "evaluation", "status": "succeeded", "reused_from": None}]},
        {"id": 6, "status": "running", "sweep_values": {"alpha": 5},
         "stages": [{"kind": "baseline", "status": "succeeded", "reused_from": 5}]}],
          "points": [{"experiment_id": 5, "values": {"alpha": 0.5}, "method": "sikd", "split": "intra", "n_cases": 3,
                      "dice": 0.5, "ci_low": 0.4, "ci_high": 0.7, "health": "unhealthy"}]}
    exps = experiments_frame(sw)
    assert exps["Stages trained"].tolist() == [1, 0] and exps["Stages reused"].tolist() == [0, 1]
    frame = points_frame(sw)
    fig = sweep_figure(frame, ["alpha"])
    [t] = fig.data
    assert list(t.x) == [0.5] and list(t.error_y.array) == pytest.approx([0.2]) and list(t.marker.symbol) == ["x"]
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [0.5]  # a tick per swept value
    assert frame.to_csv(index=False).splitlines()[0].startswith("Experiment,alpha,Method")
    assert not sweep_figure(points_frame({"settings": ["alpha"], "points": []}), ["alpha"]).data
