"""Stage reuse through the API with the worker's task functions (tiny phantoms, 1 epoch): an experiment identical
but for alpha trains only its student; reuse survives deleting the first experiment; ownership; waiting for an
identical stage still queued; sweeps. What each setting does to a stage key is tested in tests/unit/test_stage_key.py.
"""

from __future__ import annotations

import pytest

from tests.service_helpers import drain, new_user, tiny_spec, upload

pytestmark = pytest.mark.timeout(240)

FAST = dict(epochs=1, feature_maps=0, save_predictions=False, network_kwargs={"widths": [4, 8]})


def post(client, headers, datasets, **kw):
    r = client.post("/experiments", json=tiny_spec(datasets, **{**FAST, **kw}), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def stages(client, headers, eid):
    return {s["kind"]: s for s in client.get(f"/experiments/{eid}", headers=headers).json()["stages"]}


def test_second_experiment_differing_in_alpha_trains_only_its_student(client, alice, datasets, jobs, settings):
    a = post(client, alice, datasets, name="a")
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 4
    b = post(client, alice, datasets, name="b", alpha=0.5)
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 4
    sa, sb = stages(client, alice, a), stages(client, alice, b)
    assert {k: s["reused_from"] for k, s in sb.items()} == {"baseline": a, "teacher": a, "student": None,
                                                            "evaluation": None}
    assert sb["baseline"]["message"] == f"reused from experiment {a}" and sb["student"]["message"] != sb["baseline"]["message"]
    assert all(sb[k]["best_val_dice"] == sa[k]["best_val_dice"] for k in ("baseline", "teacher"))
    assert client.get(f"/experiments/{b}", headers=alice).json()["status"] == "succeeded"
    # the same model file, its curve and its scores (the baseline is bit-identical: it is the same model)
    root = settings.storage_dir / "experiments"
    assert (root / f"{b}/seed_0/baseline/model.pt").samefile(root / f"{a}/seed_0/baseline/model.pt")
    assert not (root / f"{b}/seed_0/student/model.pt").samefile(root / f"{a}/seed_0/student/model.pt")
    metrics = {s["kind"]: s["epochs"] for s in client.get(f"/experiments/{b}/metrics", headers=alice).json()["data"]}
    assert len(metrics["baseline"]) == 1
    rows = {e: [r for r in client.get(f"/experiments/{e}/results", headers=alice).json()["data"]
                if r["method"] == "baseline"] for e in (a, b)}
    assert rows[a] == rows[b] and rows[a]
    # the models and their cards describe b (its name, its alpha) and say where the reused one was trained
    models = {m["method"]: m for m in client.get("/models", params={"experiment_id": b}, headers=alice).json()["data"]}
    assert models["baseline"]["reused_from"] == a and models["sikd"]["reused_from"] is None
    card = client.get(f"/models/{models['baseline']['id']}/card", headers=alice).json()
    assert card["spec"]["name"] == "b" and card["spec"]["alpha"] == 0.5 and card["name"].startswith(f"b #{b} ")
    assert card["provenance"] == f"trained in experiment {a} (reused)" and card["links"]["experiment_id"] == b
    md = client.get(f"/models/{models['baseline']['id']}/card", params={"format": "md"}, headers=alice).text
    assert f"Provenance: trained in experiment {a} (reused)" in md
    own = client.get(f"/models/{models['sikd']['id']}/card", headers=alice).json()
    assert own["provenance"] == "trained in this experiment" and own["method"]["alpha"] == 0.5
    # deleting the first experiment keeps what the second shares; a third reuses it from the second's files
    assert client.delete(f"/experiments/{a}", headers=alice).status_code == 204
    drain(jobs)
    assert (root / f"{b}/seed_0/baseline/model.pt").is_file() and not (root / str(a)).exists()
    c = post(client, alice, datasets, name="c", alpha=5.0)
    drain(jobs)
    sc = stages(client, alice, c)
    assert sc["baseline"]["reused_from"] == a and sc["baseline"]["status"] == "succeeded"  # a trained it
    [base_c] = [m for m in client.get("/models", params={"experiment_id": c}, headers=alice).json()["data"]
                if m["method"] == "baseline"]
    card = client.get(f"/models/{base_c['id']}/card", headers=alice).json()
    assert card["provenance"] == f"trained in experiment {a} (reused)" and card["spec"]["alpha"] == 5.0
    assert client.get(f"/experiments/{c}", headers=alice).json()["status"] == "succeeded"
    # reuse: false retrains; so does another split (a setting every stage depends on)
    d = post(client, alice, datasets, name="d", alpha=5.0, reuse=False)
    e = post(client, alice, datasets, name="e", split_seed=1)
    drain(jobs)
    assert all(s["reused_from"] is None for s in stages(client, alice, d).values())
    assert all(s["reused_from"] is None for s in stages(client, alice, e).values())


def test_never_another_users_private_stage(client, admin, alice, bob, datasets, jobs, phantom_zips, settings):
    post(client, alice, datasets, name="alice", methods=["baseline"])
    drain(jobs)
    # bob uploads the same files: same content, same stage key, but alice's data is private
    bob_data = {k: upload(client, bob, z, name=k).json()["id"] for k, z in phantom_zips.items()}
    b = post(client, bob, bob_data, name="bob", methods=["baseline"])
    drain(jobs)
    assert stages(client, bob, b)["baseline"]["reused_from"] is None
    # a stage trained on shared datasets is anyone's to reuse (carol may not reuse alice's, trained on private data)
    from sikd_service.db import session_scope
    from sikd_service.tables import Dataset

    with session_scope(settings) as s:
        for ds_id in bob_data.values():
            s.get(Dataset, ds_id).shared = True
    carol = new_user(client, admin, "carol")
    c = post(client, carol, bob_data, name="carol on shared", methods=["baseline"])
    drain(jobs)
    assert stages(client, carol, c)["baseline"]["reused_from"] == b
    # the same for scores: bob's evaluation computed its own, carol's took bob's (shared data, the same models)
    assert stages(client, bob, b)["evaluation"]["message"] is None
    assert stages(client, carol, c)["evaluation"]["message"] == f"evaluation reused from experiment {b}"


def results(client, headers, eid):
    r = client.get(f"/experiments/{eid}/results", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_evaluation_reuses_the_scores_of_reused_models(client, alice, datasets, jobs, settings):
    a = post(client, alice, datasets, name="a", save_predictions=True)
    drain(jobs)
    b = post(client, alice, datasets, name="b", alpha=0.5, save_predictions=True)
    drain(jobs)
    ev = stages(client, alice, b)["evaluation"]
    assert ev["message"] == f"scores reused: baseline (seed 0) from experiment {a}; computed: sikd (seed 0)"
    assert ev["reused_from"] is None and ev["status"] == "succeeded"
    reused = client.get(f"/experiments/{b}/results", headers=alice).json()["reused_scores"]
    assert {(r["method"], r["split"], r["reused_from"]["experiment"]) for r in reused} == {
        ("baseline", "intra", a), ("baseline", "cross", a)}
    assert [r for r in results(client, alice, a) if r["method"] == "baseline"] == [
        r for r in results(client, alice, b) if r["method"] == "baseline"]
    # everything identical but the name: the whole evaluation is reused, and says from where
    c = post(client, alice, datasets, name="c", save_predictions=True)
    drain(jobs)
    ev = stages(client, alice, c)["evaluation"]
    assert ev["message"] == f"evaluation reused from experiment {a}" and ev["reused_from"] == a
    assert results(client, alice, c) == results(client, alice, a)
    cases = client.get(f"/experiments/{c}/cases", headers=alice).json()["data"]
    assert cases == client.get(f"/experiments/{a}/cases", headers=alice).json()["data"]
    assert client.get(f"/experiments/{c}/overlays", headers=alice).json()["data"]  # its masks, linked
    # b's report equals its evaluation computed again from scratch (reuse off, on the same models)
    from sikd_service.db import session_scope
    from sikd_service.tables import Experiment
    from worker.tasks import Claimed, build_experiment

    before = client.get(f"/experiments/{b}/results", headers=alice).json()
    with session_scope(settings) as s:
        e = s.get(Experiment, b)
        claimed = Claimed(stage_id=0, kind="evaluation", seed=None, attempt=1, experiment_id=b, owner_id=e.owner_id,
                          spec={**e.spec, "reuse": False}, datasets={x.key: x.dataset_id for x in e.dataset_links},
                          token="")
    again = build_experiment(settings, claimed, evaluation=True).evaluate()
    assert again["reused_scores"] == []
    after = client.get(f"/experiments/{b}/results", headers=alice).json()
    assert after["reused_scores"] == [] and before["reused_scores"]
    assert {k: v for k, v in after.items() if k != "reused_scores"} == {
        k: v for k, v in before.items() if k != "reused_scores"}


def test_a_separate_request_waits_for_an_identical_stage_still_training(client, alice, bob, datasets, jobs,
                                                                       phantom_zips):
    a = post(client, alice, datasets, name="a")
    sent_a = list(jobs)
    b = post(client, alice, datasets, name="b", alpha=0.5)  # its baseline and teacher are a's, still queued
    sa, sb = stages(client, alice, a), stages(client, alice, b)
    for kind in ("baseline", "teacher"):
        assert sb[kind]["status"] == "pending" and sb[kind]["reuse_wait"] == sa[kind]["id"]
        assert sb[kind]["message"] == f"waiting for experiment {a}'s identical {kind} stage"
    assert sb["student"]["reuse_wait"] is None  # its alpha differs: its own
    assert jobs == sent_a  # nothing of b was sent: no worker holds it while it waits
    # another user's identical data is private: bob's stages do not wait for alice's
    bob_data = {k: upload(client, bob, z, name=k).json()["id"] for k, z in phantom_zips.items()}
    c = post(client, bob, bob_data, name="bob", methods=["baseline"])
    assert stages(client, bob, c)["baseline"]["status"] == "queued"
    outcomes = drain(jobs)
    assert "waiting" not in [out for _, _, out in outcomes]
    sb = stages(client, alice, b)
    assert {k: s["reused_from"] for k, s in sb.items()} == {"baseline": a, "teacher": a, "student": None,
                                                            "evaluation": None}
    assert all(client.get(f"/experiments/{e}", headers=h).json()["status"] == "succeeded"
               for e, h in ((a, alice), (b, alice), (c, bob)))
    assert stages(client, bob, c)["baseline"]["reused_from"] is None
    # the stage waited for is cancelled: the waiting one trains itself
    d = post(client, alice, datasets, name="d", split_seed=5, methods=["baseline"])
    e = post(client, alice, datasets, name="e", split_seed=5, methods=["baseline"])
    assert stages(client, alice, e)["baseline"]["reuse_wait"] == stages(client, alice, d)["baseline"]["id"]
    jobs.clear()
    assert client.post(f"/experiments/{d}/cancel", headers=alice).status_code == 200
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 2  # e's baseline, then its evaluation
    se = stages(client, alice, e)
    assert se["baseline"]["reused_from"] is None and se["baseline"]["status"] == "succeeded"


def test_two_requests_stored_at_once_train_their_shared_stage_once(client, alice, datasets, jobs, settings):
    """Neither saw the other when it was stored: the later stage, claimed first, gives its claim back and waits."""
    from sikd_service.db import session_scope
    from sikd_service.tables import Stage
    from worker.tasks import run_training_stage

    a = post(client, alice, datasets, name="a", methods=["baseline"])
    b = post(client, alice, datasets, name="b", methods=["baseline"])
    first, later = stages(client, alice, a)["baseline"]["id"], stages(client, alice, b)["baseline"]["id"]
    with session_scope(settings) as s:  # as if stored concurrently: b's baseline queued, waiting for nothing
        st = s.get(Stage, later)
        st.status, st.reuse_wait, st.message = "queued", None, None
    assert run_training_stage(later) == "waiting"  # claimed before a's: it waits instead of training
    sb = stages(client, alice, b)["baseline"]
    assert (sb["status"], sb["reuse_wait"], sb["attempts"]) == ("pending", first, 0)
    assert f"waiting for experiment {a}'s identical baseline stage" == sb["message"]
    jobs.clear()
    assert run_training_stage(first) == "succeeded"  # a trains; b is released and sent ...
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 3  # ... reuses it; both evaluations
    assert stages(client, alice, b)["baseline"]["reused_from"] == a
    assert run_training_stage(first) == "skipped"  # the first never waits for the later one


def test_a_sweep_stage_waits_for_its_identical_one_and_trains_if_that_is_cancelled(client, alice, datasets, jobs):
    r = client.post("/sweeps", json=tiny_spec(datasets, name="w", **FAST, methods=["baseline"],
                                              sweep={"lr": [0.01, 0.02]}), headers=alice)
    a, b = (e["id"] for e in r.json()["experiments"])  # lr differs: nothing shared (the control)
    assert all(s["reuse_wait"] is None for s in stages(client, alice, b).values() if s["kind"] != "evaluation")
    r = client.post("/sweeps", json=tiny_spec(datasets, name="w", **FAST, methods=["baseline"],
                                              sweep={"alpha": [1, 2]}), headers=alice)
    a, b = (e["id"] for e in r.json()["experiments"])  # alpha does not reach a baseline: shared
    wait = stages(client, alice, b)["baseline"]
    assert wait["status"] == "pending" and wait["reuse_wait"] == stages(client, alice, a)["baseline"]["id"]
    assert f"waiting for experiment {a}" in wait["message"]
    jobs.clear()
    assert client.post(f"/experiments/{a}/cancel", headers=alice).status_code == 200
    sb = stages(client, alice, b)
    assert sb["baseline"]["status"] == "queued" and sb["baseline"]["reuse_wait"] is None  # released and sent ...
    assert jobs == [[("sikd.train_stage", (sb["baseline"]["id"],))]]
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 2  # ... trained itself, then the evaluation
    sb = stages(client, alice, b)
    assert sb["baseline"]["reused_from"] is None and sb["baseline"]["status"] == "succeeded"


def test_a_sweep_creates_its_experiments_sharing_their_stages(client, alice, bob, datasets, jobs):
    body = tiny_spec(datasets, name="sw", **FAST, sweep={"alpha": [0.5, 1, 2]})
    r = client.post("/sweeps", json=body, headers=alice)
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert sweep["settings"] == ["alpha"] and len(sweep["experiments"]) == 3
    exps = sweep["experiments"]
    assert [e["sweep_values"] for e in exps] == [{"alpha": 0.5}, {"alpha": 1}, {"alpha": 2}]
    assert [e["name"] for e in exps] == ["sw alpha=0.5", "sw alpha=1", "sw alpha=2"]
    assert all(e["sweep_id"] == sweep["id"] for e in exps)
    outcomes = drain(jobs)
    assert all(out in ("succeeded", "skipped") for _, _, out in outcomes)
    first = exps[0]["id"]
    for e in exps[1:]:
        st = stages(client, alice, e["id"])
        assert st["baseline"]["reused_from"] == first and st["teacher"]["reused_from"] == first
        assert st["student"]["reused_from"] is None
    got = client.get(f"/sweeps/{sweep['id']}", headers=alice).json()
    assert [e["status"] for e in got["experiments"]] == ["succeeded"] * 3
    pts = {(p["values"]["alpha"], p["method"], p["split"]) for p in got["points"]}
    assert pts == {(a, m, s) for a in (0.5, 1, 2) for m in ("baseline", "sikd") for s in ("intra", "cross")}
    assert all(p["ci_low"] <= p["dice"] <= p["ci_high"] for p in got["points"])
    base = {p["dice"] for p in got["points"] if p["method"] == "baseline" and p["split"] == "intra"}
    assert len(base) == 1  # one baseline, shared
    assert client.get(f"/sweeps/{exps[1]['id']}", headers=alice).status_code == 404  # not a sweep's id
    assert client.get(f"/sweeps/{sweep['id']}", headers=bob).status_code == 404  # another user's


@pytest.mark.parametrize(("sweep", "needle"), [
    ({"alpha": []}, "non-empty list"), ({"network": ["unet"]}, "cannot sweep 'network'"), ([1], "mapping"),
    ({"alpha": [1, 1]}, "duplicate"), ({"alpha": list(range(1, 8)), "lr": [0.1, 0.01]}, "at most 12"),
    ({"alpha": [1, -1]}, "alpha=-1"),
])
def test_bad_sweeps_are_422_and_store_nothing(client, alice, datasets, jobs, sweep, needle):
    r = client.post("/sweeps", json=tiny_spec(datasets, sweep=sweep), headers=alice)
    assert r.status_code == 422 and needle in r.json()["detail"], r.text
    assert client.get("/experiments", headers=alice).json()["count"] == 0 and not jobs


def test_sweep_to_experiments_is_pointed_to_sweeps(client, alice, datasets):
    r = client.post("/experiments", json=tiny_spec(datasets, sweep={"alpha": [1, 2]}), headers=alice)
    assert r.status_code == 422 and "POST /sweeps" in r.json()["detail"]
