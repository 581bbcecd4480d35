"""Model cards and export bundles through the API, and the worker's MLflow tracking
(SIKD_MLFLOW_TRACKING_URI), on a finished tiny experiment run by the worker's task functions."""

from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.service_helpers import drain, png_bytes, tiny_spec

# SQLite only (about 40 s a run): cards and exports add two plain SELECTs and no database-specific SQL, so the
# PostgreSQL variant is not collected at all rather than collected and skipped.
pytestmark = [pytest.mark.timeout(180), pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture
def finished(client, alice, datasets, jobs, settings, tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    settings.mlflow_tracking_uri = f"file:{tmp_path / 'mlruns'}"
    r = client.post("/experiments", json=tiny_spec(datasets, name="done"), headers=alice)
    assert r.status_code == 201, r.text
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 4
    return r.json()


def test_card_export_and_mlflow(client, alice, bob, finished, settings, tmp_path):
    eid = finished["id"]
    models = client.get(f"/models?experiment_id={eid}", headers=alice).json()["data"]
    sikd = next(m for m in models if m["method"] == "sikd")
    card = client.get(f"/models/{sikd['id']}/card", headers=alice).json()
    assert card["name"] == sikd["name"] and card["links"] == {"model_id": sikd["id"], "experiment_id": eid}
    ds = {d["name"]: d for d in card["datasets"]}
    assert ds["vendor_a"]["role"] == "train" and ds["vendor_a"]["n_pairs"] == 16
    assert ds["vendor_b"]["role"] == "eval" and ds["vendor_b"]["content_hash"].startswith("sha256:")
    assert all("SYNTHETIC" in d["terms"] for d in card["datasets"])
    assert {(s["split"], s["dataset"]) for s in card["scores"]} == {("intra", "vendor_a"), ("cross", "vendor_b")}
    assert all(s["dice_ci"][0] - 1e-9 <= s["dice"] <= s["dice_ci"][1] + 1e-9 for s in card["scores"])
    md = client.get(f"/models/{sikd['id']}/card?format=md", headers=alice)
    assert md.headers["content-type"].startswith("text/markdown") and f"# Model card: {sikd['name']}" in md.text
    assert client.get(f"/models/{sikd['id']}/card", headers=bob).status_code == 404

    r = client.get(f"/models/{sikd['id']}/export?format=onnx", headers=alice)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
    z = zipfile.ZipFile(io.BytesIO(r.content))
    top = f"sikd-model-{sikd['id']}-onnx"
    assert {f"{top}/{n}" for n in ("model.onnx", "recipe.json", "predict.py", "requirements.txt",
                                   "model_card.md", "model_card.json")} <= set(z.namelist())
    z.extractall(tmp_path)
    from sikd_core.export import runtime

    img = np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)
    mask = runtime.load(tmp_path / top).predict([img.astype(np.float32)])[0]
    pred = client.post(f"/models/{sikd['id']}/predict", headers=alice,
                       files=[("files", ("a.png", png_bytes(img), "image/png"))]).json()["data"][0]
    api_mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(pred["mask_png"]))))
    assert (mask == api_mask).mean() >= 0.9999
    zip_path = next((settings.experiments_dir / str(eid)).rglob("export/onnx.zip"))
    mtime = zip_path.stat().st_mtime_ns
    assert client.get(f"/models/{sikd['id']}/export?format=onnx", headers=alice).content == r.content
    assert zip_path.stat().st_mtime_ns == mtime  # served from the cache
    assert client.get(f"/models/{sikd['id']}/export?format=tflite", headers=alice).status_code == 422
    assert client.get(f"/models/{sikd['id']}/export", headers=bob).status_code == 404

    import mlflow

    mc = mlflow.tracking.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    exp = mc.get_experiment_by_name(f"done #{eid}")
    runs = {r.info.run_name: r for r in mc.search_runs([exp.experiment_id])}
    assert set(runs) == {f"done #{eid} {k}" for k in ("baseline seed 0", "teacher seed 0", "student seed 0",
                                                      "evaluation")}
    student = runs[f"done #{eid} student seed 0"]
    assert student.data.params["spec.name"] == "done" and len(mc.get_metric_history(student.info.run_id, "loss")) == 2
    card_json = mc.download_artifacts(student.info.run_id, "model_card/model_card.json", str(tmp_path / "dl"))
    assert '"vendor_a"' in open(card_json).read()
    assert any(a.path.endswith("model.onnx") for a in mc.list_artifacts(student.info.run_id, "export_onnx"))


def test_no_tracking_without_the_setting(settings):
    from worker.tasks import Claimed, mlflow_tracker

    assert settings.mlflow_tracking_uri is None
    c = Claimed(stage_id=1, kind="baseline", seed=0, attempt=1, experiment_id=1, owner_id=1, spec={"name": "x"},
                datasets={}, token="t")
    assert mlflow_tracker(settings, c) is None
