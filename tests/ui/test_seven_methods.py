"""Every method of issue 12 in one experiment trained on two datasets (multi-source): the score table, the
forest plot, the distributions, the overlays and the Compare page handle all seven; Compare warns when the
experiments segment different tasks. One tiny experiment per session (``seven``), read by every test."""

from __future__ import annotations

import re

import pytest

from tests.ui.apptest_helpers import no_exceptions, plotly_traces, record_requests, texts
from tests.ui.conftest import SEVEN_METHODS
from ui.formatting import method_label

#: Generous: the first test of a session also starts the services (and trains the experiments).
pytestmark = pytest.mark.timeout(400)

LABELS = [method_label(m) for m in SEVEN_METHODS]


@pytest.fixture(scope="module")
def page(seven, services):
    """The experiment page of ``all7`` (one AppTest run shared by the read-only tests) and its results."""
    from streamlit.testing.v1 import AppTest

    from tests.ui.conftest import UI_APP
    from ui import client

    api = seven["api"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIKD_API_URL", services.work.url)
        mp.setenv("SIKD_API_TOKEN", api.token)
        client.clear_cache()
        at = AppTest.from_file(str(UI_APP), default_timeout=60)
        at.query_params["id"] = str(seven["all7"])
        at.switch_page("app_pages/experiment.py")
        at.run()
        no_exceptions(at)
        yield at, api, seven["all7"], api.get(f"/experiments/{seven['all7']}/results")
    client.clear_cache()


def test_every_source_is_an_intra_row_and_every_method_a_score_row(page):
    at, api, exp_id, results = page
    assert sorted({s["method"] for s in results["summary"]}) == sorted(SEVEN_METHODS)
    [html] = [m.value for m in at.markdown if "class='sikd-scores'" in m.value]
    rows = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r) for r in re.findall(r"<tr>(.*?)</tr>", html)]
    assert rows[0] == ["Method", "vendor_a (intra)", "vendor_b (intra)", "vendor_c (cross)"]
    assert [r[0] for r in rows[2:4]] == ["Baseline", "SIKD"] and sorted(r[0] for r in rows[2:2 + 7]) == sorted(LABELS)
    assert all(len(r) == 1 + 3 * 3 for r in rows[2:2 + 7])
    caption = "\n".join(texts(at, "caption"))
    assert "vendor_a" in caption and "vendor_b" in caption  # trained on both, named in the header


def test_forest_plot_has_every_comparison(page):
    at, api, exp_id, results = page
    comps = [c for c in results["comparisons"] if (c.get("dice") or {}).get("mean_diff") is not None]
    assert {c["method"] for c in comps} == set(SEVEN_METHODS) - {"baseline"}
    ys = [t["y"][0] for t in plotly_traces(at, "forest_chart")]
    assert len(ys) == len(comps) and {y.split(" − ")[0] for y in ys} == set(LABELS) - {"Baseline"}


def test_distributions_plot_every_method(page):
    at, api, exp_id, results = page
    gap = {t["name"]: t for t in plotly_traces(at, "gap_chart")}
    assert set(gap) == {f"{m}, {split}" for m in LABELS for split in ("Intra", "Cross (mean)")}
    # one colour per method: seven methods, seven colours, the same on the bars and the boxes
    colours = {m: gap[f"{m}, Intra"]["marker"]["color"] for m in LABELS}
    assert len(set(colours.values())) == len(LABELS)
    boxes = plotly_traces(at, "dist_chart")
    assert sorted(t["name"] for t in boxes) == sorted(LABELS)
    assert all(t["marker"]["color"] == colours[t["name"]] for t in boxes)
    [gaps] = [d.value for d in at.dataframe if "Gap" in d.value.columns]
    assert sorted(gaps["Method"]) == sorted(LABELS)


def test_overlays_offer_every_method_and_draw_the_chosen_pair(page, monkeypatch):
    at, api, exp_id, results = page
    assert sorted(at.selectbox(key="ov_first").options) == sorted(LABELS)
    assert at.selectbox(key="ov_first").value == "baseline" and at.selectbox(key="ov_second").value == "sikd"

    seen = record_requests(monkeypatch)
    at.selectbox(key="ov_first").select("gin+sikd").run()
    seen.clear()
    at.selectbox(key="ov_second").select("maxstyle").run()
    no_exceptions(at)
    assert sorted(at.selectbox(key="ov_second").options) == sorted(x for x in LABELS if x != "GIN+SIKD")
    views = [p for p in seen if "/cases/view.png?" in p]
    assert views and all("methods=gin%2Bsikd&methods=maxstyle&mode=overlay" in p for p in views)
    legend = [m.value for m in at.markdown if "sikd-legend" in m.value]
    assert "GIN+SIKD" in legend[-1] and "MaxStyle" in legend[-1]
    captions = [i.caption for img in at.get("image") for i in img.proto.imgs if " · Dice " in i.caption]
    assert captions and all("Dice GIN+SIKD " in c and " / MaxStyle " in c for c in captions)


def test_compare_handles_every_method_and_warns_across_tasks(dashboard, services, seven):
    api, a, b = seven["api"], seven["all7"], seven["binary"]
    at = dashboard("compare", url=services.work.url, token=api.token, query={"ids": f"{a},{b}"})
    no_exceptions(at)
    assert at.multiselect(key="cmp_ids").value == [a, b]
    warning = "\n".join(texts(at, "warning"))
    assert "segment different tasks" in warning
    assert f"#{a}: RV, myocardium, LV" in warning and f"#{b}: foreground" in warning
    table = at.dataframe[0].value
    for label in LABELS:
        assert f"vendor_c (cross) · {label}" in table.columns and f"vendor_b (intra) · {label}" in table.columns
    bars = plotly_traces(at, "cmp_bars")
    assert {t["name"].split(", ")[0] for t in bars} == set(LABELS)
