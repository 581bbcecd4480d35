"""Ownership: other users' ids are 404 everywhere (read, list, download, cancel, delete); admins see
everything; shared (demo) datasets are visible to all; without a valid token every route is 401."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service_helpers import drain, png_bytes, tiny_spec

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def alices(client, alice, datasets, jobs) -> dict:
    """Alice's datasets, a finished experiment with its model, and a queued experiment."""
    done = client.post("/experiments", json=tiny_spec(datasets, methods=["baseline"]), headers=alice).json()
    assert [o for _, _, o in drain(jobs)] == ["succeeded", "succeeded"]
    queued = client.post("/experiments", json=tiny_spec(datasets, name="queued"), headers=alice).json()
    model = client.get("/models", headers=alice).json()["data"][0]
    return {"datasets": datasets, "done": done["id"], "queued": queued["id"], "model": model["id"]}


def read_urls(ids: dict) -> list[str]:
    d, e, m = ids["datasets"]["vendor_a"], ids["done"], ids["model"]
    return [f"/datasets/{d}", f"/datasets/{d}/samples/0.png", f"/experiments/{e}", f"/experiments/{e}/metrics",
            f"/experiments/{e}/results", f"/experiments/{e}/report", f"/experiments/{e}/overlays",
            f"/experiments/{e}/features", f"/experiments/{e}/files/cases.json", f"/experiments/{e}/predictions.zip",
            f"/models/{m}", f"/models/{m}/download"]


def test_other_users_get_404_for_every_id(client, alice, bob, alices):
    for url in read_urls(alices):
        assert client.get(url, headers=alice).status_code == 200, url
        r = client.get(url, headers=bob)
        assert r.status_code == 404, url
        assert r.json()["detail"].endswith("not found")
    for listing in ("/datasets", "/experiments", "/models", f"/models?experiment_id={alices['done']}"):
        assert client.get(listing, headers=bob).json() == {"data": [], "count": 0}, listing
    img = png_bytes(np.zeros((8, 8), np.uint8))
    assert client.post(f"/models/{alices['model']}/predict", headers=bob,
                       files=[("files", ("a.png", img, "image/png"))]).status_code == 404
    assert client.post(f"/experiments/{alices['queued']}/cancel", headers=bob).status_code == 404
    for url in (f"/experiments/{alices['queued']}", f"/datasets/{alices['datasets']['vendor_b']}"):
        assert client.delete(url, headers=bob).status_code == 404
    # Nothing was cancelled or deleted.
    assert client.get(f"/experiments/{alices['queued']}", headers=alice).json()["status"] == "queued"
    assert client.get("/datasets", headers=alice).json()["count"] == 2
    # Bob cannot train on Alice's datasets either.
    r = client.post("/experiments", json=tiny_spec(alices["datasets"]), headers=bob)
    assert r.status_code == 422 and "unknown dataset id" in r.json()["detail"]


def test_admin_sees_and_manages_everything(client, admin, alices):
    for url in read_urls(alices):
        assert client.get(url, headers=admin).status_code == 200, url
    assert client.get("/datasets", headers=admin).json()["count"] == 2
    assert client.get("/experiments", headers=admin).json()["count"] == 2
    assert client.get("/models", headers=admin).json()["count"] == 1
    assert client.post(f"/experiments/{alices['queued']}/cancel", headers=admin).status_code == 200
    assert client.delete(f"/experiments/{alices['queued']}", headers=admin).status_code == 204


def test_shared_datasets_are_usable_by_all_but_deletable_by_owner_only(client, admin, alice, bob, settings, jobs,
                                                                      monkeypatch):
    import sikd_service.bootstrap as boot

    admin_id = client.get("/me", headers=admin).json()["id"]
    # Small demo sets keep the test quick; `sikd serve` registers the full ones (tests/integration).
    small = tuple((d, 12 if i == 0 else 4, s, name) for i, (d, _, s, name) in enumerate(boot.DEMO_DATASETS))
    monkeypatch.setattr(boot, "DEMO_DATASETS", small)
    ids = boot.ensure_demo_datasets(settings, admin_id)
    assert boot.ensure_demo_datasets(settings, admin_id) == ids  # once only
    listing = client.get("/datasets", headers=bob).json()
    assert listing["count"] == 3 and all(d["shared"] and d["synthetic"] for d in listing["data"])
    assert all("(SYNTHETIC)" in d["name"] for d in listing["data"])
    spec = tiny_spec({"vendor_a": ids[0], "vendor_b": ids[1]}, eval_datasets=[ids[1], ids[2]])
    assert client.post("/experiments", json=spec, headers=bob).status_code == 201
    r = client.delete(f"/datasets/{ids[2]}", headers=alice)
    assert r.status_code == 403 and "only its owner or an admin" in r.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Token abc"}])
def test_every_route_needs_a_valid_token(client, headers):
    doc = client.get("/openapi.json").json()
    checked = 0
    for path, ops in doc["paths"].items():
        for method in ops:
            url = path.format(dataset_id=1, experiment_id=1, model_id=1, user_id=1, other_id=2, sweep_id=1, index=0,
                              path="x")
            r = client.request(method.upper(), url, headers=headers)
            if path == "/health":
                assert r.status_code == 200
                continue
            assert r.status_code == 401, (method, path, r.status_code)
            checked += 1
    assert checked >= 20
