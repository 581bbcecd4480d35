"""Experiments page: empty state, the table (status, a progress bar per stage, ETA), open, cancel and
delete (with confirmation), pagination, and what a page costs with 200 experiments."""

from __future__ import annotations

import pytest

from tests.ui.apptest_helpers import all_text, click_row, no_exceptions, record_requests, texts
from tests.ui.stack import tiny_spec

#: Generous: the first test of a session also starts the services (and trains the sweep).
pytestmark = pytest.mark.timeout(300)


def test_empty_state_points_to_new_experiment(dashboard, services, queue_user):
    at = dashboard("experiments", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    info = "\n".join(texts(at, "info"))
    assert "No experiments yet" in info and "New experiment" in info and "Datasets" in info
    assert not at.dataframe


def test_table_shows_status_stage_progress_and_actions(dashboard, services, queue_user, queue_data):
    a = queue_user.post("/experiments", json=tiny_spec(queue_data["vendor_a"], [queue_data["vendor_b"]], name="one"))
    b = queue_user.post("/experiments", json=tiny_spec(queue_data["vendor_a"], [], name="two", seeds=[0, 1],
                                                       methods=["sikd"]))
    at = dashboard("experiments", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    df = at.dataframe[0].value
    assert df["ID"].tolist() == [b["id"], a["id"]]  # newest first, as the API lists them
    assert df["Status"].tolist() == ["queued", "queued"]
    assert df["Now"].tolist() == ["waiting for a worker"] * 2
    assert df["Progress"].tolist() == [0.0, 0.0]
    # a progress bar per stage kind; "two" trains no baseline, so it has no baseline bar
    assert df["Baseline"].isna().tolist() == [True, False]
    assert df[["Teacher", "Student", "Evaluation"]].notna().all().all()
    assert "2 experiment(s), 2 active on this page" in all_text(at)
    assert at.selectbox(key="exp_choice").options == [f"#{b['id']} two (queued)", f"#{a['id']} one (queued)"]

    # cancel "one"
    at.selectbox(key="exp_choice").select(a["id"]).run()
    at.button(key="exp_cancel").click().run()
    no_exceptions(at)
    assert queue_user.get(f"/experiments/{a['id']}")["status"] == "cancelled"
    df = at.dataframe[0].value
    assert df.set_index("ID").loc[a["id"], "Status"] == "cancelled"
    assert at.button(key="exp_cancel").disabled

    # delete asks first; "Keep it" keeps it
    at.button(key="exp_delete").click().run()
    assert any(f"Delete experiment **#{a['id']} one**" in w for w in texts(at, "warning"))
    at.button(key="exp_delete_no").click().run()
    assert queue_user.get(f"/experiments/{a['id']}")["status"] == "cancelled"
    assert not any("Delete experiment" in w for w in texts(at, "warning"))
    at.button(key="exp_delete").click().run()
    at.button(key="exp_delete_yes").click().run()
    no_exceptions(at)
    assert queue_user.call("GET", f"/experiments/{a['id']}", expect=404)
    assert at.dataframe[0].value["ID"].tolist() == [b["id"]]


def test_open_goes_to_the_detail_page(dashboard, services, queue_user, queue_data):
    e = queue_user.post("/experiments", json=tiny_spec(queue_data["vendor_a"], [queue_data["vendor_b"]],
                                                       name="to open"))
    at = dashboard("experiments", url=services.queue.url, token=queue_user.token)
    at.button(key="exp_open").click().run()
    no_exceptions(at)
    assert at.query_params["id"] == str(e["id"])
    assert [t.value for t in at.title] == [f"#{e['id']} to open"]


def test_a_click_on_a_row_chooses_that_experiment(dashboard, services, queue_user, queue_data):
    spec = tiny_spec(queue_data["vendor_a"], [])
    older, newer = (queue_user.post("/experiments", json={**spec, "name": n})["id"] for n in ("older", "newer"))
    at = dashboard("experiments", url=services.queue.url, token=queue_user.token)
    assert at.dataframe[0].value["ID"].tolist() == [newer, older]
    assert at.selectbox(key="exp_choice").value == newer  # nothing clicked yet: the first row
    at = click_row(at, "experiments_table", 1)
    no_exceptions(at)
    assert at.selectbox(key="exp_choice").value == older
    at.run()  # later refreshes keep the choice
    assert at.selectbox(key="exp_choice").value == older
    at.button(key="exp_open").click().run()
    no_exceptions(at)
    assert at.query_params["id"] == str(older) and [t.value for t in at.title] == [f"#{older} older"]


def test_status_filter_and_pages(dashboard, services, queue_user, queue_data):
    spec = tiny_spec(queue_data["vendor_a"], [])
    ids = [queue_user.post("/experiments", json={**spec, "name": f"e{i}"})["id"] for i in range(53)]
    queue_user.post(f"/experiments/{ids[0]}/cancel")
    at = dashboard("experiments", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    assert len(at.dataframe[0].value) == 50 and at.dataframe[0].value["ID"].iloc[0] == ids[-1]
    at.number_input(key="exp_page").set_value(2).run()
    assert at.dataframe[0].value["ID"].tolist() == sorted(ids[:3], reverse=True)
    at.selectbox(key="exp_status").select("cancelled").run()
    no_exceptions(at)
    assert at.dataframe[0].value["ID"].tolist() == [ids[0]]


PAGES = (("experiments", None), ("experiment", "id"), ("experiment", None), ("compare", None),
         ("new_experiment", None), ("datasets", None))


def cold_render_requests(dashboard, url: str, user, experiment_id: int, monkeypatch) -> dict[str, list[str]]:
    """Per page: the API requests (method and path) one cold run of the page makes (caches emptied)."""
    from ui import client

    seen = record_requests(monkeypatch, with_method=True, ignore=("/health",))  # health polls on its own thread
    out = {}
    for page, query in PAGES:
        q = {"id": str(experiment_id)} if query == "id" else None
        at = dashboard(page, url=url, token=user.token, query=q)  # warm-up (imports)
        no_exceptions(at)
        client.clear_cache()
        seen.clear()
        at.run()
        no_exceptions(at)
        out[f"{page} {query or ''}".strip()] = list(seen)
        if page == "experiments":  # the list and three counts, and the filters' choices; nothing per experiment
            assert sorted(seen) == ["GET /datasets"] + ["GET /experiments"] * 4 + ["GET /me", "GET /options",
                                                                                   "GET /tags"], seen
        if page == "experiments" and user.get("/experiments", params={"limit": 1})["count"] == 200:
            assert len(at.dataframe[0].value) == 50
            assert "200 experiment(s), 50 active on this page" in all_text(at)
    return out


def test_pages_cost_the_same_requests_with_200_experiments_as_with_2(dashboard, services, queue_user, queue_data,
                                                                     zips, monkeypatch):
    """Each page costs a few requests whatever the number of experiments (the list: one page of 50 and two
    counts; no per-experiment request): a user with 200 experiments and one with 2 cause the same number of
    API requests per cold page run. How fast the pages render is measured by bench/ui_render.py."""
    spec = tiny_spec(queue_data["vendor_a"], [queue_data["vendor_b"]], seeds=[0, 1])
    ids = [queue_user.post("/experiments", json={**spec, "name": f"sweep {i}"})["id"] for i in range(200)]
    assert queue_user.get("/experiments", params={"limit": 1})["count"] == 200
    few = services.queue.admin.new_user("few")
    try:
        few_data = {name: few.upload(data, name)["id"] for name, data in zips.items()}
        few_spec = tiny_spec(few_data["vendor_a"], [few_data["vendor_b"]], seeds=[0, 1])
        few_ids = [few.post("/experiments", json={**few_spec, "name": f"few {i}"})["id"] for i in range(2)]
        many_calls = cold_render_requests(dashboard, services.queue.url, queue_user, ids[100], monkeypatch)
        few_calls = cold_render_requests(dashboard, services.queue.url, few, few_ids[1], monkeypatch)
    finally:
        few.close()
    print("API requests per cold page run with 200 experiments:", {k: len(v) for k, v in many_calls.items()})
    for page, calls in many_calls.items():
        assert calls, page
        assert len(calls) == len(few_calls[page]), (page, calls, few_calls[page])
        assert len(calls) <= 10, (page, calls)


def test_headline_dice_columns_and_links(dashboard, services, trained, monkeypatch):
    """The headline Dice come with the list (each item's stored summary): one page of the list is one request,
    with no request per succeeded experiment."""
    from ui import client

    api = trained["api"]
    at = dashboard("experiments", url=services.work.url, token=api.token)
    no_exceptions(at)
    seen = record_requests(monkeypatch, with_method=True)
    client.clear_cache()
    at.run()
    no_exceptions(at)
    assert [c for c in seen if c.startswith("GET /experiments/")] == []  # no /results per experiment
    assert seen.count("GET /experiments") == 4, seen  # two active counts, the total, and the page itself
    df = at.dataframe[0].value.set_index("ID")
    for exp_id in trained["sweep"]:
        summary = api.get(f"/experiments/{exp_id}/results")["summary"]

        def dice(method, intra, summary=summary):
            v = [s["dice_mean"] for s in summary if s["method"] == method and (s["split"] == "intra") == intra]
            return sum(v) / len(v)

        row = df.loc[exp_id]
        assert row["Dice intra"] == pytest.approx(dice("sikd", True))
        assert row["Dice cross"] == pytest.approx(dice("sikd", False))
        assert row["Δ cross"] == pytest.approx(dice("sikd", False) - dice("baseline", False))
        assert row["Open"] == f"experiment?id={exp_id}"
    failed = df.loc[trained["failed"]]
    assert failed["Status"] == "failed" and failed[["Dice intra", "Δ intra"]].isna().all()
