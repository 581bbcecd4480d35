"""Training health through the service: a degenerate run (lr 1: every pixel one class) run by the worker's task
functions shows its findings on the stages (GET /experiments/{id}) and in the results (GET .../results, with
the unhealthy models on every comparison); ``on_unhealthy: stop`` fails the stage with the finding's message.
SYNTHETIC phantoms, tiny U-Net, SQLite and Postgres."""

from __future__ import annotations

import pytest

from tests.service_helpers import drain, tiny_spec

pytestmark = pytest.mark.timeout(180)

DEGENERATE = dict(lr=1.0, epochs=2, steps_per_epoch=2, augment=False, feature_maps=0, save_predictions=False,
                  network_kwargs={"widths": [4, 8]}, student_head_init="random")  # the student collapses to one class
KEYS = {"code", "severity", "stage", "seed", "method", "epoch", "message", "values"}


def test_degenerate_run_shows_its_health_in_stages_and_results(client, alice, datasets, jobs):
    r = client.post("/experiments", json=tiny_spec(datasets, name="degenerate", methods=["baseline", "sikd", "gin+sikd"],
                                                   **DEGENERATE), headers=alice)
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    assert all(s["health"] == [] for s in r.json()["stages"])
    assert r.json()["health"]["status"] == "healthy"  # nothing has run yet
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 5  # "warn" (the default) records and goes on
    exp = client.get(f"/experiments/{eid}", headers=alice).json()
    stages = {s["kind"]: s for s in exp["stages"]}
    for kind in ("baseline", "teacher", "student"):
        codes = {f["code"] for f in stages[kind]["health"]}
        assert "collapsed_prediction" in codes, (kind, stages[kind]["health"])
        assert all(set(f) == KEYS and f["stage"] == kind for f in stages[kind]["health"])
        assert {f["message"] for f in stages[kind]["health"]} <= set(stages[kind]["warnings"])
    assert "teacher_not_learned" in {f["code"] for f in stages["teacher"]["health"]}
    res = client.get(f"/experiments/{eid}/results", headers=alice).json()
    health = res["health"]
    assert health["status"] == "unhealthy"
    assert health["models"] == {"baseline/0": "unhealthy", "sikd/0": "unhealthy", "gin+sikd/0": "unhealthy"}
    assert {"collapsed_prediction", "cross_at_chance"} <= {f["code"] for f in health["findings"]}
    # both students carry the teacher's findings (the gin+sikd student was reported healthy on that count)
    teacher = [f for f in health["findings"] if f["stage"] == "teacher"]
    assert teacher and all(f in health["by_model"][m] for f in teacher for m in ("sikd/0", "gin+sikd/0"))
    assert not any(f["stage"] == "teacher" for f in health["by_model"]["baseline/0"])
    placed = [f for v in health["by_model"].values() for f in v]
    assert all(f in placed for f in health["findings"] if f not in health["other"])
    assert all(f not in placed for f in health["other"])
    assert res["comparisons"] and all(c["unhealthy_models"] for c in res["comparisons"])
    assert any(c["unhealthy_models"] == ["baseline/0", "sikd/0"] for c in res["comparisons"])
    # the list, the experiment and the results read one health
    [item] = [e for e in client.get("/experiments", headers=alice).json()["data"] if e["id"] == eid]
    assert item["health"] == health == client.get(f"/experiments/{eid}", headers=alice).json()["health"]
    # every model's card says the same, in words
    models = client.get(f"/models?experiment_id={eid}", headers=alice).json()["data"]
    assert sorted(f"{m['method']}/{m['seed']}" for m in models) == sorted(health["models"])
    for m in models:
        card = client.get(f"/models/{m['id']}/card", headers=alice).json()
        assert card["health"] == {"status": "unhealthy", "findings": health["by_model"][f"{m['method']}/{m['seed']}"]}
        md = client.get(f"/models/{m['id']}/card?format=md", headers=alice).text
        section = md[md.index("## Health"):md.index("## Intended use")]
        assert "**UNHEALTHY**" in section and '{"' not in section and "no training warnings" not in section
    md = client.get(f"/experiments/{eid}/report", headers=alice).text
    assert md.index("## Training health") < md.index("## Scores") and "⚠ vendor_a" in md


def test_stop_fails_the_stage_with_the_finding(client, alice, datasets, jobs):
    spec = tiny_spec(datasets, name="stop", methods=["baseline"], on_unhealthy="stop", **DEGENERATE)
    r = client.post("/experiments", json=spec, headers=alice)
    assert r.status_code == 201, r.text
    outcomes = [out for _, _, out in drain(jobs)]
    assert outcomes[0] == "failed"
    exp = client.get(f"/experiments/{r.json()['id']}", headers=alice).json()
    base = exp["stages"][0]
    assert base["status"] == "failed" and "on_unhealthy: stop" in base["error"]
    assert base["health"] and base["health"][0]["message"] in base["error"]
    assert exp["status"] == "failed" and exp["error"].startswith("baseline (seed 0) failed: ")


def test_on_unhealthy_is_validated(client, alice, datasets):
    r = client.post("/experiments", json=tiny_spec(datasets, on_unhealthy="ignore"), headers=alice)
    assert r.status_code == 422 and "on_unhealthy" in r.text


def test_weakened_baseline_is_flagged_below_the_reference_in_results_and_report(client, alice, datasets, jobs):
    """A far too small learning rate leaves the baseline untrained while the reference recipe learns: the results
    carry the baseline's strength, every comparison against the baseline carries it, and the health finding
    ``baseline_below_reference`` flags the baseline (SYNTHETIC phantoms)."""
    spec = tiny_spec(datasets, name="weak baseline", methods=["baseline", "sikd", "reference"], lr=1e-7, epochs=6,
                     steps_per_epoch=4, feature_maps=0, save_predictions=False)
    r = client.post("/experiments", json=spec, headers=alice)
    assert r.status_code == 201, r.text
    assert [s["kind"] for s in r.json()["stages"]] == ["baseline", "reference", "teacher", "student", "evaluation"]
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 5
    res = client.get(f"/experiments/{r.json()['id']}/results", headers=alice).json()
    strength = {(e["dataset"], e["split"]): e for e in res["baseline_strength"]}
    intra = strength[("vendor_a", "intra")]
    assert intra["below_reference"] and intra["dice"]["mean_diff"] < -0.02 and intra["dice"]["ci_high"] < 0
    flagged = [f for f in res["health"]["findings"] if f["code"] == "baseline_below_reference"]
    assert [(f["method"], f["seed"]) for f in flagged] == [("baseline", 0)]
    assert res["health"]["models"]["baseline/0"] == "unhealthy"
    for comp in res["comparisons"]:  # sikd - baseline on every dataset: its baseline's strength there
        assert comp["b"] == "baseline"
        own = strength[(comp["dataset"], comp["split"])]
        assert comp["baseline_strength"]["mean_diff"] == own["dice"]["mean_diff"]
        assert comp["baseline_strength"]["below_reference"] is own["below_reference"]
        assert "baseline/0" in comp["unhealthy_models"]  # a weak baseline weakens its comparisons everywhere
    assert {r["method"] for r in res["data"]} == {"baseline", "sikd", "reference"}
    md = client.get(f"/experiments/{r.json()['id']}/report", headers=alice).text
    assert "## Baseline strength" in md and "**The baseline trails the reference recipe**" in md
