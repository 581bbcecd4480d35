"""GET /datasets/{id}/plan: `sikd plan` on a stored dataset; its spec is accepted by POST /experiments."""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.timeout(180)


def test_plan_of_a_stored_dataset_posts_as_an_experiment(client, alice, datasets):
    a, b = datasets["vendor_a"], datasets["vendor_b"]
    r = client.get(f"/datasets/{a}/plan", params={"eval_datasets": [b], "device": "cpu", "budget_minutes": 5},
                   headers=alice)
    assert r.status_code == 200, r.text
    body = r.json()
    spec = body["spec"]
    assert spec["train_dataset"] == a and spec["eval_datasets"] == [b] and spec["network"] == "unet"
    assert spec["image_size"] == [32, 32]  # the phantoms are 32 px: never planned above the median image
    fp = body["fingerprint"]
    assert fp["pairs"] == 16 and fp["num_classes"] == 4 and fp["name"] == "vendor_a" and fp["median_size"] == [32, 32]
    assert body["device"]["kind"] == "cpu" and body["estimate"]["seconds"] > 0
    assert yaml.safe_load(body["yaml"]) == spec and "# estimated run time" in body["yaml"]
    spec["epochs"] = 1  # (the plan's own epochs are fine too; the experiment is only queued here)
    r = client.post("/experiments", json=spec, headers=alice)
    assert r.status_code == 201, r.text


def test_plan_errors(client, alice, bob, datasets):
    a = datasets["vendor_a"]
    assert client.get("/datasets/999/plan", headers=alice).status_code == 404
    assert client.get(f"/datasets/{a}/plan", headers=bob).status_code == 404  # not bob's
    r = client.get(f"/datasets/{a}/plan", params={"device": "tpu", "measure": False}, headers=alice)
    assert r.status_code == 422 and "device must be" in r.json()["detail"]
    r = client.get(f"/datasets/{a}/plan", params={"eval_datasets": [998], "measure": False}, headers=alice)
    assert r.status_code == 404
    r = client.get(f"/datasets/{a}/plan", params={"measure": False}, headers=alice)
    assert r.status_code == 200 and r.json()["estimate"] is None
