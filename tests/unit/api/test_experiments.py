"""Creating experiments: validation, what is enqueued (ids only, after commit), limits, cancel, delete."""

from __future__ import annotations

import pytest

from tests.service_helpers import tiny_spec

pytestmark = pytest.mark.timeout(60)


def test_create_stores_and_enqueues_ids_only(client, alice, datasets, jobs, settings):
    r = client.post("/experiments", json=tiny_spec(datasets, seeds=[0, 1]), headers=alice)
    assert r.status_code == 201, r.text
    exp = r.json()
    assert exp["status"] == "queued" and exp["progress"] == 0
    assert exp["spec"]["train_dataset"] == str(datasets["vendor_a"])
    kinds = [(s["kind"], s["seed"], s["status"]) for s in exp["stages"]]
    assert kinds == [("baseline", 0, "queued"), ("teacher", 0, "queued"), ("student", 0, "pending"),
                     ("baseline", 1, "queued"), ("teacher", 1, "queued"), ("student", 1, "pending"),
                     ("evaluation", None, "pending")]
    ids = {(s["kind"], s["seed"]): s["id"] for s in exp["stages"]}
    # Baselines alone; each teacher chained with its student; the evaluation waits.
    assert sorted(jobs) == sorted([
        [("sikd.train_stage", (ids["baseline", 0],))],
        [("sikd.train_stage", (ids["teacher", 0],)), ("sikd.train_stage", (ids["student", 0],))],
        [("sikd.train_stage", (ids["baseline", 1],))],
        [("sikd.train_stage", (ids["teacher", 1],)), ("sikd.train_stage", (ids["student", 1],))],
    ])
    from sikd_service.celery_app import app

    assert app.amqp.router.route({}, "sikd.train_stage")["queue"].name == settings.train_queue
    assert app.amqp.router.route({}, "sikd.remove_paths")["queue"].name == settings.default_queue
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    assert got["stages"] == exp["stages"]


def test_baseline_only_and_sikd_only(client, alice, datasets, jobs):
    r = client.post("/experiments", json=tiny_spec(datasets, methods=["baseline"]), headers=alice)
    assert [s["kind"] for s in r.json()["stages"]] == ["baseline", "evaluation"] and len(jobs) == 1
    r = client.post("/experiments", json=tiny_spec(datasets, methods=["sikd"], eval_datasets=[]), headers=alice)
    assert [s["kind"] for s in r.json()["stages"]] == ["teacher", "student", "evaluation"]
    assert jobs.names()[-1] == ["sikd.train_stage", "sikd.train_stage"]


def test_spec_errors_are_readable_422(client, alice, datasets, jobs):
    r = client.post("/experiments", json={**tiny_spec(datasets), "epochz": 3, "lr": -1}, headers=alice)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "invalid experiment spec" in detail and "epochz: unknown key; known keys:" in detail
    assert "lr: Input should be greater than 0" in detail
    r = client.post("/experiments", json={**tiny_spec(datasets), "network": "nope"}, headers=alice)
    assert r.status_code == 422 and "unknown network 'nope'; known networks:" in r.json()["detail"]
    r = client.post("/experiments", json={"name": "x"}, headers=alice)
    assert r.status_code == 422 and "train_dataset: required" in r.json()["detail"]
    assert client.post("/experiments", json=[1, 2], headers=alice).status_code == 422
    assert client.get("/experiments", headers=alice).json()["count"] == 0 and not jobs


def test_experiment_names_with_control_characters_or_markup_are_refused(client, alice, datasets, jobs):
    for name in ("evil\x00name", "line\nbreak", "<b>bold</b>", "rtl\u202eoverride"):
        r = client.post("/experiments", json=tiny_spec(datasets, name=name), headers=alice)
        assert r.status_code == 422, (name, r.text)
        assert "the experiment name holds characters that are not allowed (U+" in r.json()["detail"], r.text
    assert client.get("/experiments", headers=alice).json()["count"] == 0 and not jobs
    r = client.post("/experiments", json=tiny_spec(datasets, name="Polyp — seed 0 (β=0.5), ünïcode"), headers=alice)
    assert r.status_code == 201, r.text
    # an arrow, as in the README's example ("phantoms A -> B, C"), is a name, not markup
    r = client.post("/experiments", json=tiny_spec(datasets, name="phantoms A -> B, C"), headers=alice)
    assert r.status_code == 201, r.text
    assert client.get(f"/experiments/{r.json()['id']}", headers=alice).json()["name"] == "phantoms A -> B, C"


def test_unknown_foreign_and_non_id_datasets_are_422(client, alice, bob, datasets, jobs, phantom_zips):
    from tests.service_helpers import upload

    bobs = upload(client, bob, phantom_zips["vendor_b"], name="bobs").json()["id"]
    r = client.post("/experiments", json=tiny_spec(datasets, eval_datasets=[bobs, 999]), headers=alice)
    assert r.status_code == 422
    assert r.json()["detail"] == f"unknown dataset id(s): {bobs}, 999" and r.json()["datasets"] == [str(bobs), "999"]
    r = client.post("/experiments", json=tiny_spec(datasets, train_dataset="/data/kvasir"), headers=alice)
    assert r.status_code == 422 and "datasets are given by id" in r.json()["detail"]
    r = client.post("/experiments", json=tiny_spec(datasets, eval_datasets=[datasets["vendor_a"]]), headers=alice)
    assert r.status_code == 422 and "must not contain the training dataset" in r.json()["detail"]
    assert not jobs


def test_class_count_mismatch_is_422(client, alice, datasets, jobs, tmp_path):

    from tests.conftest import copy_polyp_pairs, polyp_names
    from tests.service_helpers import upload, zip_folder

    names = polyp_names("cvc-clinicdb", 2)
    polyp = upload(client, alice, zip_folder(copy_polyp_pairs(tmp_path / "cvc", "cvc-clinicdb", names)),
                   name="cvc").json()["id"]
    r = client.post("/experiments", json=tiny_spec(datasets, eval_datasets=[polyp]), headers=alice)
    assert r.status_code == 422
    d = r.json()["detail"]
    assert f"training dataset {datasets['vendor_a']} ('vendor_a') has 4 classes" in d
    assert f"dataset {polyp} ('cvc') has 2 (background, foreground)" in d
    assert not jobs


def test_active_experiment_limit_is_429(client, alice, bob, datasets, jobs, settings):
    settings.max_active_experiments = 2
    for _ in range(2):
        assert client.post("/experiments", json=tiny_spec(datasets), headers=alice).status_code == 201
    r = client.post("/experiments", json=tiny_spec(datasets), headers=alice)
    assert r.status_code == 429 and "limit is 2" in r.json()["detail"]
    first = client.get("/experiments", headers=alice).json()["data"][-1]["id"]
    assert client.post(f"/experiments/{first}/cancel", headers=alice).status_code == 200
    assert client.post("/experiments", json=tiny_spec(datasets), headers=alice).status_code == 201


def test_list_filters_by_status_and_paginates(client, alice, datasets, jobs):
    ids = [client.post("/experiments", json=tiny_spec(datasets, name=f"e{i}"), headers=alice).json()["id"]
           for i in range(3)]
    client.post(f"/experiments/{ids[1]}/cancel", headers=alice)
    page = client.get("/experiments?limit=2", headers=alice).json()
    assert page["count"] == 3 and [e["id"] for e in page["data"]] == [ids[2], ids[1]]  # newest first
    cancelled = client.get("/experiments?status=cancelled", headers=alice).json()
    assert cancelled["count"] == 1 and cancelled["data"][0]["id"] == ids[1]
    assert client.get("/experiments?status=weird", headers=alice).status_code == 422


def test_cancel_queued_experiment(client, alice, datasets, jobs):
    exp = client.post("/experiments", json=tiny_spec(datasets), headers=alice).json()
    r = client.post(f"/experiments/{exp['id']}/cancel", headers=alice)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "cancelled" and body["finished_at"] and body["error"] == "cancelled by the user"
    assert {s["status"] for s in body["stages"]} == {"cancelled"}
    r = client.post(f"/experiments/{exp['id']}/cancel", headers=alice)
    assert r.status_code == 409 and "already cancelled" in r.json()["detail"]


def test_results_are_409_until_finished(client, alice, datasets, jobs):
    exp = client.post("/experiments", json=tiny_spec(datasets), headers=alice).json()
    for path in ("results", "report", "overlays", "features", "predictions.zip"):
        r = client.get(f"/experiments/{exp['id']}/{path}", headers=alice)
        assert r.status_code == 409, path
        assert r.json()["detail"].startswith(f"experiment {exp['id']} is queued;")
    metrics = client.get(f"/experiments/{exp['id']}/metrics", headers=alice).json()
    assert metrics["count"] == 3 and all(m["epochs"] == [] for m in metrics["data"])
    assert metrics["class_names"] == ["background", "RV", "myocardium", "LV"]


def test_delete_removes_rows_and_files(client, alice, datasets, jobs, settings):
    exp = client.post("/experiments", json=tiny_spec(datasets), headers=alice).json()
    workdir = settings.experiments_dir / str(exp["id"])
    workdir.mkdir(parents=True)
    (workdir / "spec.json").write_text("{}")
    assert client.delete(f"/experiments/{exp['id']}", headers=alice).status_code == 204
    assert not workdir.exists()
    assert client.get(f"/experiments/{exp['id']}", headers=alice).status_code == 404
    assert jobs.names()[-1] == ["sikd.remove_paths"]


def test_broker_down_is_503_and_the_experiment_is_marked_failed(client, alice, datasets, monkeypatch):
    from sikd_service import dispatch

    def down(sig):
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(dispatch, "_send", down)
    r = client.post("/experiments", json=tiny_spec(datasets), headers=alice)
    assert r.status_code == 503 and "could not be queued" in r.json()["detail"]
    exp = client.get("/experiments", headers=alice).json()["data"][0]
    assert exp["status"] == "failed" and "broker unavailable" in exp["error"]


def test_options_describe_models_and_the_spec(client, alice):
    opts = client.get("/options", headers=alice).json()
    names = [m["name"] for m in opts["networks"]]
    assert "unet" in names and all(m["description"] for m in opts["networks"])
    assert opts["models"] == opts["networks"]  # the deprecated old name, for older clients
    assert [m["name"] for m in opts["methods"]] == ["baseline", "sikd", "sdm", "gin", "maxstyle", "reference"]
    assert "reference+sikd" not in opts["method_names"]  # the yardstick is never distilled
    assert all(m["description"] and m["reference"] for m in opts["methods"])
    assert {m["name"] for m in opts["methods"] if m["composable"]} == {"sdm", "gin", "maxstyle"}
    assert "gin+sikd" in opts["method_names"] and "class_mean" in opts["teacher_inputs"]
    assert opts["spec_defaults"]["epochs"] == 50 and opts["spec_defaults"]["image_size"] == [256, 256]
    assert "train_dataset" not in opts["spec_defaults"]
    assert "train_dataset" in opts["spec_schema"]["required"]
    assert client.get("/options").status_code == 401


def test_presets_are_valid_specs_and_paper_is_the_default(client, alice, datasets, jobs):
    from sikd_core.cli import DEMO_SPEC

    opts = client.get("/options", headers=alice).json()
    presets = {p["name"]: p for p in opts["presets"]}
    assert set(presets) == {"paper", "quick"} and all(p["description"] for p in presets.values())
    paper = presets["paper"]["values"]
    assert {k: opts["spec_defaults"][k] for k in paper} == paper  # the paper preset restates the defaults
    assert {k: DEMO_SPEC[k] for k in presets["quick"]["values"]} == presets["quick"]["values"]  # sikd demo's size
    for p in presets.values():  # each is accepted as it is
        body = {**tiny_spec(datasets), **p["values"]}
        r = client.post("/experiments", json=body, headers=alice)
        assert r.status_code == 201, r.text


def test_openapi_documents_the_upload_and_the_routes(client):
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["file"]["format"] == "binary"
    for path in ("/experiments/{experiment_id}/overlays", "/models/{model_id}/predict", "/health", "/options"):
        assert path in doc["paths"]
    assert client.get("/docs").status_code == 200


def test_validation_errors_have_a_readable_detail(client, alice):
    r = client.get("/experiments?limit=0&skip=-1", headers=alice)
    assert r.status_code == 422
    body = r.json()
    assert "query.limit: Input should be greater than or equal to 1" in body["detail"]
    assert "query.skip" in body["detail"] and len(body["errors"]) == 2


def test_active_experiment_limit_holds_under_concurrent_requests(client, alice, datasets, jobs, settings,
                                                                  monkeypatch):
    """Six simultaneous POSTs with a limit of 1: exactly one is accepted (the count and the insert are
    serialised per user). The count is slowed down so that, unserialised, every request would pass."""
    import threading
    import time

    from sikd_service import crud

    settings.max_active_experiments = 1
    real_count = crud.count_active_experiments

    def slow_count(session, *, user):
        n = real_count(session, user=user)
        time.sleep(0.3)
        return n

    monkeypatch.setattr(crud, "count_active_experiments", slow_count)
    spec = tiny_spec(datasets)
    codes: list[int] = []
    start = threading.Barrier(6)

    def post() -> None:
        start.wait()
        codes.append(client.post("/experiments", json=spec, headers=alice).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [201, 429, 429, 429, 429, 429], codes
    assert client.get("/experiments", headers=alice).json()["count"] == 1


def test_queued_stages_are_sent_again_at_start(client, alice, datasets, jobs, settings):
    """A restart re-sends what is still queued (a lost message must not strand an experiment), in the
    same shape as the first time; running, pending and cancelled stages are left alone."""
    from sikd_service import crud
    from sikd_service.bootstrap import redispatch_queued
    from sikd_service.db import session_scope

    first = client.post("/experiments", json=tiny_spec(datasets), headers=alice).json()
    # reuse off: identical stages would wait for the first's (tests/unit/api/test_reuse.py)
    second = client.post("/experiments", json=tiny_spec(datasets, reuse=False), headers=alice).json()
    third = client.post("/experiments", json=tiny_spec(datasets, reuse=False), headers=alice).json()
    assert client.post(f"/experiments/{third['id']}/cancel", headers=alice).status_code == 200
    ids = {(s["kind"]): s["id"] for s in first["stages"]}
    with session_scope(settings) as s:  # a worker took the first experiment's baseline
        assert crud.claim_stage(s, stage_id=ids["baseline"], token="t", worker="w", stale_before=crud.utcnow())
    original = [m for m in jobs]
    jobs.clear()

    sent = redispatch_queued(settings)

    ids2 = {(s["kind"]): s["id"] for s in second["stages"]}
    assert sorted(jobs) == sorted([
        [("sikd.train_stage", (ids["teacher"],)), ("sikd.train_stage", (ids["student"],))],
        [("sikd.train_stage", (ids2["baseline"],))],
        [("sikd.train_stage", (ids2["teacher"],)), ("sikd.train_stage", (ids2["student"],))],
    ])
    assert all(m in original for m in jobs)  # the same messages as when it was created
    assert sorted(sent) == sorted([ids["teacher"], ids2["baseline"], ids2["teacher"]])


def test_resending_with_the_broker_down_does_not_stop_the_start(client, alice, datasets, jobs, settings,
                                                                 monkeypatch, caplog):
    from sikd_service import dispatch
    from sikd_service.bootstrap import redispatch_queued

    client.post("/experiments", json=tiny_spec(datasets), headers=alice)

    def down(_sig):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(dispatch, "_send", down)
    assert redispatch_queued(settings) == []
    assert "could not re-send queued stages" in caplog.text


SEVEN = ["baseline", "sikd", "sdm", "gin", "gin+sikd", "maxstyle", "maxstyle+sikd"]


def test_seven_methods_and_a_list_of_training_datasets(client, alice, datasets, jobs):
    body = tiny_spec(datasets, methods=SEVEN, eval_datasets=[],
                     train_dataset=[datasets["vendor_a"], datasets["vendor_b"]])
    r = client.post("/experiments", json=body, headers=alice)
    assert r.status_code == 201, r.text
    exp = r.json()
    assert exp["spec"]["train_dataset"] == [str(datasets["vendor_a"]), str(datasets["vendor_b"])]
    kinds = [(s["kind"], s["status"]) for s in exp["stages"]]
    assert kinds == [("baseline", "queued"), ("sdm", "queued"), ("gin", "queued"), ("maxstyle", "queued"),
                     ("teacher", "queued"), ("student", "pending"), ("gin+sikd", "pending"),
                     ("maxstyle+sikd", "pending"), ("evaluation", "pending")]
    ids = {s["kind"]: s["id"] for s in exp["stages"]}
    # one teacher, chained with its three students (sikd's and each X+sikd)
    assert [("sikd.train_stage", (ids["teacher"],))] + [("sikd.train_stage", (ids[k],)) for k in
                                                        ("student", "gin+sikd", "maxstyle+sikd")] in jobs
    assert len(jobs) == 5
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    assert got["spec"]["methods"] == SEVEN


@pytest.mark.parametrize("bad", ["unet-sdm", "baseline+sikd", "gin+maxstyle"])
def test_unknown_method_or_composition_is_a_422_naming_the_known_ones(client, alice, datasets, jobs, bad):
    r = client.post("/experiments", json=tiny_spec(datasets, methods=["baseline", bad]), headers=alice)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert bad in detail and "known methods: baseline, sikd, sdm, gin, maxstyle, reference, sdm+sikd" in detail
    assert not jobs
