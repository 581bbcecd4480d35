"""POST /experiments/estimate: a spec's stage plan and its run time, from costs measured on stages that ran here
(sikd_service.estimate), else from steps a worker timed for it (sikd_service.steptimes; the worker's task runs for
real here), a-priori or "not measured yet" meanwhile: the API never times a step."""

from __future__ import annotations

import pytest

from sikd_service.celery_app import TASK_TIME_STEPS
from tests.service_helpers import drain, tiny_spec

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow(seconds=25)]


def test_the_estimate_is_calibrated_by_the_stages_that_ran(client, alice, datasets, jobs):
    # reuse off: each experiment below trains (and measures) its stages; reuse is checked on its own at the end
    spec = tiny_spec(datasets, methods=["baseline", "sikd"], epochs=2, reuse=False)
    first = client.post("/experiments/estimate", json=spec, headers=alice)
    assert first.status_code == 200, first.text
    est = first.json()
    # nothing measured yet: no figure, and one timing (the three stages share a configuration) sent to a worker
    assert [s["basis"] for s in est["stages"]] == ["not measured yet (being timed on a worker)"] * 3
    assert est["seconds"] is None and est["training_seconds"] is None and [s["seconds"] for s in est["stages"]] == [None] * 3
    assert "unet 32x32 batch 4 is queued for timing" in est["timing"] and jobs.names() == [[TASK_TIME_STEPS]]
    assert est["evaluation_basis"].startswith("model") and est["measured_stages"] == 0
    assert est["planned_epochs"] == 6 and [p["stage"] for p in est["plan"]] == ["baseline", "teacher", "student"]
    assert client.get("/experiments", headers=alice).json()["count"] == 0  # nothing stored
    assert [out for _, _, out in drain(jobs)] == ["succeeded"]  # timed on the worker
    timed = client.post("/experiments/estimate", json=spec, headers=alice).json()
    assert all(s["basis"].startswith("timed on worker worker-1 (") for s in timed["stages"])
    assert timed["seconds"] > 0 and timed["timing"] is None and not jobs  # reused: nothing sent again
    assert all(s["step_seconds"] > 0 for s in timed["stages"])
    # another width of the timed network: a-priori, scaled by the U-Net's work per step, while it is timed
    wider = client.post("/experiments/estimate", json={**spec, "network_kwargs": {"widths": [8, 16, 32]}},
                        headers=alice).json()
    assert all(s["basis"].startswith('a-priori: scaled from unet {"widths": [4, 8, 16]} timed on worker worker-1')
               for s in wider["stages"]) and wider["seconds"] > timed["seconds"]
    from sikd_core.plan import unet_size

    ratio = unet_size([8, 16, 32], [32, 32], 1, 4)[2] / unet_size([4, 8, 16], [32, 32], 1, 4)[2]
    assert wider["stages"][0]["step_seconds"] == pytest.approx(ratio * timed["stages"][0]["step_seconds"], rel=0.01)
    assert jobs.names() == [[TASK_TIME_STEPS]]
    jobs.clear()

    exp = client.post("/experiments", json=spec, headers=alice).json()
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 4
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    from datetime import datetime

    def took(s: dict) -> float:
        return (datetime.fromisoformat(s["finished_at"]) - datetime.fromisoformat(s["started_at"])).total_seconds()

    ran = sum(took(s) for s in got["stages"])  # one worker slot: the stages ran one after another
    est = client.post("/experiments/estimate", json=spec, headers=alice).json()
    assert [s["basis"] for s in est["stages"]] == ["measured"] * 3 and est["measured_stages"] == 3
    assert est["evaluation_basis"] == "measured" and est["queue_seconds"] == 0 and est["ahead"] == 0
    # the same spec again: its own measured stages, so close to what it took (the suite's load varies: 2x)
    assert ran / 2 <= est["seconds"] <= ran * 2, (est, ran)
    # another size of the same network is scaled from the measured one; a student from the measured student
    bigger = client.post("/experiments/estimate", json={**spec, "image_size": 64}, headers=alice).json()
    assert {s["basis"] for s in bigger["stages"]} == {"measured, scaled"}
    assert bigger["stages"][0]["step_seconds"] == pytest.approx(4 * est["stages"][0]["step_seconds"], rel=0.01)
    # a queued experiment is ahead of the next one
    second = client.post("/experiments", json={**spec, "reuse": True}, headers=alice).json()  # keys its stages
    queued = client.post("/experiments/estimate", json=spec, headers=alice).json()
    assert queued["ahead"] == 1 and queued["queue_seconds"] == pytest.approx(
        est["training_seconds"] + est["evaluation_seconds"], rel=0.05, abs=0.3)  # figures rounded to 0.1 s
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 4
    again = client.post("/experiments/estimate", json=spec, headers=alice).json()  # calibrated on both experiments
    assert again["measured_stages"] == 6 and [s["basis"] for s in again["stages"]] == ["measured"] * 3
    # with reuse (the default), a spec identical but for alpha reuses the finished baseline and teacher: they cost a
    # second each, only the student trains; the total falls accordingly
    alpha = client.post("/experiments/estimate", json={**spec, "reuse": True, "alpha": 1.0}, headers=alice).json()
    by = {s["stage"]: s for s in alpha["stages"]}
    assert by["baseline"]["basis"] == f"reused from experiment {second['id']}" and by["baseline"]["seconds"] == 1.0  # not yet measured
    assert by["teacher"]["basis"] == f"reused from experiment {second['id']}" and by["student"]["basis"] == "measured"
    assert by["student"]["seconds"] == again["stages"][2]["seconds"]
    assert alpha["training_seconds"] <= again["training_seconds"] + 2.0  # at most the link's default second each
    # once a reuse ran here, it is costed at the measured link time (milliseconds), below a trained stage's
    reusing = client.post("/experiments", json={**spec, "reuse": True, "alpha": 1.0}, headers=alice).json()
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 4
    got = client.get(f"/experiments/{reusing['id']}", headers=alice).json()
    assert [s["reused_from"] for s in got["stages"][:2]] == [second["id"]] * 2
    alpha2 = client.post("/experiments/estimate", json={**spec, "reuse": True, "alpha": 5.0}, headers=alice).json()
    by2 = {s["stage"]: s for s in alpha2["stages"]}
    assert by2["baseline"]["seconds"] < min(s["seconds"] for s in again["stages"]), alpha2
    assert alpha2["training_seconds"] < again["training_seconds"]
    off = client.post("/experiments/estimate", json={**spec, "alpha": 1.0}, headers=alice).json()  # reuse: false
    assert [s["basis"] for s in off["stages"]] == ["measured"] * 3


def test_estimate_refuses_a_bad_spec_as_create_does(client, alice, datasets, jobs):
    r = client.post("/experiments/estimate", json=tiny_spec(datasets, lr=-1, eval_datasets=[999]), headers=alice)
    assert r.status_code == 422 and {"loc": ["body", "lr"], "msg": "Input should be greater than 0",
                                     "type": "greater_than"} in r.json()["errors"]
    r = client.post("/experiments/estimate", json=tiny_spec(datasets, eval_datasets=[999]), headers=alice)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "eval_datasets"]
