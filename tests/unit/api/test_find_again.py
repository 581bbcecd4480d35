"""Finding experiments again over REST, on SQLite and PostgreSQL: tags and a note (PATCH, validated, owner or
admin only), the tags in use, and the Experiments list's search and filters (name, tag, dataset, network, method,
status, health), paginated with an exact count. Experiments stay queued (the broker is recorded): nothing
trains here."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service_helpers import tiny_spec

pytestmark = pytest.mark.timeout(90)


def make(client: Any, user: dict, datasets: dict[str, int], **kw: Any) -> dict:
    r = client.post("/experiments", json=tiny_spec(datasets, **kw), headers=user)
    assert r.status_code == 201, r.text
    return r.json()


def patch(client: Any, user: dict, exp_id: int, body: Any, status: int = 200) -> dict:
    r = client.patch(f"/experiments/{exp_id}", json=body, headers=user)
    assert r.status_code == status, r.text
    return r.json()


def test_tags_and_note_are_set_shown_in_the_list_and_kept(client, alice, datasets):
    exp = make(client, alice, datasets, name="tagged")
    assert exp["tags"] == [] and exp["note"] is None
    out = patch(client, alice, exp["id"], {"tags": [" alpha-sweep ", "polyp", "alpha-sweep", "Fig 8"],
                                           "note": "  teacher input ablation\n\tsee issue 24  "})
    assert out["tags"] == ["alpha-sweep", "polyp", "Fig 8"]  # stripped, repeats dropped, order kept
    assert out["note"] == "teacher input ablation\n\tsee issue 24"
    assert out["spec"] == exp["spec"] and out["name"] == "tagged" and out["status"] == exp["status"]
    assert client.get(f"/experiments/{exp['id']}", headers=alice).json()["tags"] == out["tags"]
    [listed] = client.get("/experiments", headers=alice).json()["data"]
    assert listed["tags"] == out["tags"] and listed["note"] == out["note"]
    # what the body leaves out stays; [] and null remove
    assert patch(client, alice, exp["id"], {"note": "only the note"})["tags"] == out["tags"]
    cleared = patch(client, alice, exp["id"], {"tags": []})
    assert cleared["tags"] == [] and cleared["note"] == "only the note"
    assert patch(client, alice, exp["id"], {"note": None})["note"] is None
    assert patch(client, alice, exp["id"], {"note": "   "})["note"] is None
    patch(client, alice, exp["id"], {"tags": ["b", "a", "b2"]})
    other = make(client, alice, datasets, name="second")
    patch(client, alice, other["id"], {"tags": ["b"]})
    tags = client.get("/tags", headers=alice).json()
    assert tags == {"data": [{"tag": "b", "count": 2}, {"tag": "a", "count": 1}, {"tag": "b2", "count": 1}],
                    "count": 3}


BAD_BODIES = [
    ({}, "give tags, note or both"),
    ({"tags": None}, "give [] to remove every tag"),
    ({"tags": "polyp"}, "tags"),
    ({"tags": [1]}, "tags"),
    ({"tags": ["a,b"]}, "cannot hold a comma"),
    ({"tags": ["<b>bold"]}, "not allowed"),
    ({"tags": ["line\nbreak"]}, "not allowed"),
    ({"tags": ["  "]}, "1 to 40 characters"),
    ({"tags": ["x" * 41]}, "1 to 40 characters"),
    ({"tags": [f"t{i}" for i in range(21)]}, "at most 20 tags; 21 were given"),
    ({"note": "x" * 5001}, "at most 5000 characters; it has 5001"),
    ({"note": "nul\x00byte"}, "U+0000"),
    ({"note": 5}, "note"),
    ({"name": "renamed"}, "name"),
    ({"tags": ["ok"], "spec": {}}, "spec"),
    ([], "body"),
]


def test_bad_tags_and_notes_are_a_422_that_changes_nothing(client, alice, datasets):
    exp = make(client, alice, datasets)
    patch(client, alice, exp["id"], {"tags": ["kept"], "note": "kept note"})
    for body, says in BAD_BODIES:
        r = client.patch(f"/experiments/{exp['id']}", json=body, headers=alice)
        assert r.status_code == 422, (body, r.text)
        assert says in r.json()["detail"], (body, r.json())
    after = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    assert after["tags"] == ["kept"] and after["note"] == "kept note" and after["name"] == exp["name"]
    assert after["spec"] == exp["spec"]


def test_only_the_owner_or_an_admin_may_tag(client, alice, bob, admin, datasets):
    exp = make(client, alice, datasets)
    patch(client, alice, exp["id"], {"tags": ["mine"]})
    r = client.patch(f"/experiments/{exp['id']}", json={"tags": ["bobs"]}, headers=bob)
    assert r.status_code == 404  # as every other user's row: reported missing
    assert client.get("/tags", headers=bob).json() == {"data": [], "count": 0}
    assert client.get("/experiments", params={"tag": "mine"}, headers=bob).json()["count"] == 0
    assert patch(client, admin, exp["id"], {"note": "checked by the admin"})["tags"] == ["mine"]
    assert client.get(f"/experiments/{exp['id']}", headers=alice).json()["note"] == "checked by the admin"
    assert client.patch("/experiments/999999", json={"tags": []}, headers=alice).status_code == 404
    assert client.patch(f"/experiments/{exp['id']}", json={"tags": []}).status_code == 401


def ids(client: Any, user: dict, **params: Any) -> list[int]:
    r = client.get("/experiments", params=params, headers=user)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["data"]) or "limit" in params
    return [e["id"] for e in body["data"]]


def test_search_and_filters_narrow_the_list_in_sql_and_page_it(client, alice, bob, admin, datasets, settings):
    from sikd_service.db import session_scope
    from sikd_service.tables import Stage

    settings.max_active_experiments = 10
    a, b = datasets["vendor_a"], datasets["vendor_b"]
    e1 = make(client, alice, datasets, name="alpha 1 sweep", alpha=1.0)["id"]
    e2 = make(client, alice, datasets, name="Alpha 2 SWEEP", alpha=2.0, methods=["baseline"])["id"]
    e3 = make(client, alice, datasets, name="gin_50%", methods=["baseline", "gin", "gin+sikd"],
              network="attention_unet", network_kwargs={}, train_dataset=b, eval_datasets=[])["id"]
    e4 = make(client, alice, datasets, name="ginX50 reference", methods=["baseline", "reference"],
              train_dataset=b, eval_datasets=[a])["id"]
    patch(client, alice, e1, {"tags": ["sweep", "fig8"]})
    patch(client, alice, e2, {"tags": ["sweep"]})
    patch(client, alice, e3, {"tags": ["fig8"]})
    assert client.post(f"/experiments/{e4}/cancel", headers=alice).status_code == 200
    everything = [e4, e3, e2, e1]  # newest first
    assert ids(client, alice) == everything
    # name: a case-insensitive substring; % and _ are plain characters
    assert ids(client, alice, name="sweep") == [e2, e1]
    assert ids(client, alice, name="50%") == [e3]
    assert ids(client, alice, name="_") == [e3]
    assert ids(client, alice, name="%") == [e3]
    # tags: every one given must be there
    assert ids(client, alice, tag="sweep") == [e2, e1]
    assert ids(client, alice, tag=["sweep", "fig8"]) == [e1]
    assert ids(client, alice, tag="fig") == []  # whole tags, not parts
    # dataset: trained or evaluated on it
    assert ids(client, alice, dataset=a) == [e4, e2, e1]
    assert ids(client, alice, dataset=b) == everything
    assert ids(client, alice, dataset=999999) == []
    # network (spec model) and method (one of spec methods)
    assert ids(client, alice, network="attention_unet") == [e3]
    assert ids(client, alice, network="unet") == [e4, e2, e1]
    assert ids(client, alice, method="sikd") == [e1]
    assert ids(client, alice, method="gin+sikd") == [e3]
    assert ids(client, alice, method="baseline") == everything
    assert ids(client, alice, method="reference") == [e4]
    # status, and filters together
    assert ids(client, alice, status="cancelled") == [e4]
    assert ids(client, alice, status="queued", tag="fig8", network="unet") == [e1]
    # pages: the count is of every match
    page = client.get("/experiments", params={"method": "baseline", "skip": 1, "limit": 2}, headers=alice).json()
    assert [e["id"] for e in page["data"]] == [e3, e2] and page["count"] == 4
    # health: a finding about e2's baseline, as its stage recorded it while training
    finding = {"code": "collapsed_prediction", "severity": "error", "stage": "baseline", "seed": 0,
               "method": "baseline", "epoch": 1, "message": "every pixel predicted as background", "values": {}}
    with session_scope(settings) as s:
        stage = s.query(Stage).filter_by(experiment_id=e2, kind="baseline").one()
        stage.health = [finding]
    assert client.get(f"/experiments/{e2}", headers=alice).json()["health"]["status"] == "unhealthy"
    assert ids(client, alice, health="unhealthy") == [e2]
    assert ids(client, alice, health="healthy") == [e4, e3, e1]
    assert ids(client, alice, health="healthy", tag="sweep") == [e1]
    page = client.get("/experiments", params={"health": "healthy", "skip": 1, "limit": 1}, headers=alice).json()
    assert [e["id"] for e in page["data"]] == [e3] and page["count"] == 3
    # another user sees none of it; an admin sees all
    assert ids(client, bob, tag="sweep") == [] and ids(client, bob, name="alpha") == []
    assert ids(client, admin, tag="sweep") == [e2, e1]


@pytest.mark.parametrize("params", [
    {"health": "sick"}, {"status": "done"}, {"dataset": "abc"}, {"dataset": "0"}, {"dataset": str(2**63)},
    {"network": "u net"}, {"network": ""}, {"method": "<script>"}, {"name": ""}, {"name": "x" * 201},
    {"tag": ""}, {"tag": "x" * 41}, {"tag": [f"t{i}" for i in range(21)]},
])
def test_bad_filters_are_a_422_naming_the_parameter(client, alice, params):
    r = client.get("/experiments", params=params, headers=alice)
    assert r.status_code == 422, r.text
    name = next(iter(params))
    assert name in r.json()["detail"], r.json()


def test_the_health_filter_says_what_each_experiments_health_says(client, alice, settings):
    """The SQL of the health filter and :func:`experiment_health` (what every page shows) agree on every way
    findings are stored: none; a stage's; the report's (kept in the summary, which then overrides the stages');
    a summary without health (a report older than health checks)."""
    from sikd_service.db import session_scope
    from sikd_service.health import experiment_health
    from sikd_service.tables import Experiment, Stage

    me = client.get("/me", headers=alice).json()["id"]
    finding = {"code": "val_dice_zero", "severity": "warning", "stage": "baseline", "seed": 0, "method": "baseline"}
    report = {"findings": [finding], "models": [["baseline", 0]]}
    cases = {  # name: (summary, stage health), expected
        "nothing": ((None, []), "healthy"),
        "stage": ((None, [finding]), "unhealthy"),
        "report": (({"dice": {}, "health": report}, []), "unhealthy"),
        "report clean, stage not": (({"dice": {}, "health": {**report, "findings": []}}, [finding]), "healthy"),
        "old report, stage": (({"dice": {}, "health": None}, [finding]), "unhealthy"),
        "old report": (({"dice": {}}, []), "healthy"),
    }
    with session_scope(settings) as s:
        for name, ((summary, health), _) in cases.items():
            exp = Experiment(owner_id=me, name=name, status="succeeded", spec={}, summary=summary)
            exp.stages.append(Stage(kind="baseline", seed=0, status="succeeded", epochs=1, warnings=[], health=health))
            s.add(exp)
    listed = {h: {e["name"] for e in client.get("/experiments", params={"health": h}, headers=alice).json()["data"]}
              for h in ("healthy", "unhealthy")}
    assert listed["unhealthy"] == {n for n, (_, want) in cases.items() if want == "unhealthy"}
    assert listed["healthy"] == {n for n, (_, want) in cases.items() if want == "healthy"}
    with session_scope(settings) as s:
        for exp in s.query(Experiment).all():
            assert experiment_health(exp)["status"] == cases[exp.name][1], exp.name
