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
                                                   methods=["maxstyle"], network="basic_unet", network_kwargs={},
                                                   eval_datasets=[datasets["vendor_a"]]), headers=alice)
    fields = _by_field(r.json())
    assert fields["test_fraction"] == "val_fraction + test_fraction must leave data to train on (< 0.95)"
    assert fields["methods"] == "method 'maxstyle' needs network unet; got 'basic_unet'"
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


def test_the_old_names_of_network_are_accepted_and_the_new_ones_written(client, alice, datasets, jobs):
    """``model``/``model_kwargs`` (the names before ``network``/``network_kwargs``) are still taken by every body
    that holds a spec; responses and stored rows say ``network``; an error names the key the client sent, and both
    names with different values are refused naming both."""
    old = tiny_spec(datasets, name="old names", model="attention_unet", model_kwargs={"channels": [4, 8]})
    del old["network_kwargs"]
    r = client.post("/experiments", json=old, headers=alice)
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert (spec["network"], spec["network_kwargs"]) == ("attention_unet", {"channels": [4, 8]})
    assert "model" not in spec and "model_kwargs" not in spec
    assert {p["network"] for p in r.json()["plan"]} == {"attention_unet"}
    found = client.get("/experiments", params={"network": "attention_unet"}, headers=alice).json()
    assert [e["id"] for e in found["data"]] == [r.json()["id"]]
    est = client.post("/experiments/estimate", json=old, headers=alice)
    assert est.status_code == 200 and {p["network"] for p in est.json()["plan"]} == {"attention_unet"}
    sweep = client.post("/sweeps", json={**old, "name": "old sweep", "sweep": {"alpha": [1, 2]}}, headers=alice)
    assert sweep.status_code == 201, sweep.text
    assert {e["spec"]["network"] for e in sweep.json()["experiments"]} == {"attention_unet"}

    r = client.post("/experiments", json={**old, "model": "nope"}, headers=alice)
    assert r.status_code == 422 and _by_field(r.json()) == {"model": r.json()["errors"][0]["msg"]}
    assert r.json()["errors"][0]["msg"].startswith("unknown network 'nope'; known networks:")
    r = client.post("/experiments", json={**old, "model_kwargs": {"depth": 3}}, headers=alice)
    assert list(_by_field(r.json())) == ["model_kwargs"]
    r = client.post("/experiments", json={**old, "network": "unet", "model_kwargs": {}}, headers=alice)
    assert r.status_code == 422 and r.json()["errors"] == [{
        "loc": ["body", "model"], "type": "extra_forbidden",
        "msg": "the old name of network; both are given, with different values (model: 'attention_unet'): give "
               "network only"}]
    assert client.post("/experiments", json={**old, "network": "attention_unet"}, headers=alice).status_code == 201
    r = client.post("/sweeps", json={**old, "network": "unet", "sweep": {"alpha": [1, 2]}}, headers=alice)
    assert r.status_code == 422 and "model: the old name of network" in r.json()["detail"]


def test_options_list_networks_and_the_deprecated_models(client, alice):
    opts = client.get("/options", headers=alice).json()
    assert opts["networks"] == opts["models"] and "unet" in {n["name"] for n in opts["networks"]}
    maxstyle = next(m for m in opts["methods"] if m["name"] == "maxstyle")
    assert maxstyle["networks"] == maxstyle["models"] == ["unet"]
    assert opts["presets"][1]["values"]["network"] == "unet" and "model" not in opts["presets"][1]["values"]
    assert {"network", "network_kwargs"} <= set(opts["spec_defaults"]) and "model" not in opts["spec_defaults"]
    doc = client.get("/openapi.json").json()["components"]["schemas"]
    assert doc["OptionsPublic"]["properties"]["models"]["deprecated"] is True
    assert "old name" in doc["ExperimentCreate"]["properties"]["network"]["description"]
