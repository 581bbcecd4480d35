"""POST /experiments takes a typed ``ExperimentCreate`` body: a bad field is a 422 whose ``errors`` name it
(``loc`` ``["body", "<field>"]``, FastAPI's item shape), with the spec's own wording; every experiment comes
with its stage plan (sikd_core.methods.plan), the one answer to which stages it trains."""

from __future__ import annotations

import pytest

from tests.service_helpers import tiny_spec

pytestmark = pytest.mark.timeout(60)


def _by_field(body: dict) -> dict[str, str]:
    return {".".join(str(p) for p in e["loc"][1:]): e["msg"] for e in body["errors"] if e["loc"][:1] == ["body"]}


def test_spec_errors_name_their_fields(client, alice, datasets, jobs):
    r = client.post("/experiments", json={**tiny_spec(datasets), "lr": -0.001, "image_size": 8, "epochz": 3},
                    headers=alice)
    assert r.status_code == 422, r.text
    body = r.json()
    assert {"loc": ["body", "lr"], "msg": "Input should be greater than 0", "type": "greater_than"} in body["errors"]
    fields = _by_field(body)
    assert fields["image_size"] == "image_size must lie in [16, 4096]; got [8, 8]"  # no "Value error," prefix
    assert fields["epochz"].startswith("unknown key; known keys: name, train_dataset,")
    assert body["detail"].startswith("invalid experiment spec:\n")
    assert "\n  lr: Input should be greater than 0" in body["detail"]
    # checks across fields name the field they refuse, not the whole spec
    r = client.post("/experiments", json=tiny_spec(datasets, val_fraction=0.5, test_fraction=0.5,
                                                   methods=["maxstyle"], model="basic_unet", model_kwargs={},
                                                   eval_datasets=[datasets["vendor_a"]]), headers=alice)
    fields = _by_field(r.json())
    assert fields["test_fraction"] == "val_fraction + test_fraction must leave data to train on (< 0.95)"
    assert fields["methods"] == "method 'maxstyle' needs model unet; got 'basic_unet'"
    assert fields["eval_datasets"].startswith("eval_datasets must not contain the training dataset")
    r = client.post("/experiments", json={"name": "x"}, headers=alice)
    assert _by_field(r.json()) == {"train_dataset": "required"}
    assert client.get("/experiments", headers=alice).json()["count"] == 0 and not jobs


def test_service_refusals_name_their_fields_too(client, alice, datasets, jobs):
    r = client.post("/experiments", json=tiny_spec(datasets, eval_datasets=[999]), headers=alice)
    assert r.status_code == 422 and r.json()["detail"] == "unknown dataset id(s): 999"
    assert _by_field(r.json()) == {"eval_datasets": "unknown dataset id(s): 999"}
    r = client.post("/experiments", json=tiny_spec(datasets, train_dataset="abc"), headers=alice)
    assert _by_field(r.json()) == {"train_dataset": "not a dataset id: abc"}
    r = client.post("/experiments", json=tiny_spec(datasets, name="<b>x</b>"), headers=alice)
    assert list(_by_field(r.json())) == ["name"] and "not allowed" in _by_field(r.json())["name"]


def test_openapi_documents_the_typed_body_and_its_422(client):
    doc = client.get("/openapi.json").json()
    post = doc["paths"]["/experiments"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ExperimentCreate"}
    schema = doc["components"]["schemas"]["ExperimentCreate"]
    assert schema["additionalProperties"] is False and schema["required"] == ["train_dataset"]
    assert {"lr", "image_size", "methods", "eval_datasets"} <= set(schema["properties"])
    assert post["responses"]["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


def test_every_experiment_comes_with_its_stage_plan(client, alice, datasets, jobs):
    """One teacher per seed serves every distilled method: 2 x (4 x 3 + 5) = 34 epochs, where one teacher per
    distilled method (the dashboard's old rule) counted 2 x (4 x 3 + 3 x 5) = 54."""
    spec = tiny_spec(datasets, seeds=[0, 1], epochs=3, teacher_epochs=5,
                     methods=["baseline", "sikd", "gin+sikd", "maxstyle+sikd"])
    exp = client.post("/experiments", json=spec, headers=alice).json()
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    plan = got["plan"]
    assert sum(p["epochs"] for p in plan) == 34
    assert [(p["stage"], p["seed"], p["role"]) for p in plan if p["seed"] == 0] == [
        ("baseline", 0, "plain"), ("teacher", 0, "teacher"), ("student", 0, "student"), ("gin+sikd", 0, "student"),
        ("maxstyle+sikd", 0, "student")]
    assert {(p["stage"], p["seed"]) for p in plan} == {(s["kind"], s["seed"]) for s in got["stages"]
                                                        if s["kind"] != "evaluation"}
    student = next(p for p in plan if p["stage"] == "gin+sikd")
    assert student == {"stage": "gin+sikd", "seed": 0, "role": "student", "method": "gin+sikd", "base": "gin",
                       "teacher": "teacher", "epochs": 3, "network": "unet"}
    listed = client.get("/experiments", headers=alice).json()["data"][0]
    assert listed["plan"] == plan and exp["plan"] == plan
