"""Experiment detail page: queued, succeeded (scores like the paper, paired comparison, overlays, feature maps,
downloads), failed (its error and traceback), missing."""

from __future__ import annotations

import re

import pytest

from tests.ui.apptest_helpers import all_text, no_exceptions, plotly_traces, record_requests, texts
from tests.ui.stack import tiny_spec
from ui.formatting import fmt, fmt_p

#: Generous: the first test of a session also starts the services (and trains the sweep).
pytestmark = pytest.mark.timeout(300)


def score_html(at) -> str:
    found = [m.value for m in at.markdown if "class='sikd-scores'" in m.value]
    assert len(found) == 1, "one score table expected"
    return found[0]


def cells(html: str) -> list[list[str]]:
    """The table's rows as lists of cell texts (header and body)."""
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", html)]


def cell_colours(html: str) -> list[list[str]]:
    return [["green" if "#1a7f37" in c else "red" if "#cf222e" in c else "" for c in re.findall(r"<td[^>]*>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", html)]


def test_queued_experiment_shows_stages_and_waits_for_results(dashboard, services, queue_user, queue_data):
    e = queue_user.post("/experiments", json=tiny_spec(queue_data["vendor_a"], [queue_data["vendor_b"]],
                                                       seeds=[0, 1], name="waiting"))
    at = dashboard("experiment", url=services.queue.url, token=queue_user.token, query={"id": str(e["id"])})
    no_exceptions(at)
    assert [t.value for t in at.title] == [f"#{e['id']} waiting"]
    stages = at.dataframe[0].value
    assert stages["Stage"].tolist() == ["baseline (seed 0)", "teacher (seed 0)", "student (seed 0)",
                                        "baseline (seed 1)", "teacher (seed 1)", "student (seed 1)", "evaluation"]
    assert stages["Status"].tolist() == ["queued", "queued", "pending", "queued", "queued", "pending", "pending"]
    assert "appear here when the experiment has succeeded" in "\n".join(texts(at, "info"))
    text = all_text(at)
    assert f"#{queue_data['vendor_a']} vendor_a" in text and f"#{queue_data['vendor_b']} vendor_b" in text
    assert not at.tabs  # no results yet
    at.button(key="detail_cancel").click().run()
    no_exceptions(at)
    assert queue_user.get(f"/experiments/{e['id']}")["status"] == "cancelled"
    assert "cancelled by the user" in "\n".join(texts(at, "warning"))
    # delete asks first; "Keep it" keeps it, "Yes, delete" removes it
    at.button(key="detail_delete").click().run()
    assert any(f"Delete experiment **#{e['id']} waiting**" in w for w in texts(at, "warning"))
    at.button(key="detail_delete_no").click().run()
    assert not any("Delete experiment" in w for w in texts(at, "warning"))
    assert queue_user.get(f"/experiments/{e['id']}")["status"] == "cancelled"
    at.button(key="detail_delete").click().run()
    at.button(key="detail_delete_yes").click().run()
    assert queue_user.call("GET", f"/experiments/{e['id']}", expect=404)


def test_missing_experiment_and_picker(dashboard, services, queue_user, queue_data):
    at = dashboard("experiment", url=services.queue.url, token=queue_user.token, query={"id": "999999"})
    no_exceptions(at)
    assert "Experiment #999999 does not exist" in "\n".join(texts(at, "error"))
    at = dashboard("experiment", url=services.queue.url, token=queue_user.token)
    assert "No experiments yet" in "\n".join(texts(at, "info"))
    e = queue_user.post("/experiments", json=tiny_spec(queue_data["vendor_a"], [], name="picked"))
    at = dashboard("experiment", url=services.queue.url, token=queue_user.token)
    at.selectbox[0].select(e["id"]).run()
    no_exceptions(at)
    assert [t.value for t in at.title] == [f"#{e['id']} picked"]


@pytest.fixture
def succeeded(dashboard, services, trained):
    api = trained["api"]
    exp_id = trained["sweep"][1]  # alpha 2, seeds 0 and 1
    at = dashboard("experiment", url=services.work.url, token=api.token, query={"id": str(exp_id)})
    no_exceptions(at)
    return at, api, exp_id, api.get(f"/experiments/{exp_id}/results")


def test_score_table_is_the_papers(succeeded):
    at, api, exp_id, results = succeeded
    rows = cells(score_html(at))
    assert rows[0] == ["Method", "vendor_a (intra)", "vendor_b (cross)", "vendor_c (cross)"]
    assert rows[1] == ["Dice", "IoU", "HD95 (px)"] * 3
    assert [r[0] for r in rows[2:]] == ["Baseline", "SIKD", "Δ SIKD − Baseline"]
    index = {(s["method"], s["dataset"]): s for s in results["summary"]}
    sets = ["vendor_a", "vendor_b", "vendor_c"]
    for row, method in zip(rows[2:4], ("baseline", "sikd"), strict=True):
        expected = []
        for ds in sets:
            s = index[(method, ds)]
            assert s["n_seeds"] == 2
            expected += [f"{fmt(s['dice_mean'])} ± {fmt(s['dice_std'])}", f"{fmt(s['iou_mean'])} ± {fmt(s['iou_std'])}",
                         f"{fmt(s['hd95_mean'], 2)} ± {fmt(s['hd95_std'], 2)}"]
        assert row[1:] == expected
    # Δ = SIKD − baseline, green where SIKD is better (Dice up, HD95 down) and red where worse, but only
    # where the paired 95% CI excludes 0 (IoU has no paired CI: never coloured)
    deltas, colours = rows[4][1:], cell_colours(score_html(at))[4]
    comps = {c["dataset"]: c for c in results["comparisons"]}
    for k, ds in enumerate(sets):
        for j, (metric, higher) in enumerate((("dice", True), ("iou", True), ("hd95", False))):
            d = index[("sikd", ds)][f"{metric}_mean"] - index[("baseline", ds)][f"{metric}_mean"]
            assert deltas[3 * k + j] == fmt(d, 2 if metric == "hd95" else 3, sign=True)
            ci = comps[ds].get(metric) or {}
            shown = metric != "iou" and d != 0 and not (ci["ci_low"] <= 0 <= ci["ci_high"])
            want = "" if not shown else ("green" if (ci["mean_diff"] > 0) == higher else "red")
            assert colours[3 * k + j] == want, (ds, metric, d, ci)
    assert "Mean ± std over 2 seeds" in all_text(at)


def test_score_table_per_class_on_demand(succeeded):
    at, api, exp_id, results = succeeded
    fg = results["class_names"][1:]
    assert at.radio(key="score_class").options == ["Mean over foreground classes", *fg]
    at.radio(key="score_class").set_value(fg[0]).run()
    no_exceptions(at)
    rows = cells(score_html(at))
    s = next(x for x in results["summary"] if x["method"] == "sikd" and x["dataset"] == "vendor_b")
    pc = s["per_class"][fg[0]]
    assert rows[3][4] == f"{fmt(pc['dice_mean'])} ± {fmt(pc['dice_std'])}"


def test_paired_comparison(succeeded):
    at, api, exp_id, results = succeeded
    [html] = [m.value for m in at.markdown if "class='sikd-paired'" in m.value]
    rows = cells(html)
    assert rows[0][:5] == ["Comparison", "Dataset", "Split", "Cases", "ΔDice"]
    for row, c in zip(rows[1:], results["comparisons"], strict=True):
        d = c["dice"]
        assert row[:5] == ["SIKD − Baseline", c["dataset"], c["split"], str(c["n_cases"]),
                           fmt(d["mean_diff"], 3, True)]
        assert row[5] == f"[{fmt(d['ci_low'], 3, True)}, {fmt(d['ci_high'], 3, True)}]"
        assert row[6] == fmt_p(d["p_value"]) and row[7] == f"{d['better']} / {d['worse']} / {d['ties']}"
    assert len(plotly_traces(at, "forest_chart")) == sum(c["dice"]["mean_diff"] is not None
                                                         for c in results["comparisons"])


def overlay_captions(at) -> list[str]:
    return [i.caption for img in at.get("image") for i in img.proto.imgs if " · Dice " in i.caption]


def case_ranks(api, exp_id: int, first: str, second: str, key, dataset: str | None = None) -> dict[str, float]:
    """``key dataset (split)`` of every evaluated case -> ``key(dice of first, dice of second)`` (the larger,
    the earlier it should be shown), from the API's per-case scores (mean over seeds)."""
    import collections

    dice = collections.defaultdict(lambda: collections.defaultdict(list))
    for c in api.get(f"/experiments/{exp_id}/cases", params={"limit": 500})["data"]:
        if dataset is None or c["dataset"] == dataset:
            dice[(c["keys"][0], f"{c['dataset']} ({c['split']})")][c["method"]].append(c["dice"])
    mean = {k: {m: sum(v) / len(v) for m, v in ms.items()} for k, ms in dice.items()}
    return {k + d: key(ms[first], ms[second]) for (k, d), ms in mean.items()}


def assert_first_page(at, ranks: dict[str, float]) -> None:
    """The page shows nine cases whose ranks are the nine largest (ties may come in any order)."""
    shown = shown_cases(at)
    assert len(shown) == min(9, len(ranks)) and set(shown) <= set(ranks)
    assert sorted((ranks[c] for c in shown), reverse=True) == pytest.approx(sorted(ranks.values(), reverse=True)[:9])


def shown_cases(at) -> list[str]:
    return [c.split(" · ")[0] + c.split(" · ")[1] for c in overlay_captions(at)]


def test_overlays_contour_two_chosen_methods_sorted_and_filtered(succeeded, monkeypatch):
    at, api, exp_id, results = succeeded
    # baseline vs SIKD by default, largest SIKD gain first, every evaluated case (9 per page)
    assert at.selectbox(key="ov_first").value == "baseline" and at.selectbox(key="ov_second").value == "sikd"
    legend = [m.value for m in at.markdown if "sikd-legend" in m.value]
    assert legend and all(k in legend[0] for k in ("ground truth", "Baseline", "SIKD"))
    gain = case_ranks(api, exp_id, "baseline", "sikd", lambda a, b: b - a)
    assert len(gain) > 9
    assert any(c.startswith(f"{len(gain)} evaluated case(s), ordered by largest sikd gain") for c in texts(at, "caption"))
    assert f"(of {-(-len(gain) // 9)}; {len(gain)} cases)" in at.number_input(key="ov_page").label
    assert_first_page(at, gain)
    assert gain[shown_cases(at)[0]] == pytest.approx(max(gain.values()))  # the first picture: the largest gain
    at.radio(key="ov_sort").set_value("worst").run()
    assert_first_page(at, case_ranks(api, exp_id, "baseline", "sikd", lambda a, b: -b))
    # swap the roles: SIKD in red against the baseline in blue; the pictures are drawn by the API for that pair
    seen = record_requests(monkeypatch)
    at.selectbox(key="ov_first").select("sikd").run()
    no_exceptions(at)
    assert at.selectbox(key="ov_second").options == ["Baseline"]
    assert_first_page(at, case_ranks(api, exp_id, "sikd", "baseline", lambda a, b: -b))
    views = [p for p in seen if "/cases/view.png?" in p]
    assert views and all("methods=sikd&methods=baseline&mode=overlay" in p for p in views)
    at.selectbox(key="ov_dataset").select("vendor_c (cross)").run()
    no_exceptions(at)
    assert overlay_captions(at) and all(" · vendor_c (cross) · " in c for c in overlay_captions(at))
    # vendor_c has 6 cases: all on one page (AppTest keeps the previous run's surplus pictures, so as a set)
    assert set(shown_cases(at)) == set(case_ranks(api, exp_id, "sikd", "baseline", lambda a, b: -b,
                                                  dataset="vendor_c"))


def test_feature_maps_and_downloads(succeeded):
    at, api, exp_id, results = succeeded
    feats = api.get(f"/experiments/{exp_id}/features")["data"]
    heads = [re.sub(r"<[^>]+>", "", m.value) for m in at.markdown if "text-align:center;font-weight:600" in m.value]
    assert heads == ["image", "class-wise mean image (teacher's input)", "Baseline", "teacher", "SIKD student"]
    bar = [m.value for m in at.markdown if "sikd-colourbar" in m.value]
    lo, hi = feats[0]["scale"]
    assert bar and f"<span>{lo:.3g}</span>" in bar[0] and f"<span>{hi:.3g}</span>" in bar[0]
    assert len(at.selectbox(key="feat_image").options) == len(feats)
    labels = [b.label for b in at.get("download_button") if b.label not in ("CSV", "LaTeX", "PNG", "SVG")]
    models = api.get("/models", params={"experiment_id": exp_id})["data"]
    assert labels[:3] == ["Report (Markdown)", "Scores (JSON)", "Predicted masks (zip, first seed)"]
    assert len(labels) == 3 + len(models) == 3 + 4  # baseline and SIKD student, two seeds
    exports = [b.label for b in at.get("download_button")]
    assert exports.count("LaTeX") == 2 and exports.count("CSV") == 3 and exports.count("SVG") >= 3


def test_distributions_and_generalisation_gap(succeeded):
    at, api, exp_id, results = succeeded
    # one bar colour per method (the same as on every chart), intra plain and cross hatched
    gap = {t["name"]: t for t in plotly_traces(at, "gap_chart")}
    intra = {s["method"]: s["dice_mean"] for s in results["summary"] if s["split"] == "intra"}
    cross = {m: sum(s["dice_mean"] for s in results["summary"] if s["split"] == "cross" and s["method"] == m) / 2
             for m in ("baseline", "sikd")}
    for m, label in (("baseline", "Baseline"), ("sikd", "SIKD")):
        assert gap[f"{label}, Intra"]["y"] == pytest.approx([intra[m]])
        assert gap[f"{label}, Cross (mean)"]["y"] == pytest.approx([cross[m]])
        assert gap[f"{label}, Intra"]["marker"]["color"] == gap[f"{label}, Cross (mean)"]["marker"]["color"]
    assert gap["Baseline, Intra"]["marker"]["color"] != gap["SIKD, Intra"]["marker"]["color"]
    cases = api.get(f"/experiments/{exp_id}/cases", params={"limit": 500})["data"]
    boxes = plotly_traces(at, "dist_chart")
    assert sorted(t["name"] for t in boxes) == ["Baseline", "SIKD"]
    colours = {t["name"]: t["marker"]["color"] for t in boxes}
    assert colours["Baseline"] == gap["Baseline, Intra"]["marker"]["color"] != colours["SIKD"]
    # one point per (dataset, case): seeds averaged
    n_cases = len({(c["dataset"], c["case"]) for c in cases})
    assert all(len(t["y"]) == n_cases for t in boxes)
    at.radio(key="dist_metric").set_value("HD95").run()
    no_exceptions(at)
    assert plotly_traces(at, "dist_chart")[0]["type"] == "box"


def test_case_drill_down(succeeded):
    at, api, exp_id, results = succeeded
    table = at.dataframe(key="cases_table").value
    cases = api.get(f"/experiments/{exp_id}/cases", params={"limit": 500})["data"]
    n_cases = len({(c["dataset"], c["case"]) for c in cases})
    assert len(table) == n_cases
    assert {"Dice · Baseline", "Dice · SIKD", "ΔDice SIKD − Baseline", "HD95 · SIKD"} <= set(table.columns)
    # the worst SIKD case: sort as a researcher would, choose it, see its picture
    worst = table.sort_values("Dice · SIKD").iloc[0]
    label = f"{worst['Dataset']} · {worst['Key']}"
    at.selectbox(key="case_pick").select(label).run()
    no_exceptions(at)
    assert any(m.value.startswith(f"**{worst['Key']}** · {worst['Dataset']}") for m in at.markdown)
    assert not any("Picture unavailable" in w for w in texts(at, "warning"))
    assert any("Classes:" in m.value for m in at.markdown)  # the per-class colour legend
    at.radio(key="case_mode").set_value("errors").run()
    no_exceptions(at)
    assert not any("Picture unavailable" in w for w in texts(at, "warning"))
    # filters: one dataset, a name
    at.selectbox(key="cases_dataset").select("vendor_c (cross)").run()
    assert set(at.dataframe(key="cases_table").value["Dataset"]) == {"vendor_c"}
    at.text_input(key="cases_filter").input("no-such-image").run()
    no_exceptions(at)
    assert at.dataframe(key="cases_table").value.empty


def test_download_callables_fetch_the_files(services, trained):
    """The download buttons get the file only when clicked; their callables fetch exactly the API's bytes."""
    from ui.client import Client

    api, exp_id = trained["api"], trained["sweep"][0]
    c = Client(base=services.work.url, token=api.token)
    report = c.downloader(f"/experiments/{exp_id}/report")()
    assert report.decode().startswith("# SIKD Studio report: alpha 1")
    zipped = c.downloader(f"/experiments/{exp_id}/predictions.zip")()
    assert zipped[:2] == b"PK"
    model = api.get("/models", params={"experiment_id": exp_id})["data"][0]
    assert c.downloader(f"/models/{model['id']}/download")() == api.http.get(f"/models/{model['id']}/download").content


def test_failed_stage_shows_its_error_and_traceback(dashboard, services, trained):
    api, exp_id = trained["api"], trained["failed"]
    exp = api.get(f"/experiments/{exp_id}")
    failed = [s for s in exp["stages"] if s["status"] == "failed"]
    assert failed and failed[0]["error"] and failed[0]["traceback_summary"]
    at = dashboard("experiment", url=services.work.url, token=api.token, query={"id": str(exp_id)})
    no_exceptions(at)
    errors = "\n".join(texts(at, "error"))
    assert f"**Failed:** {exp['error']}" in errors
    label = f"{failed[0]['kind']} (seed {failed[0]['seed']})"
    assert f"**{label} failed:** {failed[0]['error']}" in errors
    assert any(e.label == f"Traceback summary of {label}" for e in at.expander)
    assert failed[0]["traceback_summary"].strip() in [c.value.strip() for c in at.code]
    assert "failed before its evaluation" in "\n".join(texts(at, "info"))


def test_curves_and_timeline(succeeded):
    at, api, exp_id, results = succeeded
    metrics = api.get(f"/experiments/{exp_id}/metrics")
    traces = plotly_traces(at, "curves_chart")
    loss = {t["name"]: t["y"] for t in traces if t.get("xaxis", "x") == "x"}
    for st in metrics["data"]:
        name = f"{st['kind']} (seed {st['seed']})".replace("student", "SIKD student")
        assert loss[name] == [m["loss"] for m in st["epochs"]]
    dice = [t for t in traces if t.get("xaxis") == "x2"]
    assert len(dice) == len(metrics["data"])
    timeline = plotly_traces(at, "timeline_chart")
    assert sum(len(t["y"]) for t in timeline) == 7  # 6 training stages + the evaluation
