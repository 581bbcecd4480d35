"""The API process starts without PyTorch: status reads, lists and uploads need none of it, so a restarted API
answers in about a second and a half instead of five (``python bench/api_restart.py``). PyTorch is imported on
first use (a spec check, a prediction, a picture, an export) and by the warm-up thread after the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, tempfile
import api.main
from sikd_service.config import Settings
app = api.main.create_app(Settings(storage_dir=tempfile.mkdtemp()))
heavy = sorted(m for m in ("torch", "monai", "scipy", "onnx", "onnxruntime") if m in sys.modules)
import sikd_core.data, sikd_core.export, sikd_core.methods, sikd_core.training
names = [sikd_core.data.prepare, sikd_core.export.write_bundle, sikd_core.methods.MethodTrainer,
         sikd_core.training.Trainer]  # the lazy names still resolve
print(json.dumps({"heavy": heavy, "torch_after_use": "torch" in sys.modules}))
"""


def test_the_api_imports_and_builds_without_pytorch() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIKD_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"imported at the API's start: {result['heavy']} (import them where they are used)"
    assert result["torch_after_use"]


REQUESTS = """
import json, sys
from fastapi.testclient import TestClient
import api.main
from sikd_service.config import Settings
args = json.loads(sys.argv[1])
settings = Settings(storage_dir=args["storage"], database_url=args["db"], admin_token=args["token"])
client = TestClient(api.main.create_app(settings))  # no lifespan: its warm-up thread imports PyTorch on purpose
auth = {"Authorization": "Bearer " + args["token"]}
plan = client.get("/datasets/%d/plan" % args["dataset"], headers=auth)
after_plan = sorted(m for m in ("torch", "monai") if m in sys.modules)
spec = {**plan.json()["spec"], "epochs": 1}
est = client.post("/experiments/estimate", json=spec, headers=auth)
training = sorted(m for m in ("sikd_core.steptime",) if m in sys.modules)  # what times training steps
print(json.dumps({"plan": [plan.status_code, plan.json().get("estimate")], "after_plan": after_plan,
                  "estimate": [est.status_code, est.json().get("seconds"), est.json().get("timing")],
                  "training_code": training}))
"""


def test_plan_and_estimate_requests_load_no_training_code(tmp_path) -> None:
    """GET /datasets/{id}/plan imports no PyTorch in the API process; POST /experiments/estimate imports it only for
    the spec check (networks built on the meta device, the methods' trainers looked up, as POST /experiments does),
    never the code that times training steps (sikd_core.steptime): the steps are timed on a worker. Both answer at
    once with no figure ("not measured yet": nothing was timed here) and send the timing to a worker."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from sikd_core.data import generate_phantoms
    from sikd_service.config import Settings
    from sikd_service.db import dispose_engines
    from tests.service_helpers import ADMIN_TOKEN, upload, zip_folder

    db = f"sqlite:///{tmp_path / 'sikd.db'}"
    settings = Settings(storage_dir=tmp_path / "storage", database_url=db, admin_token=ADMIN_TOKEN)
    zipped = zip_folder(generate_phantoms(tmp_path / "ph", domain="vendor_a", n=12, seed=1, size=32), top="ph")
    with TestClient(create_app(settings)) as c:  # the dataset is uploaded by another process
        r = upload(c, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, zipped, name="ph")
        assert r.status_code == 201, r.text
    dispose_engines()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    args = json.dumps({"storage": str(tmp_path / "storage"), "db": db, "token": ADMIN_TOKEN, "dataset": r.json()["id"]})
    out = subprocess.run([sys.executable, "-c", REQUESTS, args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    status, estimate = result["plan"]
    assert status == 200 and estimate["seconds"] is None and estimate["basis"].startswith("not measured yet")
    assert result["after_plan"] == [], f"GET /datasets/{{id}}/plan imported {result['after_plan']}"
    assert result["estimate"][:2] == [200, None] and "queued for timing" in result["estimate"][2]
    assert result["training_code"] == [], f"POST /experiments/estimate imported {result['training_code']}"


def test_lazy_packages_refuse_unknown_names() -> None:
    import pytest

    import sikd_core.data

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sikd_core.data.nope  # noqa: B018
