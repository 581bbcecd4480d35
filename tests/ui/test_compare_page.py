"""Compare page: fewer than two succeeded experiments, and an alpha sweep side by side with its plot."""

from __future__ import annotations

import pytest

from tests.ui.apptest_helpers import all_text, no_exceptions, plotly_traces, texts
from ui.formatting import fmt

#: Generous: the first test of a session also starts the services (and trains the sweep).
pytestmark = pytest.mark.timeout(300)


def test_needs_two_succeeded_experiments(dashboard, services, queue_user, queue_data):
    at = dashboard("compare", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    info = "\n".join(texts(at, "info"))
    assert "at least two succeeded experiments" in info and "none" in info


def test_alpha_sweep_side_by_side(dashboard, services, trained):
    api, (a1, a2) = trained["api"], trained["sweep"]
    at = dashboard("compare", url=services.work.url, token=api.token)
    no_exceptions(at)
    # the succeeded experiments on the same data are picked; the failed one is not offered
    assert at.multiselect(key="cmp_ids").value == [a1, a2]
    assert trained["failed"] not in at.multiselect(key="cmp_ids").options
    assert "**Settings that differ:** `alpha`" in all_text(at)
    table = at.dataframe[0].value
    assert table.index.tolist() == [a1, a2] and table["alpha"].tolist() == ["1.0", "2.0"]
    for exp_id in (a1, a2):
        res = api.get(f"/experiments/{exp_id}/results")
        for s in res["summary"]:
            col = f"{s['dataset']} ({s['split']}) · {'SIKD' if s['method'] == 'sikd' else 'Baseline'}"
            assert table.loc[exp_id, col] == fmt(s["dice_mean"])
        sikd = next(s for s in res["summary"] if s["method"] == "sikd" and s["dataset"] == "vendor_b")
        base = next(s for s in res["summary"] if s["method"] == "baseline" and s["dataset"] == "vendor_b")
        assert table.loc[exp_id, "vendor_b (cross) · Δ"] == fmt(sikd["dice_mean"] - base["dice_mean"], sign=True)
    # Dice against alpha: one line per dataset and method, x = the alpha values
    traces = plotly_traces(at, "cmp_plot")
    assert len(traces) == 6  # 3 datasets x 2 methods
    assert all(t["x"] == [1.0, 2.0] for t in traces)
    # grouped bars: intra vs the mean over the cross datasets, per experiment and method
    bars = plotly_traces(at, "cmp_bars")
    assert sorted(t["name"] for t in bars) == ["Baseline, cross (mean)", "Baseline, intra", "SIKD, cross (mean)",
                                               "SIKD, intra"]
    # one colour per method on both charts (the palette's), the split told by the hatching
    colours = {t["name"].split(",")[0]: t["marker"]["color"] for t in bars}
    assert colours["Baseline"] != colours["SIKD"]
    assert {t["marker"]["color"] for t in bars if t["name"].startswith("SIKD")} == {colours["SIKD"]}
    assert {t["line"]["color"] for t in traces if t["name"].startswith("SIKD")} == {colours["SIKD"]}
    res = api.get(f"/experiments/{a2}/results")
    cross = [s["dice_mean"] for s in res["summary"] if s["method"] == "sikd" and s["split"] == "cross"]
    t = next(t for t in bars if t["name"] == "SIKD, cross (mean)")
    assert t["y"][t["x"].index(f"#{a2} alpha 2")] == pytest.approx(sum(cross) / len(cross))
    assert not any("different tasks" in w for w in texts(at, "warning"))  # one task: no such warning
    # health, as the experiment page and the list show it: a warning per unhealthy experiment, a Health column
    for exp_id in (a1, a2):
        exp = api.get(f"/experiments/{exp_id}")
        bad = sorted(k for k, v in exp["health"]["by_model"].items() if v)
        warned = any(w.startswith(f"**#{exp_id} ") and "succeeded with warnings" in w for w in texts(at, "warning"))
        assert warned == bool(bad)
        assert (table.loc[exp_id, "Health"] == "healthy") == (not bad)
        assert table.loc[exp_id, "Health"].startswith("⚠") == bool(bad)
    # HD95 instead of Dice
    at.radio(key="cmp_metric").set_value("HD95").run()
    no_exceptions(at)
    res = api.get(f"/experiments/{a2}/results")
    s = next(s for s in res["summary"] if s["method"] == "sikd" and s["split"] == "intra")
    assert at.dataframe[0].value.loc[a2, "vendor_a (intra) · SIKD"] == fmt(s["hd95_mean"], 2)
    assert "Lower is better" in all_text(at)


def test_ids_in_the_address_choose_the_experiments(dashboard, services, trained):
    api, a2 = trained["api"], trained["sweep"][1]
    at = dashboard("compare", url=services.work.url, token=api.token, query={"ids": f"{a2}"})
    no_exceptions(at)
    assert at.multiselect(key="cmp_ids").value == [a2]
    assert "Pick two or more" in all_text(at)
